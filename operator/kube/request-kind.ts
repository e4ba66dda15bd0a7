// What a request to the Kubernetes API is, named as kube-apiserver names it in
// apiserver_request_total: verb (GET, LIST, WATCH, CREATE, UPDATE, PATCH, DELETE, DELETECOLLECTION),
// resource and subresource. Pure: the operator counts its own requests by these labels.

export type RequestKind = { verb: string; resource: string; subresource: string };

const VERBS: Record<string, { one: string; many: string }> = {
  GET: { one: "GET", many: "LIST" },
  HEAD: { one: "GET", many: "LIST" },
  POST: { one: "CREATE", many: "CREATE" },
  PUT: { one: "UPDATE", many: "UPDATE" },
  PATCH: { one: "PATCH", many: "PATCH" },
  DELETE: { one: "DELETE", many: "DELETECOLLECTION" },
};

/**
 * Classifies METHOD and PATH (with its query string) of a request:
 * /api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]] and /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUB]].
 * A namespace object itself is /api/v1/namespaces/NAME. Anything else (discovery, /version,
 * /healthz) is resource "" with the method's verb.
 */
export function classifyRequest(method: string, path: string): RequestKind {
  const [pathname = "", query = ""] = path.split("?", 2);
  const parts = pathname.split("/").filter(Boolean);
  const rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : undefined;
  const verbs = VERBS[method.toUpperCase()] ?? { one: method.toUpperCase(), many: method.toUpperCase() };
  if (!rest || rest.length === 0) return { verb: verbs.one, resource: "", subresource: "" };
  // namespaces/NS/RESOURCE/... unless the path is the namespace object (or its subresource) itself.
  const scoped = rest[0] === "namespaces" && rest.length >= 3 ? rest.slice(2) : rest;
  const [resource = "", name, subresource = ""] = scoped;
  const watch = /(^|&)watch=(true|1)(&|$)/.test(query);
  if (watch && verbs.one === "GET") return { verb: "WATCH", resource, subresource };
  return { verb: name === undefined ? verbs.many : verbs.one, resource, subresource };
}
