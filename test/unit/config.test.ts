import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../operator/config.ts";

test("flags win over env, defaults fill the rest", () => {
  const c = loadConfig(["--namespaces", "a,b", "--log-level", "debug"], {
    TICCLIP_NAMESPACES: "x",
    TICCLIP_CONCURRENCY: "8",
  });
  assert.deepEqual(c.namespaces, ["a", "b"]);
  assert.equal(c.logLevel, "debug");
  assert.equal(c.concurrency, 8);
  assert.equal(c.resyncSeconds, 300);
});

test("bad values are rejected naming the setting", () => {
  assert.throws(() => loadConfig(["--log-level", "loud"], {}), /logLevel/);
  assert.throws(() => loadConfig([], { TICCLIP_CONCURRENCY: "0" }), /concurrency/);
  assert.throws(() => loadConfig(["--namespaces", "Bad_NS"], {}), /namespaces/);
  assert.throws(() => loadConfig(["--bogus"], {}), /bogus/);
});

test("the notifications endpoint refuses to start without a bearer token", () => {
  assert.throws(() => loadConfig(["--notifications-address", ":8443"], {}), /notificationToken/);
  const c = loadConfig(["--notifications-address", ":8443"], { TICCLIP_NOTIFICATION_TOKEN: "0123456789abcdef0123" });
  assert.equal(c.notificationsAddress, ":8443");
});

test("--slice-unreadable-after is a duration, 6h by default, refused below a minute", () => {
  assert.equal(loadConfig([], {}).sliceUnreadableAfterMs, 6 * 3600_000);
  assert.equal(loadConfig(["--slice-unreadable-after", "90m"], {}).sliceUnreadableAfterMs, 5_400_000);
  assert.equal(loadConfig([], { TICCLIP_SLICE_UNREADABLE_AFTER: "2h" }).sliceUnreadableAfterMs, 7_200_000);
  assert.throws(() => loadConfig(["--slice-unreadable-after", "10s"], {}), /sliceUnreadableAfterMs: at least 1m/);
  assert.throws(() => loadConfig(["--slice-unreadable-after", "six hours"], {}), /sliceUnreadableAfterMs/);
});

test("--allow-default-credentials is off unless set to true", () => {
  assert.equal(loadConfig([], {}).allowDefaultCredentials, false);
  assert.equal(loadConfig(["--allow-default-credentials", "true"], {}).allowDefaultCredentials, true);
  assert.equal(loadConfig([], { TICCLIP_ALLOW_DEFAULT_CREDENTIALS: "true" }).allowDefaultCredentials, true);
  assert.throws(() => loadConfig(["--allow-default-credentials", "yes"], {}), /allowDefaultCredentials/);
});
