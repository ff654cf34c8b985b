/**
 * The locks Pulumi keeps of a stack in a self-managed backend, read directly: Pulumi never breaks
 * a lock left by a process that died, and has no command that lists them. On a `file://` backend
 * they are files (`.pulumi/locks/organization/<project>/<stack>/<id>.json`); on the `postgres://`
 * backend the same keys are rows of its table (`pulumi_state` unless the URL's `table` names
 * another). Other backends (Pulumi Cloud, S3, ...) report none: the first keeps its own locks, the
 * others are not read here (see docs/scale.md).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import type { Client } from "pg";

import { RunnerError } from "../errors";
import { alive } from "./processes";

const NS = "gitops-stages";

/** Who holds a lock, as the lock says. */
export interface LockOwner {
    pid: number;
    hostname: string;
    timestamp?: string;
}

/** A lock of a stack. */
export interface BackendLock {
    /** The lock's key in the backend (a file's path, a row's key). */
    readonly key: string;
    readonly owner: LockOwner;
}

/**
 * The `postgres://` backend's connection, table and key prefix, from its URL: the `table`
 * parameter is Pulumi's, not the driver's; and Pulumi's self-managed backends keep every key under
 * the URL's path (as under an S3 bucket's folder), which here is also the database's name, so
 * `postgres://db/pulumi` keeps its locks at `pulumi/.pulumi/locks/...`.
 */
export function postgresBackend(backendUrl: string): { connectionString: string; table: string; prefix: string } | undefined {
    if (!/^postgres(ql)?:\/\//.test(backendUrl)) return undefined;
    const u = new URL(backendUrl);
    const table = u.searchParams.get("table") ?? "pulumi_state";
    u.searchParams.delete("table");
    // A table name goes into SQL text: only a plain identifier is accepted (Pulumi's own rule is no looser).
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) throw new RunnerError("invalid", "PULUMI_BACKEND_URL: the table parameter must be a plain SQL identifier (letters, digits, '_')");
    // sslmode as Pulumi's driver reads it (libpq's meaning: `require` encrypts without verifying),
    // not node-postgres's stricter reading: the runner must reach the backend whenever Pulumi does.
    // (verify-ca and verify-full mean the same to both and are left to node-postgres.)
    if (["disable", "allow", "prefer", "require"].includes(u.searchParams.get("sslmode") ?? "") && !u.searchParams.has("uselibpqcompat")) u.searchParams.set("uselibpqcompat", "true");
    const folder = decodeURIComponent(u.pathname).replace(/^\/+/, "");
    return { connectionString: u.toString(), table, prefix: folder === "" || folder.endsWith("/") ? folder : `${folder}/` };
}

