/**
 * The request log in PostgreSQL (node-postgres), for several service replicas sharing one queue.
 * Claims run in a transaction with row locks (`FOR UPDATE SKIP LOCKED`); the unique index over
 * running requests per stack makes a second claim of a busy stack fail in the database itself,
 * whatever the replicas do.
 */
import type { Pool, PoolClient } from "pg";

import type { Approval } from "../runner/core";
import { approvalOf, endedError, requeueable, schema, toRecord } from "./sqlite-store";
import type { NewRequest, RequestEvent, RequestRecord, RequestStore } from "./store";


type Row = Record<string, string | number | null>;

/** A PostgreSQL request store. */
export class PostgresStore implements RequestStore {
    private constructor(private readonly pool: Pool) {}

    /** Connects and creates the tables (concurrent replicas may race to do so; an advisory lock orders them). */
    static async open(url: string): Promise<PostgresStore> {
        // A link to the database that goes dead (a partition, a lost host) answers nothing, not
        // even an error: connecting and every query give up instead of hanging, so the replica
        // notices, stops claiming and reports not ready (server.ts `checkHealth`).
        // Loaded here: a CLI or service on SQLite never needs the driver.
        const { Pool } = await import("pg");
        const pool = new Pool({ connectionString: url, max: 8, connectionTimeoutMillis: 10_000, query_timeout: 20_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
        // An idle connection the server closes (restart, failover) must not crash the service:
        // the pool replaces it on the next query, which reports any lasting failure.
        pool.on("error", () => undefined);
        const c = await pool.connect();
        try {
            await c.query("SELECT pg_advisory_lock(727274)");
            for (const sql of schema("BIGSERIAL PRIMARY KEY")) await c.query(sql);
            await c.query("SELECT pg_advisory_unlock(727274)");
        } finally {
            c.release();
        }
        return new PostgresStore(pool);
    }

    private async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
        const c = await this.pool.connect();
        let broken = false;
        try {
            await c.query("BEGIN");
            const out = await fn(c);
            await c.query("COMMIT");
            return out;
        } catch (e) {
            broken = await c.query("ROLLBACK").then(
                () => false,
                () => true,
            );
            throw e;
        } finally {
            // A connection that cannot even roll back is dropped, not handed to the next caller.
            c.release(broken || undefined);
        }
    }

    private async event(c: PoolClient, id: string, type: RequestEvent["type"], data: unknown, now: Date): Promise<void> {
        // The request's row lock orders its events (output and state changes may be written at once).
        await c.query("SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", [id]);
        await c.query(
            "INSERT INTO events (request_id, seq, at, type, data) SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM events WHERE request_id = $1",
            [id, now.toISOString(), type, JSON.stringify(data)],
        );
    }

    async create(req: NewRequest, now: Date): Promise<{ record: RequestRecord; created: boolean }> {
        return this.tx(async (c) => {
            if (req.idempotencyKey) {
                // Only a success is replayed: a failed request gives its key up (its record stays, for the audit), so a retry runs again.
                await c.query("UPDATE requests SET idempotency_key = NULL WHERE principal = $1 AND idempotency_key = $2 AND state = 'failed'", [req.principal, req.idempotencyKey]);
            }
            const inserted = await c.query(
                `INSERT INTO requests (id, verb, stack, coalesce_key, body, principal, idempotency_key, state, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8) ON CONFLICT DO NOTHING RETURNING *`,
                [req.id, req.verb, req.stack, req.coalesceKey ?? null, JSON.stringify(req.body), req.principal, req.idempotencyKey ?? null, now.toISOString()],
            );
            if (inserted.rows.length) {
                await this.event(c, req.id, "state", { state: "queued" }, now);
                return { record: toRecord(inserted.rows[0] as Row), created: true };
            }
            // Ids are generated, never taken from a caller, so the conflict is the principal's own key.
            const existing = await c.query("SELECT * FROM requests WHERE principal = $1 AND idempotency_key = $2 LIMIT 1", [req.principal, req.idempotencyKey ?? null]);
            if (!existing.rows.length) throw new Error(`request ${req.id} conflicted with a row that is gone`);
            return { record: toRecord(existing.rows[0] as Row), created: false };
        });
    }

    async get(id: string): Promise<RequestRecord | undefined> {
        const r = await this.pool.query("SELECT * FROM requests WHERE id = $1", [id]);
        return r.rows.length ? toRecord(r.rows[0] as Row) : undefined;
    }

    async begin(req: NewRequest, owner: string, now: Date, leaseUntil: Date): Promise<{ record: RequestRecord; created: boolean } | undefined> {
        try {
            return await this.tx(async (c) => {
                if (req.idempotencyKey) {
                    await c.query("UPDATE requests SET idempotency_key = NULL WHERE principal = $1 AND idempotency_key = $2 AND state = 'failed'", [req.principal, req.idempotencyKey]);
                    const existing = await c.query("SELECT * FROM requests WHERE principal = $1 AND idempotency_key = $2 LIMIT 1", [req.principal, req.idempotencyKey]);
                    if (existing.rows.length) return { record: toRecord(existing.rows[0] as Row), created: false };
                }
                const busy = await c.query("SELECT 1 FROM requests WHERE stack = $1 AND state = 'running'", [req.stack]);
                if (busy.rows.length) return undefined;
                const inserted = await c.query(
                    `INSERT INTO requests (id, verb, stack, coalesce_key, body, principal, idempotency_key, state, created_at, started_at, attempts, owner, lease_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $8, 1, $9, $10) RETURNING *`,
                    [req.id, req.verb, req.stack, req.coalesceKey ?? null, JSON.stringify(req.body), req.principal, req.idempotencyKey ?? null, now.toISOString(), owner, leaseUntil.toISOString()],
                );
                await this.event(c, req.id, "state", { state: "running", attempt: 1 }, now);
                return { record: toRecord(inserted.rows[0] as Row), created: true };
            });
        } catch (e) {
            // Another process began a request of the same stack (the running index) or used the
            // same key (the idempotency index) at the same moment: busy; the caller tries again.
            if ((e as { code?: string }).code === "23505") return undefined;
            throw e;
        }
    }

    async runningOn(stack: string): Promise<RequestRecord | undefined> {
        const r = await this.pool.query("SELECT * FROM requests WHERE stack = $1 AND state = 'running'", [stack]);
        return r.rows.length ? toRecord(r.rows[0] as Row) : undefined;
    }

    async claim(owner: string, now: Date, leaseUntil: Date, coalescing: ReadonlySet<string>): Promise<RequestRecord | undefined> {
        try {
            return await this.tx(async (c) => {
                if (coalescing.size) {
                    const older = await c.query(
                        `SELECT r.id, (SELECT n2.id FROM requests n2 WHERE n2.stack = r.stack AND n2.coalesce_key = r.coalesce_key AND n2.state = 'queued' ORDER BY n2.n DESC LIMIT 1) AS newest
                         FROM requests r WHERE r.state = 'queued' AND r.stack = ANY($1) AND r.coalesce_key IS NOT NULL
                         AND EXISTS (SELECT 1 FROM requests n WHERE n.stack = r.stack AND n.coalesce_key = r.coalesce_key AND n.state = 'queued' AND n.n > r.n)
                         FOR UPDATE OF r SKIP LOCKED`,
                        [[...coalescing]],
                    );
                    for (const o of older.rows as { id: string; newest: string }[]) {
                        const result = { requestId: o.id, state: "superseded", message: `superseded by request ${o.newest} for the same app`, supersededBy: o.newest };
                        await c.query("UPDATE requests SET state = 'superseded', result = $1, finished_at = $2 WHERE id = $3", [JSON.stringify(result), now.toISOString(), o.id]);
                        await this.event(c, o.id, "state", { state: "superseded", supersededBy: o.newest }, now);
                    }
                }
                const next = await c.query(
                    `SELECT * FROM requests WHERE state = 'queued' AND stack NOT LIKE '%#%' AND stack NOT IN (SELECT stack FROM requests WHERE state = 'running') ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED`,
                );
                if (!next.rows.length) return undefined;
                const row = next.rows[0] as Row;
                const updated = await c.query(
                    "UPDATE requests SET state = 'running', owner = $1, lease_until = $2, started_at = $3, attempts = attempts + 1 WHERE id = $4 RETURNING *",
                    [owner, leaseUntil.toISOString(), now.toISOString(), row.id],
                );
                await this.event(c, row.id as string, "state", { state: "running", attempt: Number(row.attempts) + 1 }, now);
                return toRecord(updated.rows[0] as Row);
            });
        } catch (e) {
            // Another replica claimed a request of the same stack at the same moment: the running
            // index refused ours. Nothing was changed; try again on the next round.
            if ((e as { code?: string }).code === "23505") return undefined;
            throw e;
        }
    }

    async ping(): Promise<void> {
        await this.pool.query("SELECT 1");
    }

    async renew(owner: string, leaseUntil: Date, ids: readonly string[]): Promise<string[]> {
        return (await this.pool.query<{ id: string }>("UPDATE requests SET lease_until = $1 WHERE state = 'running' AND owner = $2 AND id = ANY($3) RETURNING id", [leaseUntil.toISOString(), owner, [...ids]])).rows.map((r) => r.id);
    }

    async finish(id: string, state: "done" | "failed" | "superseded", now: Date, outcome: { result?: unknown; error?: unknown }, owner?: string): Promise<boolean> {
        return this.tx(async (c) => {
            const values = [state, outcome.result === undefined ? null : JSON.stringify(outcome.result), outcome.error === undefined ? null : JSON.stringify(outcome.error), now.toISOString(), id];
            const r =
                owner === undefined
                    ? await c.query("UPDATE requests SET state = $1, result = $2, error = $3, finished_at = $4, owner = NULL, lease_until = NULL WHERE id = $5", values)
                    : await c.query("UPDATE requests SET state = $1, result = $2, error = $3, finished_at = $4, owner = NULL, lease_until = NULL WHERE id = $5 AND state = 'running' AND owner = $6", [...values, owner]);
            if (r.rowCount) await this.event(c, id, "state", { state }, now);
            return (r.rowCount ?? 0) > 0;
        });
    }

    async requeue(id: string, owner: string): Promise<void> {
        await this.tx(async (c) => {
            const r = await c.query("UPDATE requests SET state = 'queued', owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'running' AND owner = $2", [id, owner]);
            if (r.rowCount) await this.event(c, id, "state", { state: "queued", requeued: true }, new Date());
        });
    }

    async recover(owner: string | null, now: Date): Promise<string[]> {
        return this.tx(async (c) => {
            const rows = await c.query("SELECT id, owner, stack FROM requests WHERE state = 'running' AND (owner = $1 OR lease_until < $2) FOR UPDATE", [owner, now.toISOString()]);
            for (const r of rows.rows as { id: string; owner: string | null; stack: string }[]) {
                if (!requeueable(r)) {
                    await c.query("UPDATE requests SET state = 'failed', error = $1, finished_at = $2, owner = NULL, lease_until = NULL WHERE id = $3", [JSON.stringify(endedError(r.id, r.owner ?? "(none)")), now.toISOString(), r.id]);
                    await this.event(c, r.id, "state", { state: "failed", ended: true }, now);
                    continue;
                }
                await c.query("UPDATE requests SET state = 'queued', owner = NULL, lease_until = NULL WHERE id = $1", [r.id]);
                await this.event(c, r.id, "state", { state: "queued", recovered: true }, now);
            }
            return (rows.rows as { id: string }[]).map((r) => r.id);
        });
    }

    async appendEvent(id: string, type: RequestEvent["type"], data: unknown, now: Date): Promise<void> {
        await this.tx((c) => this.event(c, id, type, data, now));
    }

    async events(id: string, afterSeq: number): Promise<RequestEvent[]> {
        const r = await this.pool.query("SELECT seq, at, type, data FROM events WHERE request_id = $1 AND seq > $2 ORDER BY seq", [id, afterSeq]);
        return (r.rows as Row[]).map((x) => ({ seq: Number(x.seq), at: x.at as string, type: x.type as RequestEvent["type"], data: JSON.parse(x.data as string) }));
    }

    async recent(limit: number): Promise<RequestRecord[]> {
        const r = await this.pool.query("SELECT * FROM requests ORDER BY n DESC LIMIT $1", [limit]);
        return (r.rows as Row[]).map(toRecord);
    }

    async approvals(): Promise<Approval[]> {
        const r = await this.pool.query("SELECT app, version, stage, approved_by, approved_at FROM approvals ORDER BY approved_at");
        return (r.rows as Row[]).map(approvalOf);
    }

    async addApproval(a: Approval): Promise<void> {
        await this.pool.query("INSERT INTO approvals (app, version, stage, approved_by, approved_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", [a.app, a.version, a.stage, a.by, a.at]);
    }

    async removeApproval(a: Pick<Approval, "app" | "version" | "stage">): Promise<void> {
        await this.pool.query("DELETE FROM approvals WHERE app = $1 AND version = $2 AND stage = $3", [a.app, a.version, a.stage]);
    }

    async answer(principal: string, key: string): Promise<unknown | undefined> {
        const r = await this.pool.query("SELECT answer FROM answers WHERE principal = $1 AND idempotency_key = $2", [principal, key]);
        return r.rows.length ? JSON.parse((r.rows[0] as { answer: string }).answer) : undefined;
    }

    async saveAnswer(principal: string, key: string, value: unknown): Promise<void> {
        await this.pool.query("INSERT INTO answers (principal, idempotency_key, answer) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [principal, key, JSON.stringify(value)]);
    }

    async close(): Promise<void> {
        await this.pool.end();
    }
}
