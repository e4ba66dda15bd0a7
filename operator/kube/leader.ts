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
  /**
   * Called when leadership is lost. main.ts does not exit: it stops its controllers (queue, watches,
   * resync), aborts the reconciles in flight so none writes again (no status, plan, eval.json, version
   * or alias write after its next check), and keeps campaigning; winning again rebuilds them.
   */
  onStoppedLeading: () => void;
  log: Logger;
};

// MicroTime must carry exactly six fractional digits; client-node passes strings through as is.
const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

/** The Lease calls the elector makes; client-node's CoordinationV1Api fits it structurally. */
export type LeaseApi = Pick<
  k8s.CoordinationV1Api,
  "readNamespacedLease" | "createNamespacedLease" | "replaceNamespacedLease"
>;

/** A request that does not answer in time fails, so a hung API server cannot stall renewal. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class LeaderElector {
  readonly #api: LeaseApi;
  readonly #o: Required<LeaderElectionOptions>;
  #leading = false;
  #lastRenew = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The holder's record as last seen and when this process saw it change (client-go's observedTime). */
  #observed: { record: string; at: number } | undefined;

  constructor(kc: k8s.KubeConfig, o: LeaderElectionOptions, api?: LeaseApi) {
    this.#api = api ?? kc.makeApiClient(k8s.CoordinationV1Api);
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...o };
  }

  /** Every Lease request is bounded by the retry period: renewal is retried, never stuck. */
  #call<T>(p: Promise<T>, what: string): Promise<T> {
    return within(p, Math.max(1000, this.#o.retryPeriodMs), what);
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
      const lease = await this.#call(
        this.#api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name }),
        "read lease",
      );
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      lease.spec.holderIdentity = undefined as unknown as string;
      lease.spec.leaseDurationSeconds = 1;
      lease.spec.renewTime = microTime(Date.now()) as unknown as Date;
      await this.#call(
        this.#api.replaceNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name, body: lease }),
        "release lease",
      );
      this.#o.log.info("leader lease released", { identity: this.#o.identity });
    } catch (err) {
      this.#o.log.warn("could not release the lease", { error: errorMessage(err) });
    }
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.#o;
    const now = Date.now();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      renewTime: microTime(now) as unknown as Date,
    };
    try {
      let lease: k8s.V1Lease | undefined;
      try {
        lease = await this.#call(this.#api.readNamespacedLease({ namespace, name }), "read lease");
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (!lease) {
        const body = {
          metadata: { name, namespace },
          spec: { ...spec, acquireTime: spec.renewTime, leaseTransitions: 0 },
        };
        await this.#call(this.#api.createNamespacedLease({ namespace, body }), "create lease");
        return this.#became(now);
      }
      const holder = lease.spec?.holderIdentity;
      const duration = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
      // Expiry by this process's clock, as client-go does: the lease expires leaseDuration after
      // its record last changed as seen from here, whatever the holder's clock wrote in renewTime.
      const record = `${holder}|${String(lease.spec?.renewTime)}|${lease.metadata?.resourceVersion}`;
      if (this.#observed?.record !== record) this.#observed = { record, at: now };
      const expired = !holder || this.#observed.at + duration < now;
      if (holder !== identity && !expired) return this.#notLeading(now, true);
      const takeover = holder !== identity;
      lease.spec = {
        ...lease.spec,
        ...spec,
        ...(takeover ? { acquireTime: spec.renewTime, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } : {}),
      };
      await this.#call(this.#api.replaceNamespacedLease({ namespace, name, body: lease }), "renew lease");
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
