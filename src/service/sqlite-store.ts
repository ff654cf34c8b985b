/**
 * The request log in an SQLite file (better-sqlite3), the embedded default for one replica. WAL
 * journal and synchronous=FULL: an acknowledged request survives a crash of the process or machine.
 */
import Database from "better-sqlite3";
import * as fs from "node:fs";
import * as path from "node:path";

import type { Approval } from "../runner/core";
import type { NewRequest, RequestEvent, RequestRecord, RequestStore } from "./store";

/**
 * Tables and indexes, for SQLite or PostgreSQL (only the ordering column's type differs); the
 * running index is what keeps two updates of one stack apart.
 */
export function schema(ordering: "INTEGER PRIMARY KEY AUTOINCREMENT" | "BIGSERIAL PRIMARY KEY"): string[] {
    return [
        `CREATE TABLE IF NOT EXISTS requests (
            n ${ordering},
            id TEXT NOT NULL UNIQUE,
            verb TEXT NOT NULL,
            stack TEXT NOT NULL,
            coalesce_key TEXT,
            body TEXT NOT NULL,
            principal TEXT NOT NULL,
            idempotency_key TEXT,
            state TEXT NOT NULL,
            result TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            lease_until TEXT
        )`,
        `CREATE UNIQUE INDEX IF NOT EXISTS requests_idempotency ON requests(principal, idempotency_key) WHERE idempotency_key IS NOT NULL`,
        `CREATE UNIQUE INDEX IF NOT EXISTS requests_running ON requests(stack) WHERE state = 'running'`,
        `CREATE INDEX IF NOT EXISTS requests_state ON requests(state, n)`,
        `CREATE TABLE IF NOT EXISTS events (
            request_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (request_id, seq)
        )`,
        // Owners' approvals of a release for a stage, used up by the promotion they allow.
        `CREATE TABLE IF NOT EXISTS approvals (
            app TEXT NOT NULL,
            version TEXT NOT NULL,
            stage TEXT NOT NULL,
            approved_by TEXT NOT NULL,
            approved_at TEXT NOT NULL,
            PRIMARY KEY (app, version, stage)
        )`,
        // The runner's answers to idempotency keys, per principal (only successes are kept).
        `CREATE TABLE IF NOT EXISTS answers (
            principal TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            answer TEXT NOT NULL,
            PRIMARY KEY (principal, idempotency_key)
        )`,
    ];
}

type Row = Record<string, string | number | null>;

/** A database row as a record. */
export function toRecord(r: Row): RequestRecord {
    const json = (v: unknown) => (v === null || v === undefined ? undefined : (typeof v === "string" ? JSON.parse(v) : v));
    const opt = <T>(k: string, v: T | null | undefined) => (v === null || v === undefined ? {} : { [k]: v });
    const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : (v as string | null));
    return {
        id: r.id as string,
        verb: r.verb as string,
        stack: r.stack as string,
        ...opt("coalesceKey", r.coalesce_key),
        body: json(r.body),
        principal: r.principal as string,
        ...opt("idempotencyKey", r.idempotency_key),
        state: r.state as RequestRecord["state"],
        ...opt("result", json(r.result)),
        ...opt("error", json(r.error)),
        createdAt: iso(r.created_at) as string,
        ...opt("startedAt", iso(r.started_at)),
        ...opt("finishedAt", iso(r.finished_at)),
        attempts: Number(r.attempts),
        ...opt("owner", r.owner),
        ...opt("leaseUntil", iso(r.lease_until)),
    } as RequestRecord;
}

/** The prefix of a CLI process's name as the owner of the request it runs (`cli:<host>:<pid>`). */
export const CLI_OWNER = "cli:";

/** Whether a worker may run a running request again once its owner is gone: not a CLI's, not a change answered at once. */
export function requeueable(r: { owner: string | null; stack: string }): boolean {
    return !r.owner?.startsWith(CLI_OWNER) && !r.stack.includes("#");
}

