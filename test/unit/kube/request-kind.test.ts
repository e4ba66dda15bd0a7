import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { classifyRequest } from "../../../operator/kube/request-kind.ts";

describe("classifyRequest", () => {
  const cases: Array<[string, string, string, string, string?]> = [
    ["GET", "/apis/ticclip.dev/v1alpha1/namespaces/a/continualclipruns/r", "GET", "continualclipruns"],
    ["GET", "/apis/ticclip.dev/v1alpha1/namespaces/a/continualclipruns", "LIST", "continualclipruns"],
    ["GET", "/apis/ticclip.dev/v1alpha1/continualclipruns?limit=500", "LIST", "continualclipruns"],
    [
      "GET",
      "/apis/ticclip.dev/v1alpha1/namespaces/a/continualclipruns?watch=true&resourceVersion=5",
      "WATCH",
      "continualclipruns",
    ],
    [
      "PATCH",
      "/apis/ticclip.dev/v1alpha1/namespaces/a/continualclipruns/r/status",
      "PATCH",
      "continualclipruns",
      "status",
    ],
    ["POST", "/apis/batch/v1/namespaces/a/jobs", "CREATE", "jobs"],
    ["DELETE", "/api/v1/namespaces/a/pods/p", "DELETE", "pods"],
    ["DELETE", "/api/v1/namespaces/a/pods?labelSelector=x", "DELETECOLLECTION", "pods"],
    ["GET", "/api/v1/namespaces/a/secrets/s3-creds", "GET", "secrets"],
    ["GET", "/api/v1/namespaces/a", "GET", "namespaces"],
    ["GET", "/api/v1/namespaces", "LIST", "namespaces"],
    ["PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", "UPDATE", "leases"],
    ["GET", "/api/v1/nodes/n1", "GET", "nodes"],
    ["GET", "/version", "GET", ""],
    ["GET", "/apis", "GET", ""],
  ];
  for (const [method, path, verb, resource, subresource = ""] of cases) {
    test(`${method} ${path} is ${verb} ${resource}${subresource ? `/${subresource}` : ""}`, () => {
      assert.deepEqual(classifyRequest(method, path), { verb, resource, subresource });
    });
  }
});
