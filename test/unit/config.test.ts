import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../operator/config.ts";

/** An operator that evaluates in Jobs (it must have an evaluator: an image or in-process evaluation). */
const JOBS = { TICCLIP_EVALUATOR_IMAGE: "operator:1" };

test("flags win over env, defaults fill the rest", () => {
  const c = loadConfig(["--namespaces", "a,b", "--log-level", "debug"], {
    TICCLIP_NAMESPACES: "x",
    TICCLIP_CONCURRENCY: "8",
    TICCLIP_EVALUATOR_IMAGE: "operator:1",
  });
  assert.deepEqual(c.namespaces, ["a", "b"]);
  assert.equal(c.logLevel, "debug");
  assert.equal(c.concurrency, 8);
  assert.equal(c.resyncSeconds, 300);
  assert.equal(c.inProcessEvaluation, false, "in-process evaluation is off unless the administrator enables it");
});

test("bad values are rejected naming the setting", () => {
  assert.throws(() => loadConfig(["--log-level", "loud"], {}), /logLevel/);
  assert.throws(() => loadConfig([], { TICCLIP_CONCURRENCY: "0" }), /concurrency/);
  assert.throws(() => loadConfig(["--namespaces", "Bad_NS"], {}), /namespaces/);
  assert.throws(() => loadConfig(["--bogus"], {}), /bogus/);
});

test("the notifications endpoint refuses to start without a bearer token", () => {
  assert.throws(() => loadConfig(["--notifications-address", ":8443"], {}), /notificationToken/);
  const c = loadConfig(["--notifications-address", ":8443", "--evaluator-image", "operator:1"], {
    TICCLIP_NOTIFICATION_TOKEN: "0123456789abcdef0123",
  });
  assert.equal(c.notificationsAddress, ":8443");
});

test("--slice-unreadable-after is a duration, 6h by default, refused below a minute", () => {
  assert.equal(loadConfig([], JOBS).sliceUnreadableAfterMs, 6 * 3600_000);
  assert.equal(loadConfig(["--slice-unreadable-after", "90m"], JOBS).sliceUnreadableAfterMs, 5_400_000);
  assert.equal(loadConfig([], { ...JOBS, TICCLIP_SLICE_UNREADABLE_AFTER: "2h" }).sliceUnreadableAfterMs, 7_200_000);
  assert.throws(() => loadConfig(["--slice-unreadable-after", "10s"], JOBS), /sliceUnreadableAfterMs: at least 1m/);
  assert.throws(() => loadConfig(["--slice-unreadable-after", "six hours"], JOBS), /sliceUnreadableAfterMs/);
});

test("--progress-interval is a duration, 30s by default (the trainer's), refused below a second", () => {
  assert.equal(loadConfig([], JOBS).progressIntervalMs, 30_000);
  assert.equal(loadConfig(["--progress-interval", "2m"], JOBS).progressIntervalMs, 120_000);
  assert.equal(loadConfig([], { ...JOBS, TICCLIP_PROGRESS_INTERVAL: "5s" }).progressIntervalMs, 5_000);
  assert.throws(() => loadConfig(["--progress-interval", "100ms"], JOBS), /progressIntervalMs: at least 1s/);
});

test("--allow-default-credentials is off unless set to true", () => {
  assert.equal(loadConfig([], JOBS).allowDefaultCredentials, false);
  assert.equal(loadConfig(["--allow-default-credentials", "true"], JOBS).allowDefaultCredentials, true);
  assert.equal(loadConfig([], { ...JOBS, TICCLIP_ALLOW_DEFAULT_CREDENTIALS: "true" }).allowDefaultCredentials, true);
  assert.throws(() => loadConfig(["--allow-default-credentials", "yes"], JOBS), /allowDefaultCredentials/);
});

test("rounds need an evaluator: evaluation Jobs, or in-process evaluation the administrator enabled", () => {
  assert.throws(() => loadConfig([], {}), /evaluatorImage: rounds need an evaluator/);
  assert.equal(loadConfig(["--in-process-evaluation", "true"], {}).inProcessEvaluation, true);
  assert.equal(loadConfig([], { TICCLIP_IN_PROCESS_EVALUATION: "true" }).inProcessEvaluation, true);
  const jobs = loadConfig(["--evaluator-image", "operator:1"], {});
  assert.equal(jobs.inProcessEvaluation, false);
  assert.throws(() => loadConfig(["--in-process-evaluation", "yes"], JOBS), /inProcessEvaluation/);
});
