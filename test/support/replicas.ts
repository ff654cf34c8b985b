/**
 * Runner replicas on hosts of their own (hosts.ts), sharing only real distributed services:
 * PostgreSQL on host `db` (the request log, and Pulumi's `postgres://` state backend in a second
 * database), the ops repo on host `git` over git's smart HTTP with credentials, and nothing else.
 * Each replica is `stages serve` as people run it, with its own data folder, Pulumi home and
 * hostname; the git host's folder and the bootstrapping machine's data folder are hidden from it.
 * The test process is the CI machine: it bootstraps the platform (`pulumi up` of stack platform
 * against the shared backend), publishes a release, and calls the replicas' API.
 */
import * as assert from "node:assert/strict";
import { ChildProcess, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Client } from "pg";

import { commitFiles } from "../../src/git/engine";
import { PLATFORM_AUTHOR } from "../../src/program/ops/push-as";
import { buildBundle, bundleRepoFiles, readBundleDir } from "../../src/release/bundle";
import { AutomationEngine } from "../../src/runner/adapters/automation";
import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { createRunner } from "../../src/runner/index";
import { hashToken, VERBS } from "../../src/runner/rights";
import { ensureToolchain } from "../../src/toolchain/resolve";
import { repoRoot } from "./engine";
import { makeBundleDir } from "./fixtures";
import { Hosts, createHosts } from "./hosts";
import { plant } from "./planted";
import { Postgres, startPostgres } from "./postgres";
import { api } from "./service";

/** The source commit releases are published with. */
export const SOURCE_COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** A replica: its API and what it printed. */
export interface Replica {
    readonly name: string;
    readonly url: string;
    /** Its JSON log lines so far (every start of it). */
    readonly lines: Record<string, unknown>[];
    proc?: ChildProcess;
}

/** Options of {@link startReplicaSet}. */
export interface ReplicaSetOptions {
    readonly replicas: readonly string[];
    readonly stages: readonly string[];
    /** runner.json leaseSeconds of every replica (short in tests, so that failover takes seconds). */
    readonly leaseSeconds: number;
    /** `stages serve --concurrency`. */
    readonly concurrency?: number;
}

/** The running set. */
export interface ReplicaSet {
    readonly hosts: Hosts;
    readonly dir: string;
    readonly stages: readonly string[];
    readonly replicas: Record<string, Replica>;
    /** The ops repo's folder on the git host (read by the test, the CI machine, to check commits). */
    readonly opsDir: string;
    readonly leaseSeconds: number;
    /** The shared state backend's URL. */
    readonly stateUrl: string;
    /** Credentials the replicas hold, which none may log. */
    readonly secrets: readonly string[];
    /** A client of a replica's API with the operator token (every right, may override the stage order). */
    api(replica: string): ReturnType<typeof api>;
    /** Starts (or starts again) a replica and waits until it is ready. */
    start(replica: string): Promise<void>;
    /** kill -9 of the replica and every process it started (the machine is lost). */
    kill(replica: string): Promise<void>;
    /** SIGTERM, waiting for the exit; resolves with the exit code. */
    stop(replica: string): Promise<number | null>;
    /** Rows of the request log, straight from PostgreSQL. */
    rows(): Promise<{ id: string; verb: string; stack: string; state: string; owner: string | null; attempts: number; error: string | null }[]>;
    /** For each Request-Id trailer in the ops repo's history, how many commits carry it. */
    commitsByRequest(): Map<string, number>;
    /** A stack's whole update history, as the Pulumi CLI reads it from the shared backend (it shows 10 entries without a page size). */
    history(stack: string): { version: number; kind: string; result: string; startTime: string; endTime?: string; environment?: Record<string, string> }[];
    /** Which replicas logged "request started" for a request. */
    startedOn(id: string): string[];
    dispose(): Promise<void>;
}

