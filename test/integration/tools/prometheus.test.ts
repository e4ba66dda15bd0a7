// The chart's PrometheusRule through the real promtool (check + unit tests with series), and every
// metric name in its alerts and in the Grafana dashboard against the operator's real /metrics.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { REPO_ROOT, createNamespace, waitFor } from "../../support/cluster.ts";
import { startOperator, type Proc } from "../../support/local-run.ts";
import { CHART, ok, readChartFile, renderChart, tmpFile, toolPath } from "./tools.ts";

let operator: Proc | undefined;
after(async () => {
  await operator?.stop();
});

function renderedRules(): { file: string; exprs: string[] } {
  const rule = renderChart("monitoring", ["prometheusRule.enabled=true"]).find((o) => o.kind === "PrometheusRule")!;
  const file = tmpFile("rules.yaml", YAML.stringify({ groups: rule.spec.groups }));
  const exprs = rule.spec.groups.flatMap((g: { rules: Array<{ expr: string }> }) => g.rules.map((r) => r.expr));
  return { file, exprs };
}

function dashboardExprs(): string[] {
  const dash = JSON.parse(readChartFile("dashboards/continual-clip-operator.json"));
  const targets = dash.panels.flatMap((p: { targets: Array<{ expr: string }> }) => p.targets.map((t) => t.expr));
  const list = dash.templating.list as Array<{ query?: { query: string } | string }>;
  const variables = list.flatMap((v) => (typeof v.query === "object" ? [v.query.query] : []));
  return [...targets, ...variables];
}

test("promtool check rules accepts the rendered PrometheusRule", () => {
  const { file } = renderedRules();
  const out = ok(toolPath("promtool"), ["check", "rules", file]);
  assert.match(out, /SUCCESS: 8 rules found/);
});

test("promtool test rules: each alert fires on its series, and only then", () => {
  const { file } = renderedRules();
  const testFile = path.join(path.dirname(file), "alerts.test.yaml");
  copyFileSync(path.join(REPO_ROOT, "test/integration/tools/prometheus/alerts.test.yaml"), testFile);
  const out = ok(toolPath("promtool"), ["test", "rules", testFile]);
  assert.match(out, /SUCCESS/);
});

test("every metric in the alerts and the dashboard is one the operator exports on /metrics", async () => {
  const ns = createNamespace("metrics");
  const port = 20000 + Math.floor(Math.random() * 20000);
  operator = startOperator([ns], ["--metrics-address", `127.0.0.1:${port}`, "--leader-elect", "false"]);
  const text = await waitFor(
    "/metrics",
    async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      return res?.ok ? await res.text() : undefined;
    },
    30_000,
    250,
  );
  const exported = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(m[1]!);
    if (m[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(m[1]! + s);
  }
  const exprs = [...renderedRules().exprs, ...dashboardExprs()];
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bticclip_[a-z0-9_]+/g)].map((m) => m[0])));
  assert.ok(used.size >= 15, `expected the alerts and panels to use the operator's metrics, found ${[...used]}`);
  for (const name of ["ticclip_round_progress_ratio", "ticclip_round_samples_per_second", "ticclip_round_loss"])
    assert.ok(used.has(name), `the dashboard has a panel for ${name}`);
  const missing = [...used].filter((name) => !exported.has(name));
  assert.deepEqual(missing, [], "metric names used by alerts or the dashboard but not exported");
  for (const e of dashboardExprs()) assert.match(e, /ticclip_/, `panel query without an operator metric: ${e}`);
  const template = readFileSync(path.join(CHART, "templates/dashboard.yaml"), "utf8");
  assert.ok(template.includes("dashboards/continual-clip-operator.json"), "the chart ships this dashboard");
});
