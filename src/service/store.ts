/**
 * The service's durable request log and queue. Every request is recorded before it is
 * acknowledged; workers claim queued requests, and the store itself guarantees that no two
 * requests of one stack run at once (a unique index over running requests per stack), across
 * every replica that shares the database. Two implementations: SQLite in a file (one replica) and
 * PostgreSQL (several replicas).
 */
import type { RunnerStore } from "../runner/ports";

/** States of a request. */
export type RequestState = "queued" | "running" | "done" | "failed" | "superseded";

/** A request as the log holds it. */
export interface RequestRecord {
    readonly id: string;
    readonly verb: string;
    /** What the request locks: a stack (`tst`, `mr-12`). */
    readonly stack: string;
    /** Requests of the same stack with the same coalesce key may be superseded by a newer one. */
    readonly coalesceKey?: string;
    /** The request body (already validated; never holds secret values). */
    readonly body: unknown;
    readonly principal: string;
    readonly idempotencyKey?: string;
    readonly state: RequestState;
    readonly result?: unknown;
    readonly error?: unknown;
    readonly createdAt: string;
    readonly startedAt?: string;
    readonly finishedAt?: string;
    readonly attempts: number;
    /** Replica that runs it, and until when its lease holds. */
    readonly owner?: string;
    readonly leaseUntil?: string;
}

/** A new request. */
export type NewRequest = Pick<RequestRecord, "id" | "verb" | "stack" | "body" | "principal"> & { coalesceKey?: string; idempotencyKey?: string };

/** One progress event of a request. */
export interface RequestEvent {
    readonly seq: number;
    readonly at: string;
    readonly type: "state" | "output";
    readonly data: unknown;
}

/** The durable log and queue, and in the same database the runner's records (approvals, answers). */
export interface RequestStore extends RunnerStore {
    /** Records a request as queued, or returns the existing one with the same principal and idempotency key. */
    create(req: NewRequest, now: Date): Promise<{ record: RequestRecord; created: boolean }>;
    get(id: string): Promise<RequestRecord | undefined>;
    /**
     * Records a request its own process runs at once (the CLI), as `running` under `owner`, if no
     * request of its stack runs; undefined when one does (the caller waits and tries again). With an
     * idempotency key the principal used for a request that did not fail, that request is returned
     * instead (created: false), whatever its stack.
     */
    begin(req: NewRequest, owner: string, now: Date, leaseUntil: Date): Promise<{ record: RequestRecord; created: boolean } | undefined>;
    /** The request of a stack that runs now, if any. */
    runningOn(stack: string): Promise<RequestRecord | undefined>;
    /**
     * Claims the oldest queued request whose stack nothing runs, for `owner` until `leaseUntil`
     * (never a change answered at once, stack `<label>#<id>`, which its own process runs).
     * On stacks in `coalescing`, older queued requests with the same coalesce key as a newer queued
     * one are first marked superseded by it.
     */
    claim(owner: string, now: Date, leaseUntil: Date, coalescing: ReadonlySet<string>): Promise<RequestRecord | undefined>;
    /** Extends the lease of the requests `ids` that still run under `owner`; returns their ids (a request missing from them is no longer `owner`'s). */
    renew(owner: string, leaseUntil: Date, ids: readonly string[]): Promise<string[]>;
    /**
     * Records a request's outcome. With `owner`, only while the request still runs under that owner
     * (false otherwise): a process whose claim was taken from it (its lease ran out, it was taken
     * for dead) never overwrites what happened since.
     */
    finish(id: string, state: "done" | "failed" | "superseded", now: Date, outcome: { result?: unknown; error?: unknown }, owner?: string): Promise<boolean>;
    /** Puts a running request of `owner` back in the queue (cancelled by its replica's shutdown). */
    requeue(id: string, owner: string): Promise<void>;
    /**
     * Requeues running requests of `owner` (none: only those whose lease ran out), or of any owner
     * whose lease ran out before `now`. Requests no worker may run again are failed instead: a
     * CLI's (owner `cli:...`: nobody else runs what a person asked from their own shell) and the
     * changes answered at once (stack `<label>#<id>`: their secret values were never recorded).
     */
    recover(owner: string | null, now: Date): Promise<string[]>;
    appendEvent(id: string, type: RequestEvent["type"], data: unknown, now: Date): Promise<void>;
    events(id: string, afterSeq: number): Promise<RequestEvent[]>;
    /** Answers when the database does (the replica's health check): one trivial query. */
    ping(): Promise<void>;
    /** The most recent requests, newest first. */
    recent(limit: number): Promise<RequestRecord[]>;
    close(): Promise<void>;
}
