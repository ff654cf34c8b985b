/**
 * Pipeline benchmarks: a promotion against a bare `pulumi up` of the same change and against the
 * physical floor (`git commit` + `git push` of the same files), a no-op promotion against a bare
 * `pulumi preview`, one-app promotions in stages of 10, 100 and 500 apps, and 100 requests through
 * the service against the same requests one by one, with the service's peak RSS. Every comparison
 * runs side by side in this process; medians are reported.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { PushAs, commitFiles, pushEnv } from "../src/git/engine";
import { PLATFORM_AUTHOR } from "../src/program/ops/push-as";
import { buildBundle, bundleRepoFiles, readBundleDir } from "../src/release/bundle";
import { AutomationEngine } from "../src/runner/adapters/automation";
import type { Actor } from "../src/runner/core";
import { selfContainedEnv } from "../src/runner/adapters/environment";
import { AssembledRunner, createRunner } from "../src/runner/index";
import { VERBS, hashToken } from "../src/runner/rights";
import { makeBundleDir } from "../test/support/fixtures";
import { argocdLoop } from "./argocd";
import { engineFloor } from "./floor";
import { replicasBenchmark } from "./replicas";
import { median, time } from "./stats";

const projectRoot = path.resolve(__dirname, "..", "..");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** Milliseconds as seconds with two decimals. */
export const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** A pipeline of its own for a benchmark: a temporary folder, a bootstrapped platform, its ops repo. */
export interface World {
    dir: string;
    dataDir: string;
    ops: string;
    env: NodeJS.ProcessEnv;
    assembled: AssembledRunner;
    engine: AutomationEngine;
    operatorToken: string;
    /** The runner's standing on the protected ops main, for the set-up commits and the git floor. */
    pushAs: PushAs;
    git(...args: string[]): string;
    pulumi(args: string[], cwd?: string): void;
}

/** Bootstraps a platform with `stages` in a temporary folder. */
export async function world(stages: unknown[]): Promise<World> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-bench-"));
    const dataDir = path.join(dir, "data");
    fs.mkdirSync(dataDir, { recursive: true });
    const operatorToken = `bench-${Date.now().toString(36)}-operator-token`;
    fs.writeFileSync(path.join(dataDir, "runner.json"), JSON.stringify({ tokens: [{ name: "operator", sha256: hashToken(operatorToken), rights: [{ stages: ["*"], verbs: VERBS }], overrideOrder: true }], lockWaitSeconds: 3600 }));
    const env = selfContainedEnv(dataDir);
    const assembled = await createRunner({ projectRoot, dataDir, env, log: () => undefined });
    const engine = new AutomationEngine(assembled.environment, { lockWaitMs: 3_600_000, log: () => undefined });
    await engine.update("platform", async () => ({ gitHost: { kind: "local", path: path.join(dir, "git") }, cluster: { renderDir: path.join(dir, "rendered") }, stages }), { message: "bootstrap" });
    const ops = path.join(dir, "git", "app-ops.git");
    const e = assembled.environment;
    const pushAs = { token: String(await engine.platformSecret("opsPushToken")) };
    return {
        dir,
        dataDir,
        ops,
        env,
        assembled,
        engine,
        operatorToken,
        pushAs,
        git: (...args) => execFileSync("git", ["--git-dir", ops, ...args], { encoding: "utf8" }).trim(),
        pulumi: (args, cwd = e.workDir) => {
            execFileSync(e.toolchain.pulumi, [...args, "--non-interactive"], { cwd, env: { ...env, ...e.envVars }, stdio: "ignore" });
        },
    };
}

