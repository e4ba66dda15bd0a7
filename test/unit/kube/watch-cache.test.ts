import { test } from "node:test";
import assert from "node:assert/strict";
import type { RawObject } from "../../../operator/kube/client.ts";
import { WatchCache } from "../../../operator/kube/watch.ts";

const obj = (namespace: string, name: string, rv: string, owner = "u1"): RawObject => ({
  metadata: { namespace, name, uid: `${namespace}-${name}`, resourceVersion: rv, owner },
});
const cache = (scopes: (string | undefined)[] = ["a", "b"]) =>
  new WatchCache<{ name: string; rv: string; owner: string }>({
    scopes,
    project: (o) => ({ name: o.metadata.name, rv: o.metadata.resourceVersion!, owner: o.metadata.owner as string }),
    indexBy: (v) => v.owner,
  });

test("the cache is synced only once every namespace scope has been listed", () => {
  const c = cache();
  assert.equal(c.synced, false);
  c.replace("a", []);
  assert.equal(c.synced, false);
  c.replace("b", []);
  assert.equal(c.synced, true);
  c.reset();
  assert.equal(c.synced, false);
});

test("a relist of one namespace replaces only that namespace's objects", () => {
  const c = cache();
  c.replace("a", [obj("a", "x", "1"), obj("a", "y", "1")]);
  c.replace("b", [obj("b", "z", "1")]);
  c.replace("a", [obj("a", "y", "5")]);
  assert.equal(c.get("a", "x"), undefined);
  assert.equal(c.get("a", "y")?.rv, "5");
  assert.equal(c.get("b", "z")?.rv, "1");
  assert.deepEqual(
    c
      .byIndex("u1")
      .map((v) => v.name)
      .sort(),
    ["y", "z"],
  );
});

test("a watch event older than our own write-through does not roll the object back", () => {
  const c = cache([undefined]);
  c.replace(undefined, []);
  c.put(obj("a", "x", "120")); // the object our patch returned
  c.apply({ type: "MODIFIED", object: obj("a", "x", "99") }); // the echo of an earlier write
  assert.equal(c.get("a", "x")?.rv, "120");
  c.apply({ type: "MODIFIED", object: obj("a", "x", "1000") });
  assert.equal(c.get("a", "x")?.rv, "1000");
});

test("deleting an object removes it from its index", () => {
  const c = cache([undefined]);
  c.replace(undefined, [obj("a", "x", "1", "run-1"), obj("a", "y", "1", "run-1")]);
  c.apply({ type: "DELETED", object: obj("a", "x", "2", "run-1") });
  assert.deepEqual(
    c.byIndex("run-1").map((v) => v.name),
    ["y"],
  );
  c.apply({ type: "DELETED", object: obj("a", "y", "2", "run-1") });
  assert.deepEqual(c.byIndex("run-1"), []);
  assert.equal(c.size, 0);
});
