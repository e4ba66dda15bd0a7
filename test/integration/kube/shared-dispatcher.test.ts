// client-node 2.x opens a new TLS connection per API call unless its dispatcher is shared; this
// counts the sockets a series of calls opens against the local cluster's real kube-apiserver.
import { test } from "node:test";
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import * as k8s from "@kubernetes/client-node";
import { RunClient, loadKubeConfig } from "../../../operator/kube/client.ts";
import { registry } from "../../../operator/observability/metrics.ts";
import { applyCrds, requireEnv } from "../../support/cluster.ts";

const CALLS = 20;
applyCrds();

async function socketsOpenedBy(kc: k8s.KubeConfig): Promise<number> {
  let opened = 0;
  const onSocket = () => opened++;
  diagnostics.subscribe("net.client.socket", onSocket);
  try {
    const runs = new RunClient(kc);
    for (let i = 0; i < CALLS; i++) await runs.list("default");
    // Concurrent calls may open a few parallel connections, never one each.
    await Promise.all(Array.from({ length: CALLS }, () => runs.list("default")));
  } finally {
    diagnostics.unsubscribe("net.client.socket", onSocket);
  }
  return opened;
}

test("API calls through the operator's KubeConfig reuse keep-alive connections instead of one TLS handshake each", async () => {
  const shared = await socketsOpenedBy(loadKubeConfig(requireEnv("KUBECONFIG")));
  assert.ok(shared <= 4, `${2 * CALLS} calls opened ${shared} connections`);
});

test("client-node's own KubeConfig opens a connection per call (what the shared dispatcher fixes)", async () => {
  const plain = new k8s.KubeConfig();
  plain.loadFromFile(requireEnv("KUBECONFIG"));
  const opened = await socketsOpenedBy(plain);
  // If this starts failing, client-node shares its dispatcher itself and shareDispatcher can go.
  assert.ok(opened >= CALLS, `${2 * CALLS} calls opened ${opened} connections`);
});

test("every request through the operator's KubeConfig is counted by verb and resource, status patches and watches included", async () => {
  const count = async (key: string) => {
    const m = (await registry.getSingleMetric("ticclip_kube_requests_total")!.get()).values;
    return m
      .filter(
        (v) => `${v.labels.verb} ${v.labels.resource}${v.labels.subresource ? `/${v.labels.subresource}` : ""}` === key,
      )
      .reduce((n, v) => n + v.value, 0);
  };
  const kc = loadKubeConfig(requireEnv("KUBECONFIG"));
  const before = { list: await count("LIST continualclipruns"), watch: await count("WATCH continualclipruns") };
  const runs = new RunClient(kc);
  for (let i = 0; i < 3; i++) await runs.list("default");
  const watch = new k8s.Watch(kc);
  const req = await watch.watch(
    new RunClient(kc).watchPath("default"),
    {},
    () => undefined,
    () => undefined,
  );
  req.abort();
  assert.equal((await count("LIST continualclipruns")) - before.list, 3);
  assert.equal((await count("WATCH continualclipruns")) - before.watch, 1);
});
