// What a promotion with spec.promotion.git costs (issue 27): the time from a round's verdict to the
// commit on the Git server, and the API, S3 and Git requests of one promotion, against the local
// cluster, MinIO, the operator as a process and the loopback Git server of the tests.
// Run with the cluster up: eval "$(bash dev/cluster.sh env)"; node bench/gitops.ts
//
// The run polls once an hour, so nothing happens between promotions; each promotion is started by
// seeding a judged-ready round (plan, model, eval.json) and bumping the spec (a new generation
// lists the artifacts again), and measured until the operator's S3 traffic has been quiet for 5 s.
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import {
  applyCrds,
  createNamespace,
  kubectl,
  kubectlOk,
  operatorKubeRequests,
  requestDelta,
  waitFor,
} from "../test/support/cluster.ts";
import { GitServer } from "../test/support/git-server.ts";
import { createBucket, createS3Secret, localRunManifest, startOperator } from "../test/support/local-run.ts";
import { roundFiles } from "../test/support/rounds.ts";
import { putObject, s3Client } from "../test/support/s3.ts";

const PROMOTIONS = Number(process.env.PROMOTIONS ?? 5);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scrape(port: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
const byLabel = (before: Map<string, number>, after: Map<string, number>, metric: string) =>
  [...after]
    .filter(([k]) => k.startsWith(`${metric}{`))
    .map(([k, v]) => [/operation="([^"]+)"/.exec(k)![1]!, v - (before.get(k) ?? 0)] as const)
    .filter(([, v]) => v > 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  applyCrds();
  const ns = createNamespace("bench-gitops");
  createS3Secret(ns);
  const server = await GitServer.start();
  const ca = path.join(os.tmpdir(), `ticclip-bench-ca-${ns}.crt`);
  writeFileSync(ca, server.ca);
  kubectlOk([
    "create",
    "secret",
    "generic",
    "git",
    "-n",
    ns,
    `--from-literal=username=${server.username}`,
    `--from-literal=password=${server.password}`,
    `--from-file=ca.crt=${ca}`,
  ]);
  server.createRepo("serving", {
    "clip/isvc.yaml": `storageUri: s3://none/ # {"$ticclip": "${ns}:bench:uri"}\n`,
  });
  const port = 20000 + Math.floor(Math.random() * 20000);
  const op = startOperator([ns], ["--metrics-address", `127.0.0.1:${port}`]);
  try {
    const quiet = async () => {
      for (;;) {
        const a = await scrape(port);
        await sleep(5000);
        const b = await scrape(port);
        if (byLabel(a, b, "ticclip_s3_requests_total").length === 0) return;
      }
    };
    // The same promotions with and without spec.promotion.git, side by side.
    for (const withGit of [true, false]) {
      const name = withGit ? "bench" : "bench-nogit";
      const data = await createBucket("bench-gitops-data");
      const runs = await createBucket("bench-gitops-runs");
      const models = await createBucket("bench-gitops-models");
      const seed = async (i: number) => {
        const run = { namespace: ns, name }; // a round folder belongs to the run named in its plan
        for (const [key, body] of roundFiles(runs, `${name}/`, i, { recall: 0.5 + i / 100, model: true, run }))
          await putObject(s3Client(), runs, key, body);
      };
      const alias = async () => {
        try {
          const res = await s3Client().send(new GetObjectCommand({ Bucket: models, Key: "clip/production.json" }));
          return JSON.parse(await res.Body!.transformToString()).version as number;
        } catch {
          return 0;
        }
      };
      await seed(0);
      const m = localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs });
      m.spec.source.pollInterval = "1h";
      const git = {
        url: server.url("serving"),
        path: "clip/model.yaml",
        markerFiles: ["clip/isvc.yaml"],
        secretRef: { name: "git" },
      };
      Object.assign(m.spec, {
        promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, ...(withGit ? { git } : {}) },
      });
      kubectlOk(["create", "-f", "-"], JSON.stringify(m));
      // Done: the commit is on the Git server, or (without Git) the alias moved.
      const done = async (v: number, pushes: number) =>
        withGit ? server.count("serving").push > pushes && (await alias()) === v : (await alias()) === v;
      await waitFor("v1", async () => ((await done(1, 0)) ? true : undefined), 120_000, 100);
      await quiet();
      const rows: { ms: number; api: number; apiBy: string; s3: number; s3By: string; git: string }[] = [];
      for (let i = 1; i <= PROMOTIONS; i++) {
        await seed(i);
        const api0 = await operatorKubeRequests(port);
        const m0 = await scrape(port);
        const git0 = server.count("serving");
        kubectlOk(["patch", "ccr", name, "-n", ns, "--type", "merge", "-p", `{"spec":{"historyLimit":${50 + i}}}`]);
        await waitFor("the promotion", async () => ((await done(i + 1, git0.push)) ? true : undefined), 120_000, 50);
        await quiet();
        // Counted by the operator itself (ticclip_kube_requests_total), watches and leases left out.
        const api = requestDelta(api0, await operatorKubeRequests(port));
        const operatorApi = [...api].filter(([k]) => !k.startsWith("WATCH ") && !k.endsWith(" leases"));
        const m1 = await scrape(port);
        const s3 = byLabel(m0, m1, "ticclip_s3_requests_total");
        const git1 = server.count("serving");
        const verdict = JSON.parse(
          await (
            await s3Client().send(
              new GetObjectCommand({ Bucket: runs, Key: `${name}/rounds/${String(i).padStart(4, "0")}/verdict.json` }),
            )
          ).Body!.transformToString(),
        );
        const pushed = server.requests
          .filter((r) => r.path === "/serving.git/git-receive-pack" && r.status === 200)
          .at(-1)!;
        rows.push({
          ms: withGit ? pushed.at - Date.parse(verdict.judgedAt) : 0,
          api: operatorApi.reduce((n, [, v]) => n + v, 0),
          apiBy: operatorApi.map(([k, v]) => `${k} ${v}`).join(", "),
          s3: s3.reduce((n, [, v]) => n + v, 0),
          s3By: s3.map(([k, v]) => `${k} ${v}`).join(", "),
          git: `${git1.fetch - git0.fetch} fetch + ${git1.push - git0.push} push (${git1.total - git0.total} requests)`,
        });
      }
      console.log(
        withGit
          ? `promotions with spec.promotion.git (n=${PROMOTIONS}, loopback Git server over HTTPS):`
          : `the same promotions without spec.promotion.git (n=${PROMOTIONS}):`,
      );
      if (withGit) {
        console.log(
          `  verdict -> commit on the Git server: median ${median(rows.map((r) => r.ms))} ms (${rows.map((r) => r.ms).join(", ")})`,
        );
      }
      console.log(
        `  per promotion, median: API ${median(rows.map((r) => r.api))}, S3 ${median(rows.map((r) => r.s3))}`,
      );
      for (const [i, r] of rows.entries()) {
        console.log(`  promotion ${i + 1}: API ${r.api} (${r.apiBy}); S3 ${r.s3} (${r.s3By}); Git ${r.git}`);
      }
    }
    // A reconcile of a synced pointer costs Git nothing.
    const g0 = server.count("serving");
    kubectlOk(["patch", "ccr", "bench", "-n", ns, "--type", "merge", "-p", '{"spec":{"historyLimit":40}}']);
    await sleep(5000);
    console.log(`  a new generation without an alias move: ${server.count("serving").total - g0.total} Git requests`);
  } finally {
    await op.stop();
    await server.stop();
    kubectl(["delete", "namespace", ns, "--wait=false"]);
  }
}

await main();
