// Connections and memory of N API calls through client-node's own KubeConfig and through the
// operator's (one shared keep-alive dispatcher), each in a fresh process, side by side.
//   node bench/kube-client.ts        (the cluster must be up; KUBECONFIG set)
import { spawnSync } from "node:child_process";
import diagnostics from "node:diagnostics_channel";
import * as k8s from "@kubernetes/client-node";
import { RunClient, loadKubeConfig } from "../operator/kube/client.ts";
import { applyCrds, requireEnv } from "../test/support/cluster.ts";

const CALLS = Number(process.env.BENCH_CALLS ?? 600);

if (process.argv[2] === "child") {
  let sockets = 0;
  diagnostics.subscribe("net.client.socket", () => sockets++);
  const kc = process.argv[3] === "shared" ? loadKubeConfig(requireEnv("KUBECONFIG")) : new k8s.KubeConfig();
  if (process.argv[3] !== "shared") kc.loadFromFile(requireEnv("KUBECONFIG"));
  const runs = new RunClient(kc);
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  // Four workers, as the operator's reconcile concurrency.
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next++ < CALLS) await runs.list("default");
    }),
  );
  const ms = performance.now() - t0;
  const m = process.memoryUsage();
  console.log(JSON.stringify({ sockets, ms, rss: m.rss, rssGrowth: m.rss - rss0, heap: m.heapUsed }));
  process.exit(0);
}

applyCrds();
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
for (const mode of ["client-node default", "shared"]) {
  const res = spawnSync(process.execPath, [import.meta.filename, "child", mode === "shared" ? "shared" : "plain"], {
    encoding: "utf8",
  });
  const r = JSON.parse(res.stdout.trim().split("\n").at(-1)!);
  console.log(
    `${mode.padEnd(20)} ${CALLS} GETs: ${r.sockets} TCP/TLS connections, ${(CALLS / (r.ms / 1000)).toFixed(0)} calls/s, RSS ${mib(r.rss)} MiB (+${mib(r.rssGrowth)}), heap ${mib(r.heap)} MiB`,
  );
}