/** Publishes many releases as one commit (the scale set-up; publishing itself is benchmarked elsewhere). */
export async function publishMany(w: World, apps: string[], version: string): Promise<void> {
    const writes: Record<string, string> = {};
    for (const app of apps) {
        const dir = makeBundleDir(w.dir, app, { stages: ["itg", "s10", "s100", "s500", "tst", "perf", "prod"] });
        const files = readBundleDir(dir);
        Object.assign(writes, bundleRepoFiles(buildBundle({ app, version, image: `registry.example/${app}:${version}`, source: { commit: COMMIT } }, files), files));
        fs.rmSync(dir, { recursive: true, force: true });
    }
    await commitFiles({ remote: w.ops, branch: "main", message: `Publish ${apps.length} releases (benchmark set-up)`, author: PLATFORM_AUTHOR, pushAs: w.pushAs, compute: async () => ({ writes, deletes: [] }) });
}

const operator: Actor = { name: "bench", teams: [], canOverrideOrder: true, grants: [{ stages: ["*"], verbs: VERBS }] };
const promote = (w: World, app: string, version: string, to: string, extra: Record<string, unknown> = {}) =>
    w.assembled.runner.promote({ app, version, to, requester: "bench", source: { commit: COMMIT }, overrideOrder: true, ...extra }, operator);

async function promotionVsBareAndFloor(runs: number): Promise<void> {
    const w = await world([{ name: "itg" }]);
    try {
        const versions = Array.from({ length: 2 * runs + 2 }, (_, i) => `1.${i}.0`);
        await publishMany(w, ["web"], versions[0]);
        for (const v of versions.slice(1)) await publishMany(w, ["web"], v);
        await promote(w, "web", versions[0], "itg");
        const runner: number[] = [];
        const bare: number[] = [];
        const floor: number[] = [];
        const stackFile = path.join(w.assembled.environment.workDir, "stacks", "Pulumi.itg.yaml");
        const clone = path.join(w.dir, "floor");
        execFileSync("git", ["clone", "-q", w.ops, clone]);
        let next = 1;
        for (let i = 0; i < runs; i++) {
            const before = Number(w.git("rev-list", "--count", "main"));
            runner.push(await time(() => promote(w, "web", versions[next++], "itg")));
            if (Number(w.git("rev-list", "--count", "main")) !== before + 1) throw new Error("a promotion did not make exactly one commit");
            // The same kind of change through the bare CLI: the stack's config with the next version.
            const config = fs.readFileSync(stackFile, "utf8");
            const v = versions[next++];
            fs.writeFileSync(stackFile, config.replace(/\\"version\\":\\"1\.\d+\.0\\"/, `\\"version\\":\\"${v}\\"`).replace(/"version":"1\.\d+\.0"/, `"version":"${v}"`));
            bare.push(await time(() => w.pulumi(["up", "--yes", "--skip-preview", "--stack", "itg"])));
            // The floor: the same three files, committed and pushed with git.
            execFileSync("git", ["-C", clone, "pull", "-q"]);
            for (const f of ["Chart.yaml", "values.yaml", "releases.json"]) {
                const p = path.join(clone, "environments", "itg", f);
                fs.appendFileSync(p, f === "releases.json" ? "" : `# floor ${i}\n`);
            }
            fs.appendFileSync(path.join(clone, "environments", "itg", "releases.json"), " ");
            floor.push(await time(() => {
                execFileSync("git", ["-C", clone, "commit", "-qam", `floor ${i}`]);
                // The runner's token, as the runner's own push carries it (the ops hook requires it).
                execFileSync("git", ["-C", clone, "push", "-q", "origin", "HEAD:main"], { env: { ...process.env, ...pushEnv(w.pushAs) } });
            }));
        }
        const r = median(runner);
        const b = median(bare);
        const f = median(floor);
        console.log(`promotion (runner, request -> ops commit pushed): median ${fmt(r)} over ${runs}`);
        console.log(`bare \`pulumi up\` of the same change on the same stack:  median ${fmt(b)}; runner overhead ${(((r - b) / b) * 100).toFixed(1)}% (goal <= 10%)`);
        console.log(`floor (git commit + push of the same files):           median ${fmt(f)}; promotion / floor ${(r / f).toFixed(1)}x`);

        // Where the time goes: the CLI starting, the engine and program with nothing to do, and git.
        const cliStart = median(await Promise.all([0, 1, 2].map(() => time(() => w.pulumi(["version"])))));
        const previews: number[] = [];
        for (let i = 0; i < 3; i++) previews.push(await time(() => w.pulumi(["preview", "--stack", "itg"])));
        console.log(`profile: CLI start ${fmt(cliStart)}; engine + program + providers with nothing to change (bare preview) ${fmt(median(previews))}; git ${fmt(f)}; the rest of a promotion (diff, commit, state write, runner policy) ${fmt(Math.max(0, r - median(previews) - f))}`);

        // A no-op promotion: the version already runs.
        const current = versions[next - 2];
        await promote(w, "web", current, "itg");
        const history = (await w.assembled.runner.history("itg")).length;
        const commits = w.git("rev-parse", "main");
        const noop: number[] = [];
        for (let i = 0; i < runs; i++) {
            noop.push(
                await time(async () => {
                    const res = await promote(w, "web", current, "itg");
                    if (res.state !== "noop") throw new Error(`expected a no-op, got ${res.state}`);
                }),
            );
        }
        if (w.git("rev-parse", "main") !== commits) throw new Error("a no-op promotion made a commit");
        if ((await w.assembled.runner.history("itg")).length !== history) throw new Error("a no-op promotion recorded a stack update");
        console.log(`no-op promotion: median ${fmt(median(noop))}, 0 commits, 0 stack updates; bare \`pulumi preview\` median ${fmt(median(previews))} (ratio ${(median(noop) / median(previews)).toFixed(2)})`);
    } finally {
        fs.rmSync(w.dir, { recursive: true, force: true });
    }
}

