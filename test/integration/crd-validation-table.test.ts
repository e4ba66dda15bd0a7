// The generated table of invalid manifests (test/tables/invalid-runs.json, one or more per field and
// per CEL rule) against the real kube-apiserver: each is rejected, naming the field. zod judges the
// same table in test/unit/api/invalid-table.test.ts.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import * as k8s from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION } from "../../operator/api/continual-clip-run.ts";
import { REPO_ROOT, applyCrds, createNamespace, kubeConfig } from "../support/cluster.ts";
import { applyCase, type InvalidCase, TABLE_PATH } from "../support/invalid-table.ts";

const table = JSON.parse(readFileSync(TABLE_PATH, "utf8")) as { base: string; cases: InvalidCase[] };
const base = YAML.parse(readFileSync(path.join(REPO_ROOT, table.base), "utf8"));

let ns = "";
let api: k8s.CustomObjectsApi;
before(() => {
  applyCrds();
  ns = createNamespace("crdtable");
  api = kubeConfig().makeApiClient(k8s.CustomObjectsApi);
});

/** The API server's verdict on a dry-run create: undefined when accepted, else its message and causes. */
async function dryRunCreate(body: Record<string, any>): Promise<string | undefined> {
  body.metadata = { ...body.metadata, namespace: ns };
  try {
    await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body,
      dryRun: "All",
    });
    return undefined;
  } catch (err) {
    if (!(err instanceof k8s.ApiException)) throw err;
    const status = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
    if (status?.reason !== "Invalid") throw new Error(`unexpected answer ${err.code}: ${JSON.stringify(status)}`);
    const causes = (status.details?.causes ?? []) as Array<{ field?: string; message?: string }>;
    return [status.message, ...causes.map((c) => `${c.field}: ${c.message}`)].join("\n");
  }
}

test("the table's base manifest is accepted", async () => {
  assert.equal(await dryRunCreate(structuredClone(base)), undefined);
});

test(`every case of the generated table (${table.cases.length}) is rejected, naming its field`, async () => {
  assert.ok(table.cases.length >= 60);
  const failures: string[] = [];
  for (const c of table.cases) {
    const verdict = await dryRunCreate(applyCase(base, c));
    if (verdict === undefined) failures.push(`${c.name}: accepted`);
    else if (!verdict.includes(c.field))
      failures.push(`${c.name}: does not name ${c.field}: ${verdict.split("\n")[0]}`);
    else if (c.says && !verdict.includes(c.says))
      failures.push(`${c.name}: does not say "${c.says}": ${verdict.split("\n")[0]}`);
  }
  assert.deepEqual(failures, []);
});
