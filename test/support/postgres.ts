/**
 * A PostgreSQL server for tests: Debian's binaries (installed by the test set-up), a fresh cluster
 * in a temporary folder, listening on a free loopback port, removed afterwards. As root, the
 * server runs as the `postgres` user (it refuses to run as root).
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";

import { freePort } from "./fixtures";

/** A running server. */
export interface Postgres {
    /** Connection URL of a fresh database. */
    readonly url: string;
    stop(): Promise<void>;
}

function binDir(): string {
    const root = "/usr/lib/postgresql";
    const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a)) : [];
    if (!versions.length) throw new Error("PostgreSQL is not installed (Debian package postgresql): `npm test` installs it; run it, or apt-get install postgresql");
    return path.join(root, versions[0], "bin");
}

/** Where a server listens (default: loopback of this process's namespace). */
export interface PostgresPlace {
    /** The address it listens on. */
    readonly host: string;
    /** The network namespace it runs in (a test host, see hosts.ts). */
    readonly netns?: string;
    /** The network (CIDR) its clients come from, allowed in pg_hba.conf. */
    readonly allow?: string;
    /** More databases to create besides `gitops`. */
    readonly databases?: readonly string[];
}

/** Starts a server and creates database `gitops`. */
export async function startPostgres(place: PostgresPlace = { host: "127.0.0.1" }): Promise<Postgres> {
    const bin = binDir();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-pg-"));
    const asRoot = process.getuid?.() === 0;
    const wrap = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", cmd, ...args]] : [cmd, args]);
    if (asRoot) execFileSync("chown", ["-R", "postgres:postgres", dir]);
    const data = path.join(dir, "data");
    const [initCmd, initArgs] = wrap(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    execFileSync(initCmd, initArgs, { stdio: ["ignore", "ignore", "pipe"] });
    if (place.allow) fs.appendFileSync(path.join(data, "pg_hba.conf"), `host all all ${place.allow} trust\n`);
    const port = place.netns ? 5432 : await freePort();
    const [pgCmd, pgArgs] = wrap(path.join(bin, "postgres"), ["-D", data, "-h", place.host, "-p", String(port), "-k", dir, "-c", "fsync=off", "-c", "max_connections=200"]);
    const [cmd, args]: [string, string[]] = place.netns ? ["ip", ["netns", "exec", place.netns, pgCmd, ...pgArgs]] : [pgCmd, pgArgs];
    const proc: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    proc.stderr!.on("data", (b: Buffer) => (log += b.toString()));
    const admin = `postgres://postgres@${place.host}:${port}/postgres`;
    const deadline = Date.now() + 60_000;
    for (;;) {
        const c = new Client({ connectionString: admin });
        try {
            await c.connect();
            await c.query("CREATE DATABASE gitops");
            for (const db of place.databases ?? []) await c.query(`CREATE DATABASE ${db}`);
            await c.end();
            break;
        } catch (e) {
            await c.end().catch(() => undefined);
            if (Date.now() > deadline || proc.exitCode !== null) {
                proc.kill("SIGKILL");
                throw new Error(`PostgreSQL did not start: ${e instanceof Error ? e.message : String(e)}\n${log}`);
            }
            await new Promise((r) => setTimeout(r, 200));
        }
    }
    return {
        url: `postgres://postgres@${place.host}:${port}/gitops`,
        stop: async () => {
            if (proc.exitCode === null) {
                const exited = new Promise((r) => proc.once("exit", r));
                proc.kill("SIGINT");
                await exited;
            }
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