/** Waits until `check` holds, polling. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 250): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        if (await check()) return;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, everyMs));
    }
}

/** Brings up PostgreSQL, the git host, the platform and the replicas. */
export async function startReplicaSet(opts: ReplicaSetOptions): Promise<ReplicaSet> {
    // The engine is all a replica needs (the benchmark runs without the tests' cluster tier).
    const toolchain = await ensureToolchain({ projectRoot: repoRoot, log: () => undefined });
    const hosts = createHosts(["db", "git", ...opts.replicas]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-scale-"));
    const cleanups: (() => Promise<void> | void)[] = [() => hosts.dispose(), () => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })];
    const replicas: Record<string, Replica> = {};
    const dispose = async () => {
        for (const r of Object.values(replicas)) {
            if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) {
                try {
                    process.kill(-r.proc.pid!, "SIGKILL");
                } catch {
                    // gone
                }
            }
        }
        for (const c of cleanups.reverse()) await c();
    };
    try {
        const subnet = hosts.hosts.db.ip.split(".").slice(0, 3).join(".");
        let pg: Postgres;
        try {
            pg = await startPostgres({ host: hosts.hosts.db.ip, netns: hosts.hosts.db.netns, allow: `${subnet}.0/24`, databases: ["pulumi"] });
        } catch (e) {
            throw new Error(`PostgreSQL on host db: ${e instanceof Error ? e.message : String(e)}`);
        }
        cleanups.splice(1, 0, () => pg.stop());
        const logUrl = pg.url;
        const stateUrl = pg.url.replace(/\/gitops$/, "/pulumi");
        const passphrase = plant(`scale-${randomBytes(12).toString("hex")}`);
        const operatorToken = plant(`op-${randomBytes(16).toString("hex")}`);
        const gitPassword = plant(randomBytes(18).toString("base64url"));

        // The CI machine bootstraps the platform on the shared backend, with the git host's folder.
        const gitDir = path.join(dir, "git");
        const bootData = path.join(dir, "boot");
        fs.mkdirSync(bootData, { recursive: true });
        const bootEnv = { ...selfContainedEnv(bootData), PULUMI_BACKEND_URL: stateUrl, PULUMI_CONFIG_PASSPHRASE: passphrase };
        const boot = await createRunner({ projectRoot: repoRoot, dataDir: bootData, env: bootEnv, log: () => undefined, store: undefined });
        const engine = new AutomationEngine(boot.environment, { lockWaitMs: 120_000, log: () => undefined });
        const up = await engine.update("platform", async () => ({ gitHost: { kind: "local", path: gitDir }, cluster: { renderDir: path.join(dir, "rendered") }, stages: opts.stages.map((name) => ({ name })) }), { message: "bootstrap" });
        assert.equal(up?.result, "succeeded", "the platform's pulumi up on the shared backend");
        await boot.log.close();
        const opsRemote = ((await engine.platformOutputs()).repositories as { ops: string }).ops;
        const opsDir = opsRemote;
        const pushToken = plant(String(await engine.platformSecret("opsPushToken")));
        // Release web 1.0.0, published as CI would.
        const bundle = makeBundleDir(dir, "web", { stages: [...opts.stages] });
        const files = readBundleDir(bundle);
        await commitFiles({
            remote: opsDir,
            branch: "main",
            message: "Publish web 1.0.0",
            author: PLATFORM_AUTHOR,
            pushAs: { token: pushToken },
            compute: async () => ({ writes: bundleRepoFiles(buildBundle({ app: "web", version: "1.0.0", image: "registry.example/web:1.0.0", source: { commit: SOURCE_COMMIT } }, files), files), deletes: [] }),
        });

        // The git host.
        const usersFile = path.join(dir, "git-users.json");
        fs.writeFileSync(usersFile, JSON.stringify({ runner: gitPassword }), { mode: 0o600 });
        let gitOut = "";
        const git = hosts.spawn("git", process.execPath, [path.join(repoRoot, "dist", "test", "support", "git-http.js"), gitDir, hosts.hosts.git.ip, "8080", usersFile], { onOutput: (t) => (gitOut += t) });
        cleanups.splice(1, 0, () => {
            try {
                process.kill(-git.pid!, "SIGKILL");
            } catch {
                // gone
            }
        });
        await until("the git host to listen", () => gitOut.includes("listening") || git.exitCode !== null, 30_000);
        if (git.exitCode !== null) throw new Error(`the git host did not start: ${gitOut}`);
        const opsUrl = `http://runner:${gitPassword}@${hosts.hosts.git.ip}:8080/${path.basename(opsDir)}`;

        const hidden = [gitDir, bootData];
        for (const name of opts.replicas) {
            const data = path.join(dir, name);
            fs.mkdirSync(data, { recursive: true });
            fs.writeFileSync(
                path.join(data, "runner.json"),
                JSON.stringify({ tokens: [{ name: "operator", sha256: hashToken(operatorToken), rights: [{ stages: ["*"], verbs: VERBS }], overrideOrder: true }], lockWaitSeconds: 600, leaseSeconds: opts.leaseSeconds }),
            );
            replicas[name] = { name, url: `http://${hosts.hosts[name].ip}:8080`, lines: [] };
        }
        const envOf = (name: string): NodeJS.ProcessEnv => ({
            ...selfContainedEnv(path.join(dir, name)),
            PULUMI_BACKEND_URL: stateUrl,
            PULUMI_CONFIG_PASSPHRASE: passphrase,
            GITOPS_STAGES_DATABASE: logUrl,
            GITOPS_STAGES_OPS_URL: opsUrl,
        });
        const set: ReplicaSet = {
            hosts,
            dir,
            stages: opts.stages,
            replicas,
            opsDir,
            leaseSeconds: opts.leaseSeconds,
            stateUrl,
            secrets: [gitPassword, passphrase, operatorToken, pushToken],
            api: (name) => api(replicas[name].url, operatorToken),
            async start(name) {
                const r = replicas[name];
                let partial = "";
                const proc = hosts.spawn(name, process.execPath, [path.join(repoRoot, "bin", "stages"), "serve", "--replica", name, "--host", hosts.hosts[name].ip, "--port", "8080", "--concurrency", String(opts.concurrency ?? 4), "--watch-seconds", "0"], {
                    env: envOf(name),
                    hide: hidden,
                    onOutput: (t) => {
                        partial += t;
                        const lines = partial.split("\n");
                        partial = lines.pop() ?? "";
                        for (const l of lines) {
                            try {
                                r.lines.push(JSON.parse(l) as Record<string, unknown>);
                            } catch {
                                r.lines.push({ text: l });
                            }
                        }
                    },
                });
                r.proc = proc;
                await until(`replica ${name} to be ready`, async () => {
                    if (proc.exitCode !== null) throw new Error(`replica ${name} exited ${proc.exitCode}: ${r.lines.slice(-5).map((l) => JSON.stringify(l)).join("\n")}`);
                    try {
                        return (await fetch(`${r.url}/readyz`)).status === 200;
                    } catch {
                        return false;
                    }
                }, 120_000);
            },
            async kill(name) {
                const proc = replicas[name].proc;
                if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
                const gone = new Promise((r) => proc.once("exit", r));
                process.kill(-proc.pid!, "SIGKILL");
                await gone;
            },
            async stop(name) {
                const proc = replicas[name].proc;
                if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc?.exitCode ?? null;
                const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
                proc.kill("SIGTERM");
                return exited;
            },
            async rows() {
                const c = new Client({ connectionString: logUrl });
                await c.connect();
                try {
                    return (await c.query("SELECT id, verb, stack, state, owner, attempts, error FROM requests ORDER BY n")).rows;
                } finally {
                    await c.end();
                }
            },
            commitsByRequest() {
                const out = execFileSync("git", ["--git-dir", opsDir, "log", "--format=%(trailers:key=Request-Id,valueonly)", "main"], { encoding: "utf8" });
                const counts = new Map<string, number>();
                for (const id of out.split("\n").map((l) => l.trim()).filter(Boolean)) counts.set(id, (counts.get(id) ?? 0) + 1);
                return counts;
            },
            history(stack) {
                const e = boot.environment;
                return JSON.parse(execFileSync(toolchain.pulumi, ["stack", "history", "--json", "--stack", stack, "--page-size", "100000"], { cwd: e.workDir, env: { ...bootEnv, ...e.envVars }, encoding: "utf8" }));
            },
            startedOn(id) {
                return Object.values(replicas).filter((r) => r.lines.some((l) => l.msg === "request started" && l.requestId === id)).map((r) => r.name);
            },
            dispose,
        };
        await Promise.all(opts.replicas.map((name) => set.start(name)));
        return set;
    } catch (e) {
        await dispose();
        throw e;
    }
}
