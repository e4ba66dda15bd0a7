// Leader election against a fake Lease API: expiry by local observed time, bounded requests.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { LeaderElector, type LeaseApi } from "../../../operator/kube/leader.ts";
import { createLogger } from "../../../operator/observability/log.ts";

const log = createLogger("error");
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fakeLeases(initial: k8s.V1Lease | undefined) {
  let lease = initial && structuredClone(initial);
  let rv = 1;
  const state = {
    hang: false,
    get lease() {
      return lease;
    },
  };
  const hangOr = <T>(v: () => T): Promise<T> => (state.hang ? new Promise<T>(() => {}) : Promise.resolve().then(v));
  const notFound = () => Object.assign(new Error("not found"), { code: 404 });
  const api: LeaseApi = {
    readNamespacedLease: () =>
      hangOr(() => {
        if (!lease) throw notFound();
        return structuredClone(lease);
      }),
    createNamespacedLease: (p: { body: k8s.V1Lease }) =>
      hangOr(
        () => (lease = { ...structuredClone(p.body), metadata: { ...p.body.metadata, resourceVersion: String(++rv) } }),
      ),
    replaceNamespacedLease: (p: { body: k8s.V1Lease }) =>
      hangOr(
        () => (lease = { ...structuredClone(p.body), metadata: { ...p.body.metadata, resourceVersion: String(++rv) } }),
      ),
  } as unknown as LeaseApi;
  return { api, state };
}

const options = (events: string[]) => ({
  namespace: "ns",
  name: "lease",
  identity: "me",
  log,
  leaseDurationMs: 1000,
  renewDeadlineMs: 600,
  retryPeriodMs: 100,
  onStartedLeading: () => events.push("started"),
  onStoppedLeading: () => events.push("stopped"),
});

test("a lease whose holder's clock runs an hour ahead still expires after leaseDuration of no change seen here", async () => {
  const future = new Date(Date.now() + 3_600_000).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
  const { api, state } = fakeLeases({
    metadata: { name: "lease", namespace: "ns", resourceVersion: "1" },
    spec: { holderIdentity: "other", leaseDurationSeconds: 1, renewTime: future as unknown as Date },
  });
  const events: string[] = [];
  const e = new LeaderElector(new k8s.KubeConfig(), options(events), api);
  e.start();
  await wait(2500);
  await e.stop();
  assert.deepEqual(events[0], "started");
  assert.equal(state.lease?.spec?.leaseTransitions, 1);
});

test("a hung API server cannot stall renewal: the leader steps down after the renew deadline", async () => {
  const { api, state } = fakeLeases(undefined);
  const events: string[] = [];
  const e = new LeaderElector(new k8s.KubeConfig(), options(events), api);
  e.start();
  await wait(300);
  assert.deepEqual(events, ["started"]);
  state.hang = true;
  await wait(2500);
  assert.deepEqual(events, ["started", "stopped"]);
  state.hang = false;
  await e.stop();
});