async function scale(runs: number): Promise<void> {
    const sizes = [10, 100, 500];
    const w = await world(sizes.map((n) => ({ name: `s${n}` })));
    try {
        const apps = Array.from({ length: 500 }, (_, i) => `app-${String(i).padStart(3, "0")}`);
        await publishMany(w, apps, "1.0.0");
        await publishMany(w, apps.slice(0, 1), "1.1.0");
        for (let v = 2; v <= runs + 1; v++) await publishMany(w, apps.slice(0, 1), `1.${v}.0`);
        const results: Record<number, number> = {};
        for (const n of sizes) {
            const stage = `s${n}`;
            const t0 = Date.now();
            const releases = Object.fromEntries(apps.slice(0, n).map((app) => [app, { version: "1.0.0", requestId: "bench-setup", requester: "bench", promotedAt: new Date().toISOString(), sourceCommit: COMMIT }]));
            await w.engine.update(stage, async () => ({ stage: { releases, change: { kind: "promote", app: apps[0], version: "1.0.0", requestId: "bench-setup", requester: "bench", sourceCommit: COMMIT } } }), { message: `set up ${n} apps` });
            const setup = Date.now() - t0;
            const times: number[] = [];
            for (let v = 1; v <= runs; v++) {
                const before = Number(w.git("rev-list", "--count", "main"));
                times.push(await time(() => promote(w, apps[0], `1.${v}.0`, stage)));
                const made = Number(w.git("rev-list", "--count", "main")) - before;
                if (made !== 1) throw new Error(`${n} apps: a promotion made ${made} commits`);
            }
            results[n] = median(times);
            console.log(`scale: one-app promotion in a stage of ${n} apps: median ${fmt(results[n])} over ${runs} (set-up of ${n} apps ${fmt(setup)}); commits per promotion 1`);
        }
        console.log(`scale: 500 apps / 10 apps = ${(results[500] / results[10]).toFixed(2)} (goal <= 2)`);
    } finally {
        fs.rmSync(w.dir, { recursive: true, force: true });
    }
}

