// The Kubernetes adapter for ContinualClipRun objects and Events. Only kube/ imports client-node.
import { createHash } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type ContinualClipRunStatus } from "../api/continual-clip-run.ts";
import { isConflict, isNotFound } from "./errors.ts";
import { classifyRequest } from "./request-kind.ts";
import { kubeRequestsTotal } from "../observability/metrics.ts";

export const FIELD_MANAGER = "continual-clip-operator";

export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault(); // $KUBECONFIG, ~/.kube/config, or the in-cluster service account
  return shareDispatcher(kc);
}

type DispatchOptions = { method: string; path: string };
type Dispatch = (opts: DispatchOptions, handler: unknown) => boolean;
type Dispatcher = { close(): Promise<void>; compose(interceptor: (dispatch: Dispatch) => Dispatch): Dispatcher };
type DispatcherFactory = (cluster: k8s.Cluster | null, agentOptions: object) => Dispatcher | undefined;

/**
 * client-node 2.x builds a new undici Agent for every request (KubeConfig.createDispatcher, called
 * from applySecurityAuthentication), so every API call paid a TLS handshake and left a pool behind
 * until GC: 1,800 connections for 600 reconciles. This makes the KubeConfig hand out one keep-alive
 * Agent per distinct set of TLS options (server CA, client certificate, server name), which is one
 * per API server in practice. When the options change (a rotated client certificate from an exec
 * plugin) a new Agent replaces the old one, which closes once its in-flight requests end.
 * Every request through it, watches included, is counted in ticclip_kube_requests_total by verb and
 * resource as kube-apiserver names them (a kubeconfig with no TLS options at all gets no Agent from
 * client-node, so its requests go uncounted). Returns kc itself.
 */
export function shareDispatcher(kc: k8s.KubeConfig): k8s.KubeConfig {
  const target = kc as unknown as { createDispatcher: DispatcherFactory };
  const build = target.createDispatcher.bind(kc);
  let current: { key: string; dispatcher: Dispatcher | undefined } | undefined;
  target.createDispatcher = (cluster, agentOptions) => {
    const options = kc.createDispatcherOptions(cluster, agentOptions);
    const key = createHash("sha256")
      .update(JSON.stringify([cluster?.server, options]))
      .digest("hex");
    if (current?.key === key) return current.dispatcher;
    const previous = current?.dispatcher;
    current = { key, dispatcher: build(cluster, agentOptions)?.compose(countRequests) };
    void previous?.close().catch(() => undefined);
    return current.dispatcher;
  };
  return kc;
}

const countRequests =
  (dispatch: Dispatch): Dispatch =>
  (opts, handler) => {
    kubeRequestsTotal.inc(classifyRequest(opts.method, opts.path));
    return dispatch(opts, handler);
  };

/** A run as it comes off the wire: not yet validated. */
export type RawObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    [k: string]: unknown;
  };
  spec?: unknown;
  status?: unknown;
};

export type ListResult = { items: RawObject[]; resourceVersion: string };

/** What RunClient needs of watch.ts's WatchCache (declared here: watch.ts imports this module). */
export type ObjectCache<T> = {
  readonly synced: boolean;
  get(namespace: string, name: string): T | undefined;
  byIndex(ix: string): T[];
  put(object: RawObject): void;
};

/**
 * A run as the watch cache keeps it: its JSON text, managedFields (often larger than the spec)
 * dropped. Text is a few times smaller than the object graph it parses into, and a run is read once
 * per reconcile, so each reconcile gets a fresh copy for the price of one JSON.parse.
 */
export function cachedRun(o: RawObject): string {
  const { managedFields: _, ...metadata } = o.metadata;
  return JSON.stringify({ ...o, metadata });
}

export class RunClient {
  readonly #custom: k8s.CustomObjectsApi;
  readonly #cache: ObjectCache<string> | undefined;
  /** cache: the run watch's cache (of cachedRun texts); without one every get is an API read. */
  constructor(kc: k8s.KubeConfig, cache?: ObjectCache<string>) {
    this.#custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.#cache = cache;
  }

  /** Lists runs in one namespace, or in all when namespace is undefined. */
  async list(namespace?: string): Promise<ListResult> {
    const res = namespace
      ? await this.#custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace })
      : await this.#custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL });
    return { items: res.items as RawObject[], resourceVersion: res.metadata.resourceVersion as string };
  }

  watchPath(namespace?: string): string {
    return namespace
      ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`
      : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
  }

  /** Reads a run (from the watch cache once synced); undefined when it does not exist. */
  async get(namespace: string, name: string): Promise<RawObject | undefined> {
    if (this.#cache?.synced) {
      const text = this.#cache.get(namespace, name);
      return text === undefined ? undefined : (JSON.parse(text) as RawObject);
    }
    try {
      return (await this.#custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        name,
      })) as RawObject;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Replaces status through the status subresource. A merge patch replaces arrays whole, so the
   * full conditions list goes every time; the fixed field manager makes our writes attributable.
   * Returns false when the run is gone.
   */
  async patchStatus(namespace: string, name: string, status: ContinualClipRunStatus): Promise<boolean> {
    try {
      const updated = await this.#custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace,
          name,
          body: { status },
          fieldManager: FIELD_MANAGER,
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
      // The next reconcile compares against what we wrote, not the pre-patch status the watch
      // may not have replaced yet (which would patch the same change twice).
      this.#cache?.put(updated as RawObject);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}

export type EventType = "Normal" | "Warning";

/**
 * Records core/v1 Events about runs. The name derives from the run, reason and message, so the
 * same event after a restart bumps a count instead of adding a twin.
 */
export class EventRecorder {
  readonly #core: k8s.CoreV1Api;
  readonly #instance: string;
  constructor(kc: k8s.KubeConfig, instance: string) {
    this.#core = kc.makeApiClient(k8s.CoreV1Api);
    this.#instance = instance;
  }

  async record(run: RawObject, type: EventType, reason: string, message: string): Promise<void> {
    const { namespace, name, uid } = run.metadata;
    const digest = createHash("sha256").update(`${uid}/${type}/${reason}/${message}`).digest("hex").slice(0, 16);
    const eventName = `${name}.${digest}`;
    const now = new Date();
    try {
      await this.#core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { name: eventName, namespace },
          involvedObject: {
            apiVersion: API_VERSION,
            kind: KIND,
            name,
            namespace,
            uid,
            resourceVersion: run.metadata.resourceVersion,
          },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: FIELD_MANAGER },
          reportingComponent: FIELD_MANAGER,
          reportingInstance: this.#instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (err) {
      if (!isConflict(err)) throw err;
      const existing = await this.#core.readNamespacedEvent({ namespace, name: eventName });
      await this.#core.patchNamespacedEvent(
        { namespace, name: eventName, body: { count: (existing.count ?? 1) + 1, lastTimestamp: now } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
    }
  }
}