/** Every lock of a stack in the backend (none for backends not read here). */
export async function backendLocks(backendUrl: string, stack: string): Promise<BackendLock[]> {
    if (backendUrl.startsWith("file://")) {
        const dir = path.join(backendUrl.slice("file://".length), ".pulumi", "locks", "organization", NS, stack);
        if (!fs.existsSync(dir)) return [];
        return fs
            .readdirSync(dir)
            .filter((f) => f.endsWith(".json"))
            .flatMap((f) => {
                const owner = parseOwner(() => fs.readFileSync(path.join(dir, f), "utf8"));
                return owner ? [{ key: path.join(dir, f), owner }] : [];
            });
    }
    const pg = postgresBackend(backendUrl);
    if (!pg) return [];
    return withClient(pg, undefined, async (client) => {
        const prefix = `${pg.prefix}.pulumi/locks/organization/${NS}/${stack}/`;
        const { rows } = await client.query<{ key: string; data: unknown }>(`SELECT key, data FROM ${pg.table} WHERE key LIKE $1`, [`${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
        return rows.flatMap((r) => {
            const owner = parseOwner(() => rowText(r.data));
            return owner ? [{ key: r.key, owner }] : [];
        });
    });
}

/** One connection to the `postgres://` backend for `fn`, connecting within 10 s, always closed. */
async function withClient<T>(pg: { connectionString: string }, queryTimeoutMs: number | undefined, fn: (client: Client) => Promise<T>): Promise<T> {
    let client: Client | undefined;
    try {
        // Loaded here: only a `postgres://` backend needs the driver.
        const { Client } = await import("pg");
        client = new Client({ connectionString: pg.connectionString, connectionTimeoutMillis: 10_000, ...(queryTimeoutMs ? { query_timeout: queryTimeoutMs } : {}) });
        await client.connect();
        return await fn(client);
    } finally {
        await client?.end().catch(() => undefined);
    }
}

/**
 * A row's content as text: Pulumi's table keeps each object as `{"data": "<base64>"}` in a json
 * column (bytea in its first releases, which the driver gives as a Buffer).
 */
function rowText(data: unknown): string {
    if (Buffer.isBuffer(data)) return data.toString("utf8");
    const o = (typeof data === "string" ? JSON.parse(data) : data) as { data?: unknown } | null;
    if (o && typeof o.data === "string") return Buffer.from(o.data, "base64").toString("utf8");
    return JSON.stringify(o);
}

function parseOwner(read: () => unknown): LockOwner | undefined {
    try {
        const raw = read();
        const o = (typeof raw === "string" ? JSON.parse(raw) : raw) as Partial<LockOwner>;
        return typeof o?.pid === "number" && typeof o.hostname === "string" ? { pid: o.pid, hostname: o.hostname, ...(typeof o.timestamp === "string" ? { timestamp: o.timestamp } : {}) } : undefined;
    } catch {
        // A lock being written or of another format: not ours to judge.
        return undefined;
    }
}

/**
 * Whether a lock is left by an update that no longer runs:
 * - of this machine: its process is gone (kill -9, a lost machine rebooted);
 * - of another machine (a replica on another host): it is older than `foreignAfterMs`. The
 *   runner updates a stack only while it holds the stack's running request in the request log,
 *   which another replica's lapsed lease gave up; that replica's own watchdog cancelled its update
 *   with a quarter to three sixteenths of the lease left and killed its engine a sixteenth later
 *   (engine-process.ts). A lock of another machine is thus left by a replica that died or was cut
 *   off; the age guards against a short `pulumi up` run by hand elsewhere. Leases and this age
 *   are judged with each host's clock: skew between hosts must stay well under an eighth of a lease.
 *   Callers that hold no request of the stack (a read) pass an infinite age: only this host's count.
 */
export function isStale(owner: LockOwner, now: number, foreignAfterMs: number, host = os.hostname()): boolean {
    if (owner.hostname === host) return !alive(owner.pid);
    const at = owner.timestamp ? Date.parse(owner.timestamp) : Number.NaN;
    return Number.isFinite(at) && now - at > foreignAfterMs;
}

/** The locks of a stack that are stale (see {@link isStale}). */
export async function staleBackendLocks(backendUrl: string, stack: string, foreignAfterMs: number, now = Date.now()): Promise<BackendLock[]> {
    return (await backendLocks(backendUrl, stack)).filter((l) => isStale(l.owner, now, foreignAfterMs));
}

/**
 * Checks that the state backend answers, for backends read here (`file://`: its folder exists;
 * `postgres://`: a query answers within 10 s); others are assumed reachable until the engine says
 * otherwise. Throws a message naming where the backend came from, without credentials.
 */
export async function checkBackendReachable(backendUrl: string, from: string): Promise<void> {
    const pg = postgresBackend(backendUrl);
    if (!pg) {
        if (backendUrl.startsWith("file://") && !fs.existsSync(backendUrl.slice("file://".length))) throw new Error(`${from}: the state backend's folder ${backendUrl.slice("file://".length)} does not exist`);
        return;
    }
    // The driver first, outside the reachability check: a broken installation is not a network fault.
    await import("pg");
    try {
        await withClient(pg, 10_000, (client) => client.query("SELECT 1"));
    } catch (e) {
        const u = new URL(backendUrl);
        throw new Error(`${from}: the state backend postgres://${u.hostname}:${u.port || "5432"}${u.pathname} cannot be reached: ${e instanceof Error ? e.message : String(e)}`);
    }
}

/**
 * Removes these locks, and only these (`pulumi cancel` would remove every lock of the stack,
 * including one taken since they were judged stale).
 */
export async function removeLocks(backendUrl: string, locks: readonly BackendLock[]): Promise<void> {
    if (locks.length === 0) return;
    if (backendUrl.startsWith("file://")) {
        for (const l of locks) fs.rmSync(l.key, { force: true });
        return;
    }
    const pg = postgresBackend(backendUrl);
    if (!pg) throw new Error("removing locks of this backend is not supported");
    await withClient(pg, 20_000, (client) => client.query(`DELETE FROM ${pg.table} WHERE key = ANY($1)`, [locks.map((l) => l.key)]));
}