/** Peak RSS (VmHWM) of a process, in MB. */
function peakRss(pid: number): number {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

async function throughput(): Promise<void> {
    const stages = ["itg", "tst", "perf", "prod"];
    const apps = Array.from({ length: 10 }, (_, i) => `t${i}`);
    // 100 requests: every app through every stage at 1.0.0 and 1.1.0, and five apps at 1.2.0.
    const requests: { app: string; version: string; to: string }[] = [];
    for (const version of ["1.0.0", "1.1.0", "1.2.0"]) {
        for (const to of stages) for (const app of version === "1.2.0" ? apps.slice(0, 5) : apps) requests.push({ app, version, to });
    }
    const stageConfig = stages.map((name) => ({ name, ...(name === "itg" ? {} : { queue: "coalesce" }) }));

    // One by one, in process.
    const serial = await world(stageConfig);
    let serialMs = 0;
    let serialUpdates = 0;
    try {
        for (const v of ["1.0.0", "1.1.0", "1.2.0"]) await publishMany(serial, apps, v);
        serialMs = await time(async () => {
            for (const r of requests) {
                const res = await promote(serial, r.app, r.version, r.to);
                if (res.state === "done") serialUpdates++;
            }
        });
    } finally {
        fs.rmSync(serial.dir, { recursive: true, force: true });
    }

    // Through the service, all at once.
    const w = await world(stageConfig);
    let child: ChildProcess | undefined;
    try {
        for (const v of ["1.0.0", "1.1.0", "1.2.0"]) await publishMany(w, apps, v);
        child = spawn(process.execPath, [path.join(projectRoot, "bin", "stages"), "serve", "--port", "0", "--rate-per-minute", "100000"], { env: w.env, stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
        let url = "";
        while (!url) {
            const m = /"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(out);
            if (m) url = m[1];
            else await new Promise((r) => setTimeout(r, 50));
        }
        const call = async (method: string, route: string, body?: unknown) => {
            const res = await fetch(url + route, { method, headers: { authorization: `Bearer ${w.operatorToken}`, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
            return (await res.json()) as Record<string, unknown>;
        };
        let updates = 0;
        const serviceMs = await time(async () => {
            const ids = await Promise.all(requests.map((r) => call("POST", "/v1/promote", { ...r, requester: "bench", source: { commit: COMMIT }, overrideOrder: true }).then((a) => a.requestId as string | undefined)));
            for (const id of ids) {
                if (!id) continue;
                for (;;) {
                    const rec = await call("GET", `/v1/requests/${id}`);
                    if (["done", "failed", "superseded"].includes(String(rec.state))) {
                        if ((rec.result as { state?: string })?.state === "done") updates++;
                        break;
                    }
                    await new Promise((r) => setTimeout(r, 250));
                }
            }
        });
        const rss = peakRss(child.pid!);
        console.log(`throughput: 100 requests (10 apps, 4 stages) one by one: ${fmt(serialMs)}, ${serialUpdates} updates, ${((100 / serialMs) * 60_000).toFixed(1)} requests/min`);
        console.log(`throughput: the same through the service: ${fmt(serviceMs)}, ${updates} updates executed, ${((100 / serviceMs) * 60_000).toFixed(1)} requests/min; speed-up ${(serialMs / serviceMs).toFixed(2)}x`);
        console.log(`memory: peak RSS of the service process during the run ${rss.toFixed(0)} MB (goal <= 300 MB)`);
    } finally {
        child?.kill("SIGTERM");
        fs.rmSync(w.dir, { recursive: true, force: true });
    }
}

/** Runs the pipeline benchmarks named in `only` (all by default). */
export async function pipelineBenchmarks(only: readonly string[], runs: number): Promise<void> {
    const want = (name: string) => only.length === 0 || only.includes(name);
    if (want("promotion")) await promotionVsBareAndFloor(runs);
    if (want("floor")) await engineFloor(runs);
    if (want("scale")) await scale(Math.max(3, Math.floor(runs / 2)));
    if (want("throughput")) await throughput();
    // Needs the tests set of the toolchain (cluster binaries, Argo CD): only when asked by name.
    if (only.includes("argocd")) await argocdLoop(runs);
    // Opt-in: it makes network namespaces and runs PostgreSQL (root, and the tests' packages).
    if (only.includes("replicas")) await replicasBenchmark(Math.max(24, runs * 12));
}
