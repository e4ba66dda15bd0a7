// Leader election on a coordination.k8s.io Lease, as client-go does it: only the holder
// reconciles; a standby takes over when the holder stops renewing for leaseDuration.
// Optimistic concurrency (resourceVersion on update) makes each takeover a single winner.
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../observability/log.ts";
import { errorMessage } from "../observability/log.ts";
import { isConflict, isNotFound } from "./errors.ts";

export type LeaderElectionOptions = {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number; // 15 s
  renewDeadlineMs?: number; // 10 s
  retryPeriodMs?: number; // 2 s
  onStartedLeading: () => void;
  /** Called when leadership is lost; the process should stop reconciling (main.ts exits). */
  onStoppedLeading: () => void;
  log: Logger;
};

// MicroTime must carry exactly six fractional digits; client-node passes strings through as is.
const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class LeaderElector {
  readonly #api: k8s.CoordinationV1Api;
  readonly #o: Required<LeaderElectionOptions>;
  #leading = false;
  #lastRenew = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(kc: k8s.KubeConfig, o: LeaderElectionOptions) {
    this.#api = kc.makeApiClient(k8s.CoordinationV1Api);
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...o };
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    const tick = async () => {
      if (this.#stopped) return;
      await this.#tryAcquireOrRenew();
      if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.retryPeriodMs);
    };
    void tick();
  }

  /** Stops and, when leading, releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#leading = false;
    try {
      const lease = await this.#api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name });
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      lease.spec.holderIdentity = undefined as unknown as string;
      lease.spec.leaseDurationSeconds = 1;
      lease.spec.renewTime = microTime(Date.now()) as unknown as Date;
      await this.#api.replaceNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name, body: lease });
      this.#o.log.info("leader lease released", { identity: this.#o.identity });
    } catch (err) {
      this.#o.log.warn("could not release the lease", { error: errorMessage(err) });
    }
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.#o;
    const now = Date.now();
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000), renewTime: microTime(now) as unknown as Date };
    try {
      let lease: k8s.V1Lease | undefined;
      try {
        lease = await this.#api.readNamespacedLease({ namespace, name });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (!lease) {
        await this.#api.createNamespacedLease({
          namespace,
          body: { metadata: { name, namespace }, spec: { ...spec, acquireTime: spec.renewTime, leaseTransitions: 0 } },
        });
        return this.#became(now);
      }
      const holder = lease.spec?.holderIdentity;
      const renewedAt = lease.spec?.renewTime ? new Date(lease.spec.renewTime as unknown as string).getTime() : 0;
      const duration = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
      const expired = !holder || renewedAt + duration < now;
      if (holder !== identity && !expired) return this.#notLeading(now, true);
      const takeover = holder !== identity;
      lease.spec = {
        ...lease.spec,
        ...spec,
        ...(takeover ? { acquireTime: spec.renewTime, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } : {}),
      };
      await this.#api.replaceNamespacedLease({ namespace, name, body: lease });
      this.#became(now);
    } catch (err) {
      if (!isConflict(err)) this.#o.log.warn("leader election request failed", { error: errorMessage(err) });
      this.#notLeading(now);
    }
  }

  #became(now: number): void {
    this.#lastRenew = now;
    if (!this.#leading) {
      this.#leading = true;
      this.#o.log.info("became leader", { identity: this.#o.identity });
      this.#o.onStartedLeading();
    }
  }

  #notLeading(now: number, heldByOther = false): void {
    // A leader that cannot renew within the deadline must stop before another may take over.
    if (this.#leading && (heldByOther || now - this.#lastRenew > this.#o.renewDeadlineMs)) {
      this.#leading = false;
      this.#o.log.error("lost leadership", { identity: this.#o.identity });
      this.#o.onStoppedLeading();
    }
  }
}