/** The error recorded for a request whose CLI process ended without finishing it. */
export function endedError(id: string, owner: string): { kind: "internal"; message: string; requestId: string } {
    return { kind: "internal", message: `the process that ran it (${owner}) ended before it finished; ask again`, requestId: id };
}

/** An approval row as an approval. */
export function approvalOf(r: Row): Approval {
    const at = r.approved_at as unknown;
    return { app: r.app as string, version: r.version as string, stage: r.stage as string, by: r.approved_by as string, at: at instanceof Date ? at.toISOString() : (at as string) };
}

/** An SQLite request store. */
export class SqliteStore implements RequestStore {
    private readonly db: Database.Database;

    constructor(file: string) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        this.db = new Database(file);
        this.db.pragma("journal_mode = WAL");
        this.db.pragma("synchronous = FULL");
        // Another process (a second CLI-started service, a test) may hold the write lock briefly.
        this.db.pragma("busy_timeout = 10000");
        for (const sql of schema("INTEGER PRIMARY KEY AUTOINCREMENT")) this.db.exec(sql);
    }

    async create(req: NewRequest, now: Date): Promise<{ record: RequestRecord; created: boolean }> {
        return this.db.transaction(() => {
            if (req.idempotencyKey) {
                const existing = this.db.prepare("SELECT * FROM requests WHERE principal = ? AND idempotency_key = ?").get(req.principal, req.idempotencyKey) as Row | undefined;
                if (existing && existing.state !== "failed") return { record: toRecord(existing), created: false };
                // Only a success is replayed: a failed request gives its key up (its record stays, for the audit), so a retry runs again.
                if (existing) this.db.prepare("UPDATE requests SET idempotency_key = NULL WHERE id = ?").run(existing.id);
            }
            this.db
                .prepare("INSERT INTO requests (id, verb, stack, coalesce_key, body, principal, idempotency_key, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)")
                .run(req.id, req.verb, req.stack, req.coalesceKey ?? null, JSON.stringify(req.body), req.principal, req.idempotencyKey ?? null, now.toISOString());
            this.event(req.id, "state", { state: "queued" }, now);
            return { record: toRecord(this.db.prepare("SELECT * FROM requests WHERE id = ?").get(req.id) as Row), created: true };
        }).immediate();
    }

    async get(id: string): Promise<RequestRecord | undefined> {
        const r = this.db.prepare("SELECT * FROM requests WHERE id = ?").get(id) as Row | undefined;
        return r ? toRecord(r) : undefined;
    }

    async begin(req: NewRequest, owner: string, now: Date, leaseUntil: Date): Promise<{ record: RequestRecord; created: boolean } | undefined> {
        return this.db.transaction(() => {
            if (req.idempotencyKey) {
                const existing = this.db.prepare("SELECT * FROM requests WHERE principal = ? AND idempotency_key = ?").get(req.principal, req.idempotencyKey) as Row | undefined;
                if (existing && existing.state !== "failed") return { record: toRecord(existing), created: false };
                if (existing) this.db.prepare("UPDATE requests SET idempotency_key = NULL WHERE id = ?").run(existing.id);
            }
            if (this.db.prepare("SELECT 1 FROM requests WHERE stack = ? AND state = 'running'").get(req.stack)) return undefined;
            this.db
                .prepare("INSERT INTO requests (id, verb, stack, coalesce_key, body, principal, idempotency_key, state, created_at, started_at, attempts, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, 1, ?, ?)")
                .run(req.id, req.verb, req.stack, req.coalesceKey ?? null, JSON.stringify(req.body), req.principal, req.idempotencyKey ?? null, now.toISOString(), now.toISOString(), owner, leaseUntil.toISOString());
            this.event(req.id, "state", { state: "running", attempt: 1 }, now);
            return { record: toRecord(this.db.prepare("SELECT * FROM requests WHERE id = ?").get(req.id) as Row), created: true };
        }).immediate();
    }

    async runningOn(stack: string): Promise<RequestRecord | undefined> {
        const r = this.db.prepare("SELECT * FROM requests WHERE stack = ? AND state = 'running'").get(stack) as Row | undefined;
        return r ? toRecord(r) : undefined;
    }

    async claim(owner: string, now: Date, leaseUntil: Date, coalescing: ReadonlySet<string>): Promise<RequestRecord | undefined> {
        return this.db.transaction(() => {
            for (const stack of coalescing) {
                const older = this.db
                    .prepare(
                        `SELECT r.id AS id, (SELECT n2.id FROM requests n2 WHERE n2.stack = r.stack AND n2.coalesce_key = r.coalesce_key AND n2.state = 'queued' ORDER BY n2.n DESC LIMIT 1) AS newest
                         FROM requests r WHERE r.state = 'queued' AND r.stack = ? AND r.coalesce_key IS NOT NULL
                         AND EXISTS (SELECT 1 FROM requests n WHERE n.stack = r.stack AND n.coalesce_key = r.coalesce_key AND n.state = 'queued' AND n.n > r.n)`,
                    )
                    .all(stack) as { id: string; newest: string }[];
                for (const o of older) {
                    const result = { requestId: o.id, state: "superseded", message: `superseded by request ${o.newest} for the same app`, supersededBy: o.newest };
                    this.db.prepare("UPDATE requests SET state = 'superseded', result = ?, finished_at = ? WHERE id = ?").run(JSON.stringify(result), now.toISOString(), o.id);
                    this.event(o.id, "state", { state: "superseded", supersededBy: o.newest }, now);
                }
            }
            const next = this.db
                .prepare("SELECT * FROM requests WHERE state = 'queued' AND stack NOT LIKE '%#%' AND stack NOT IN (SELECT stack FROM requests WHERE state = 'running') ORDER BY n LIMIT 1")
                .get() as Row | undefined;
            if (!next) return undefined;
            this.db
                .prepare("UPDATE requests SET state = 'running', owner = ?, lease_until = ?, started_at = ?, attempts = attempts + 1 WHERE id = ?")
                .run(owner, leaseUntil.toISOString(), now.toISOString(), next.id);
            this.event(next.id as string, "state", { state: "running", attempt: Number(next.attempts) + 1 }, now);
            return toRecord(this.db.prepare("SELECT * FROM requests WHERE id = ?").get(next.id) as Row);
        }).immediate();
    }

    async ping(): Promise<void> {
        this.db.prepare("SELECT 1").get();
    }

    async renew(owner: string, leaseUntil: Date, ids: readonly string[]): Promise<string[]> {
        return (this.db.prepare("UPDATE requests SET lease_until = ? WHERE state = 'running' AND owner = ? AND id IN (SELECT value FROM json_each(?)) RETURNING id").all(leaseUntil.toISOString(), owner, JSON.stringify(ids)) as { id: string }[]).map((r) => r.id);
    }

    async finish(id: string, state: "done" | "failed" | "superseded", now: Date, outcome: { result?: unknown; error?: unknown }, owner?: string): Promise<boolean> {
        return this.db.transaction(() => {
            const values = [state, outcome.result === undefined ? null : JSON.stringify(outcome.result), outcome.error === undefined ? null : JSON.stringify(outcome.error), now.toISOString(), id];
            const changed =
                owner === undefined
                    ? this.db.prepare("UPDATE requests SET state = ?, result = ?, error = ?, finished_at = ?, owner = NULL, lease_until = NULL WHERE id = ?").run(...values).changes
                    : this.db.prepare("UPDATE requests SET state = ?, result = ?, error = ?, finished_at = ?, owner = NULL, lease_until = NULL WHERE id = ? AND state = 'running' AND owner = ?").run(...values, owner).changes;
            if (changed) this.event(id, "state", { state }, now);
            return changed > 0;
        }).immediate();
    }

    async requeue(id: string, owner: string): Promise<void> {
        this.db.transaction(() => {
            const changed = this.db.prepare("UPDATE requests SET state = 'queued', owner = NULL, lease_until = NULL WHERE id = ? AND state = 'running' AND owner = ?").run(id, owner).changes;
            if (changed) this.event(id, "state", { state: "queued", requeued: true }, new Date());
        }).immediate();
    }

    async recover(owner: string | null, now: Date): Promise<string[]> {
        return this.db.transaction(() => {
            const rows = this.db.prepare("SELECT id, owner, stack FROM requests WHERE state = 'running' AND (owner = ? OR lease_until < ?)").all(owner, now.toISOString()) as { id: string; owner: string | null; stack: string }[];
            for (const r of rows) {
                if (!requeueable(r)) {
                    this.db.prepare("UPDATE requests SET state = 'failed', error = ?, finished_at = ?, owner = NULL, lease_until = NULL WHERE id = ?").run(JSON.stringify(endedError(r.id, r.owner ?? "(none)")), now.toISOString(), r.id);
                    this.event(r.id, "state", { state: "failed", ended: true }, now);
                    continue;
                }
                this.db.prepare("UPDATE requests SET state = 'queued', owner = NULL, lease_until = NULL WHERE id = ?").run(r.id);
                this.event(r.id, "state", { state: "queued", recovered: true }, now);
            }
            return rows.map((r) => r.id);
        }).immediate();
    }

    private event(id: string, type: RequestEvent["type"], data: unknown, now: Date): void {
        const seq = (this.db.prepare("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM events WHERE request_id = ?").get(id) as { s: number }).s;
        this.db.prepare("INSERT INTO events (request_id, seq, at, type, data) VALUES (?, ?, ?, ?, ?)").run(id, seq, now.toISOString(), type, JSON.stringify(data));
    }

    async appendEvent(id: string, type: RequestEvent["type"], data: unknown, now: Date): Promise<void> {
        this.db.transaction(() => this.event(id, type, data, now)).immediate();
    }

    async events(id: string, afterSeq: number): Promise<RequestEvent[]> {
        const rows = this.db.prepare("SELECT seq, at, type, data FROM events WHERE request_id = ? AND seq > ? ORDER BY seq").all(id, afterSeq) as Row[];
        return rows.map((r) => ({ seq: Number(r.seq), at: r.at as string, type: r.type as RequestEvent["type"], data: JSON.parse(r.data as string) }));
    }

    async recent(limit: number): Promise<RequestRecord[]> {
        return (this.db.prepare("SELECT * FROM requests ORDER BY n DESC LIMIT ?").all(limit) as Row[]).map(toRecord);
    }

    async approvals(): Promise<Approval[]> {
        return (this.db.prepare("SELECT app, version, stage, approved_by, approved_at FROM approvals ORDER BY approved_at").all() as Row[]).map(approvalOf);
    }

    async addApproval(a: Approval): Promise<void> {
        this.db.prepare("INSERT INTO approvals (app, version, stage, approved_by, approved_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING").run(a.app, a.version, a.stage, a.by, a.at);
    }

    async removeApproval(a: Pick<Approval, "app" | "version" | "stage">): Promise<void> {
        this.db.prepare("DELETE FROM approvals WHERE app = ? AND version = ? AND stage = ?").run(a.app, a.version, a.stage);
    }

    async answer(principal: string, key: string): Promise<unknown | undefined> {
        const r = this.db.prepare("SELECT answer FROM answers WHERE principal = ? AND idempotency_key = ?").get(principal, key) as { answer: string } | undefined;
        return r ? JSON.parse(r.answer) : undefined;
    }

    async saveAnswer(principal: string, key: string, value: unknown): Promise<void> {
        this.db.prepare("INSERT INTO answers (principal, idempotency_key, answer) VALUES (?, ?, ?) ON CONFLICT DO NOTHING").run(principal, key, JSON.stringify(value));
    }

    async close(): Promise<void> {
        this.db.close();
    }
}
