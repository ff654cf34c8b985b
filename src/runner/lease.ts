/**
 * Leases of the requests a process runs. The request log's running request of a stack is the one
 * lock of that stack, held for as long as its owner renews the lease. A process that can no longer
 * show it holds a request must stop working on it before someone else may take the stack: when
 * the log says the request is no longer this process's (its lease ran out and it was taken back),
 * or when renewing has failed (or not answered) until a quarter of the lease is left, the
 * request's signal aborts and its update is cancelled (Pulumi stops cleanly and releases the
 * stack) while the lease still keeps others out.
 */
import { RunnerError } from "./errors";

/** How long a claim on a running request lasts unless renewed (renewed every quarter of it). */
export const LEASE_MS = 60_000;

/** What renews leases: the request log's `renew` (of the requests named, the ids it renewed). */
export interface LeaseStore {
    renew(owner: string, leaseUntil: Date, ids: readonly string[]): Promise<readonly string[]>;
}

/**
 * Why a held request was cancelled when its lease was lost: the log gave it to another run, or it
 * could not be renewed in time. Its update must stop before another process may take the stack,
 * so the engine is killed if it does not stop by itself (`stopsHard`, engine-process.ts).
 */
export class LeaseLostError extends RunnerError {}

/** Whether an abort's reason is a lost lease (see {@link LeaseLostError}). */
export function isLeaseLoss(reason: unknown): boolean {
    return reason instanceof LeaseLostError;
}

/** One request held under a lease. */
export interface Held {
    /** Aborts (with a {@link RunnerError}) when the lease is lost or has a quarter or less left without a renewal. */
    readonly signal: AbortSignal;
    /** Whether this is still the process's run of the request (false once the process claimed it again for another run). */
    current(): boolean;
    /** Stops watching the request (it finished). */
    release(): void;
}

/** The leases of one owner's running requests, renewed together. */
export class Leases {
    private readonly held = new Map<string, { controller: AbortController; until: number }>();
    private timer: NodeJS.Timeout | undefined;
    private readonly leaseMs: number;
    private readonly now: () => Date;

    constructor(
        private readonly store: LeaseStore,
        private readonly owner: string,
        opts: { now?: () => Date; leaseMs?: number; onLost?: (id: string, error: RunnerError) => void } = {},
    ) {
        this.leaseMs = opts.leaseMs ?? LEASE_MS;
        this.now = opts.now ?? (() => new Date());
        this.onLost = opts.onLost;
    }

    private readonly onLost: ((id: string, error: RunnerError) => void) | undefined;

    /**
     * Watches a request whose lease was just set (claimed or begun now) until {@link Held.release}.
     * `until` is the lease's end as the log recorded it (computed before the claim's query ran, so
     * a slow claim does not move the watchdog's deadline past the log's); default: now plus a lease.
     */
    hold(id: string, until?: Date): Held {
        // Held already: an earlier run of it lost it and this process claimed it again; that run stops.
        this.lose(id, new LeaseLostError("conflict", `request ${id} was taken back from this run and claimed again; this run was cancelled`, "lease-lost"));
        const controller = new AbortController();
        this.held.set(id, { controller, until: Math.min(until?.getTime() ?? Number.POSITIVE_INFINITY, this.now().getTime() + this.leaseMs) });
        this.timer ??= setInterval(() => void this.renew(), this.leaseMs / 4);
        // Deadlines are looked at more often than renewals: one renewal that fails is survived, and a
        // request held between two renewals still stops with about a quarter of its lease left.
        this.watchdog ??= setInterval(() => this.expire(), this.leaseMs / 16);
        return {
            signal: controller.signal,
            current: () => this.held.get(id)?.controller === controller,
            release: () => {
                if (this.held.get(id)?.controller !== controller) return;
                this.held.delete(id);
                if (this.held.size === 0) this.stop();
            },
        };
    }

    /** Stops renewing (nothing held, or the process stops). */
    stop(): void {
        if (this.timer) clearInterval(this.timer);
        if (this.watchdog) clearInterval(this.watchdog);
        this.timer = undefined;
        this.watchdog = undefined;
    }

    private watchdog: NodeJS.Timeout | undefined;

    /**
     * Renews every held lease once; aborts the requests the log no longer gives this owner, and
     * those whose lease has a quarter or less left without a renewal (the log unreachable, or
     * answering too slowly: a renewal that hangs counts as failed once it has taken an eighth of
     * the lease).
     */
    async renew(): Promise<void> {
        if (this.held.size === 0 || this.renewing) return;
        const at = this.now().getTime();
        const asked = [...this.held.keys()];
        let timer: NodeJS.Timeout | undefined;
        this.renewing = true;
        let renewed: ReadonlySet<string>;
        try {
            const slow = new Promise<never>((_, reject) => {
                timer = setTimeout(() => reject(new Error(`no answer in ${this.leaseMs / 8} ms`)), this.leaseMs / 8);
            });
            // Only the requests this process holds: a row the log gave this owner without the process
            // knowing (a claim whose answer was lost) is left to lapse and go back to the queue.
            renewed = new Set(await Promise.race([this.store.renew(this.owner, new Date(at + this.leaseMs), asked), slow]));
        } catch (e) {
            this.lastFailure = e instanceof Error ? e.message : String(e);
            this.expire();
            return;
        } finally {
            clearTimeout(timer);
            this.renewing = false;
        }
        this.lastFailure = undefined;
        for (const id of asked) {
            const h = this.held.get(id);
            if (!h) continue;
            if (renewed.has(id)) h.until = at + this.leaseMs;
            else this.lose(id, new LeaseLostError("conflict", `request ${id} is no longer this process's in the request log (its lease ran out and it was taken back); the update was cancelled`, "lease-lost"));
        }
    }

    private renewing = false;
    /** Why the last renewal failed, if it did. */
    private lastFailure: string | undefined;

    /** Aborts held requests whose lease has a quarter or less left: stopping must end before it runs out. */
    expire(): void {
        const why = this.lastFailure === undefined ? "" : ` (${this.lastFailure})`;
        for (const [id, h] of this.held) {
            if (this.now().getTime() >= h.until - this.leaseMs / 4) {
                this.lose(id, new LeaseLostError("unavailable", `request ${id}: its lease could not be renewed in the request log${why}; the update was cancelled with a quarter of the lease left, so that it stops before another process may take the stack`));
            }
        }
    }

    private lose(id: string, error: LeaseLostError): void {
        const h = this.held.get(id);
        if (!h || h.controller.signal.aborted) return;
        this.onLost?.(id, error);
        h.controller.abort(error);
    }
}
