// Issue 21 items 7 and 10: documents a run reads from its own bucket cannot hang, exhaust or break
// the shared operator. The operator runs as a process against the local cluster and MinIO; one run
// reads through a proxy that trickles one document, others hold a document too large or of the
// wrong shape. Each fails alone, with a condition naming the key, and a healthy run goes on.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import { createBucket, localRunManifest, runRounds, type Proc, startLocalRun, stopAll } from "../support/local-run.ts";
import { roundFiles, type SeedOptions } from "../support/rounds.ts";
import { putObject, s3Client } from "../support/s3.ts";
import { putSlice } from "./data/slices.ts";

let ns = "";
let operator: Proc;
before(() => {
  ({ ns, operator } = startLocalRun("documents", { operator: ["--s3-timeout-seconds", "3"] }));
});
after(() => stopAll(operator));

type Condition = { type: string; status: string; reason: string; message: string };
const degraded = (name: string) =>
  ((getRun(ns, name)?.status?.conditions ?? []) as Condition[]).find(
    (c) => c.type === "Degraded" && c.status === "True",
  );

/**
 * MinIO behind a proxy that forwards every request unchanged (so signatures verify), except that
 * the body of a GET whose path matches `slow` comes one byte every 200 ms: the socket is never
 * idle, only the deadline can end the read.
 */
async function tricklingProxy(slow: RegExp): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const upstream = new URL(process.env.S3_ENDPOINT!);
  const server = http.createServer((req, res) => {
    const trickle = req.method === "GET" && slow.test(new URL(req.url ?? "/", "http://x").pathname);
    const fwd = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!trickle) return void up.pipe(res);
        const chunks: Buffer[] = [];
        up.on("data", (c: Buffer) => chunks.push(c));
        up.on("end", () => {
          const body = Buffer.concat(chunks);
          let i = 0;
          const timer = setInterval(() => {
            if (res.destroyed || i >= body.length) {
              clearInterval(timer);
              if (!res.destroyed) res.end();
              return;
            }
            res.write(body.subarray(i, ++i));
          }, 200);
          res.on("close", () => clearInterval(timer));
        });
      },
    );
    fwd.on("error", () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Round 0 of the run named like its prefix, with `replace`'s files instead of the seeded ones. */
async function seedRound(bucket: string, prefix: string, o: SeedOptions, replace: Record<string, string> = {}) {
  const files = roundFiles(bucket, prefix, 0, { ...o, run: { namespace: ns, name: prefix.slice(0, -1) } });
  for (const [file, body] of Object.entries(replace)) files.set(`${prefix}rounds/0000/${file}`, body);
  for (const [key, body] of files) await putObject(s3Client(), bucket, key, body);
}

test("a trickled, an oversized and a malformed document each fail only their run, naming the key", async () => {
  const data = await createBucket("docs-data");
  const runs = await createBucket("docs-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  const proxy = await tricklingProxy(/\/slow\/rounds\/0000\/plan\.json$/);
  try {
    await seedRound(runs, "slow/", { recall: 0.5 });
    await seedRound(runs, "large/", { recall: 0.5 }, { "eval.json": `{"padding": "${"x".repeat(17 * 1024 * 1024)}"}` });
    await seedRound(
      runs,
      "bad/",
      { trained: false },
      {
        "failed.json": JSON.stringify({ reason: 5, message: "m", generation: 1, failedAt: "2026-01-01T00:00:00Z" }),
      },
    );
    await seedRound(runs, "fine/", { recall: 0.5 });
    for (const name of ["slow", "large", "bad", "fine"]) {
      const m = localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs });
      m.spec.artifacts.s3.prefix = `${name}/`;
      if (name === "slow") m.spec.source.s3.endpoint = proxy.endpoint;
      kubectlOk(["create", "-f", "-"], JSON.stringify(m));
    }
    const expected: Record<string, { reason: string; key: string; says: RegExp }> = {
      slow: { reason: "S3Timeout", key: `s3://${runs}/slow/rounds/0000/plan.json`, says: /no answer in 3000 ms/ },
      large: { reason: "InvalidDocument", key: `s3://${runs}/large/rounds/0000/eval.json`, says: /more than the/ },
      bad: { reason: "InvalidDocument", key: `s3://${runs}/bad/rounds/0000/failed.json`, says: /reason: / },
    };
    for (const [name, want] of Object.entries(expected)) {
      const c = await waitFor(
        `${name}: Degraded ${want.reason}`,
        () => {
          const d = degraded(name);
          return d?.reason === want.reason ? d : undefined;
        },
        90_000,
        500,
      );
      assert.ok(c.message.includes(want.key), `${name}: ${c.message}`);
      assert.match(c.message, want.says, name);
    }
    await waitFor(
      "the healthy run's round passed",
      () => runRounds(ns, "fine")[0]?.phase === "Passed" || undefined,
      90_000,
      500,
    );
    assert.equal(operator.child.exitCode, null, "the operator is still running");
  } finally {
    await proxy.close();
  }
});
