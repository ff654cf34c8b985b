/**
 * Opening the request log, and the one rule that keeps it the one lock of every stack: all the
 * processes that update the stacks of one data folder (its state, its workspace) use one log.
 * A CLI on the default SQLite file next to a service on PostgreSQL would each let "their" request
 * run, and two updates of one stack would meet. So the first process to open a log in a data
 * folder binds the folder to it (`<data>/service/request-log.json`), and a process that names
 * another log there is refused.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { PostgresStore } from "../service/postgres-store";
import { SqliteStore } from "../service/sqlite-store";
import type { RequestStore } from "../service/store";
import type { Approval } from "./core";
import { RunnerError } from "./errors";
import type { RunnerStore } from "./ports";

/** Whether a database setting names PostgreSQL. */
function isPostgres(database: string | undefined): boolean {
    return database !== undefined && /^postgres(ql)?:\/\//.test(database);
}

/**
 * Which log a database setting names, without credentials: `postgres://host:port/db` or
 * `sqlite:<absolute file>`. Two settings naming one log give the same identity.
 */
export function logIdentity(database: string | undefined, dataDir: string): string {
    if (isPostgres(database)) {
        let u: URL;
        try {
            u = new URL(database!);
        } catch {
            throw new RunnerError("invalid", "database: must be a postgres:// URL of the form postgres://user:password@host:port/database");
        }
        return `postgres://${u.hostname}:${u.port || "5432"}${u.pathname === "/" ? "/postgres" : decodeURIComponent(u.pathname)}`;
    }
    const file = database === undefined || database === "" ? path.join(dataDir, "service", "requests.db") : database.replace(/^sqlite:/, "");
    return `sqlite:${path.resolve(file)}`;
}

/** The file that binds a data folder to its request log. */
export function bindingFile(dataDir: string): string {
    return path.join(dataDir, "service", "request-log.json");
}

/** The log a data folder is bound to, if any. */
export function boundLog(dataDir: string): string | undefined {
    try {
        return (JSON.parse(fs.readFileSync(bindingFile(dataDir), "utf8")) as { log?: string }).log;
    } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw new RunnerError("invalid", `${bindingFile(dataDir)}: cannot be read as the request log's binding (${e instanceof Error ? e.message : String(e)}); delete it once every process of this data folder has stopped`);
    }
}

/** The refusal of a log other than the one the folder is bound to. */
function otherLog(setting: string, bound: string, identity: string, dataDir: string): RunnerError {
    return new RunnerError(
        "invalid",
        `${setting}: this data folder's requests are logged in ${bound} (its binding: ${bindingFile(dataDir)}), not ${identity}: ` +
            "the request log is the one lock of every stack, so every process of one data folder must use the same one. " +
            "Use that database, or, to move the log, stop every process of this data folder and delete that file",
    );
}

/**
 * Opens the request log's database: `postgres://...` (several replicas, and the CLIs next to them),
 * `sqlite:<file>` or a file path, default `<data>/service/requests.db`, the file `stages serve`
 * uses by default too, so the CLI and a local service share approvals, answers and requests.
 * `$GITOPS_STAGES_DATABASE` names it for the CLI, `--database` for `stages serve` (`setting`
 * names it in errors). The first process that opens a log in a data folder binds the folder to it
 * (`<data>/service/request-log.json`, written once the database has opened); a process of that
 * folder that names another log is refused (`invalid`) before it opens it. (Two processes binding
 * an unbound folder at the same moment both open their log first; the one that loses is refused
 * then, and a SQLite file it named stays, empty.) Logs are compared by host, port and database,
 * or by the SQLite file's absolute path: a folder seen under two paths (a container and its host)
 * must be given the same path in both.
 */
export async function openStore(database: string | undefined, dataDir: string, opts: { setting?: string } = {}): Promise<RequestStore> {
    const setting = opts.setting ?? "$GITOPS_STAGES_DATABASE";
    const identity = logIdentity(database, dataDir);
    const bound = boundLog(dataDir);
    if (bound !== undefined && bound !== identity) throw otherLog(setting, bound, identity, dataDir);
    let store: RequestStore;
    try {
        store = isPostgres(database) ? await PostgresStore.open(database!) : new SqliteStore(identity.slice("sqlite:".length));
    } catch (e) {
        if (!isPostgres(database)) throw e;
        // The driver's message names the address and the cause, never the password.
        throw new RunnerError("unavailable", `${setting}: the request log's database ${identity} cannot be reached: ${e instanceof Error ? e.message : String(e)}`);
    }
    try {
        if (bound === undefined) bind(dataDir, identity, setting);
        await importRecordsFile(dataDir, store);
    } catch (e) {
        await store.close();
        throw e;
    }
    return store;
}

/** Binds the folder to a log unless it is bound already (another process may bind it at the same moment: one wins, the other compares and is refused if its log differs). */
export function bind(dataDir: string, identity: string, setting: string): void {
    fs.mkdirSync(path.dirname(bindingFile(dataDir)), { recursive: true });
    // Written whole under another name, then linked into place: a reader never sees half a file,
    // and the link fails if another process bound the folder first.
    const tmp = `${bindingFile(dataDir)}.${process.pid}.${Date.now()}.tmp`;
    try {
        fs.writeFileSync(tmp, `${JSON.stringify({ log: identity, boundAt: new Date().toISOString() }, null, 2)}\n`);
        fs.linkSync(tmp, bindingFile(dataDir));
    } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        const now = boundLog(dataDir);
        if (now !== identity) throw otherLog(setting, now ?? "(an unreadable binding)", identity, dataDir);
    } finally {
        fs.rmSync(tmp, { force: true });
    }
}

/**
 * Moves what an earlier version kept in `<data>/records.json` (approvals, answers to idempotency
 * keys) into the database, once: the file is renamed `records.json.imported` afterwards.
 */
export async function importRecordsFile(dataDir: string, store: RunnerStore): Promise<void> {
    const file = path.join(dataDir, "records.json");
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw e;
    }
    const records = JSON.parse(text) as { approvals?: Approval[]; answers?: Record<string, unknown> };
    for (const a of records.approvals ?? []) await store.addApproval(a);
    for (const [scoped, answer] of Object.entries(records.answers ?? {})) {
        // Keys were stored as "<requester>\n<key>"; older unscoped ones name no principal and are left out.
        const at = scoped.indexOf("\n");
        if (at > 0) await store.saveAnswer(scoped.slice(0, at), scoped.slice(at + 1), answer);
    }
    try {
        fs.renameSync(file, `${file}.imported`);
    } catch (e) {
        // Another process starting at the same moment imported it too (adding is idempotent).
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
}
