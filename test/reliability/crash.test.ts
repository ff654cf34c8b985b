/**
 * Crash and conflict suites. kill -9 of the runner (the CLI, and the service process) at random
 * points of a promotion, CRASH_TRIALS times (CI default 4; `npm run reliability` runs 100). After
 * each kill the next promotion succeeds without hand edits, Pulumi's state holds no pending
 * operation and no dangling reference, the ops repo never holds half a promotion, its ledger equals
 * the stack's outputs, and no commit is duplicated. Then third-party pushes during promotions.
 */
import * as assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { bundleFiles } from "../../src/cli/ci";
import { parseLedger } from "../../src/program/stage/files";
import { repoRoot } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";
import { Pipeline, api, bootstrapPipeline, settle } from "../support/service";

const TRIALS = Number(process.env.CRASH_TRIALS ?? 4);
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const STAGES_BIN = path.join(repoRoot, "bin", "stages");

/** Seeded so that a failing trial can be repeated: CRASH_SEED. */
let seed = Number(process.env.CRASH_SEED ?? Date.now() % 100_000);
function random(): number {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
}

describe(`crash suite: kill -9 at random points, ${TRIALS} trials (seed ${process.env.CRASH_SEED ?? "from the clock"})`, function () {
    let p: Pipeline;
    const recoveries: number[] = [];
    const kills: number[] = [];
    let interrupted = 0;

    before(async function () {
        p = await bootstrapPipeline("gitops-stages-crash-", [{ name: "itg" }, { name: "tst" }]);
        process.stderr.write(`      crash suite seed: ${seed}\n`);
    });

    after(function () {
        if (recoveries.length) {
            const sorted = [...recoveries].sort((a, b) => a - b);
            process.stderr.write(`      crash suite: ${kills.length} kills, ${interrupted} of them during the promotion (delays ${kills.map((k) => (k / 1000).toFixed(1)).join(", ")} s); recovery promotion median ${(sorted[Math.floor(sorted.length / 2)] / 1000).toFixed(1)} s, max ${(sorted[sorted.length - 1] / 1000).toFixed(1)} s\n`);
        }
        p?.dispose();
    });

    function spawnCli(args: string[]): ChildProcess {
        return spawn(process.execPath, [STAGES_BIN, ...args], { env: p.env, stdio: ["ignore", "pipe", "pipe"] });
    }

    function exec(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
        return new Promise((resolve) => {
            const c = spawnCli(args);
            let stdout = "";
            let stderr = "";
            c.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
            c.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
            c.on("exit", (code) => resolve({ code, stdout, stderr }));
        });
    }

    /** The checks after every trial. */
    async function consistent(): Promise<void> {
        const e = (await p.runner()).environment;
        const exported = JSON.parse(execFileSync(e.toolchain.pulumi, ["stack", "export", "--stack", "itg"], { cwd: e.workDir, env: { ...p.env, ...e.envVars }, encoding: "utf8" })) as {
            deployment: { resources?: { urn: string; dependencies?: string[]; parent?: string }[]; pending_operations?: unknown[] };
        };
        assert.deepEqual(exported.deployment.pending_operations ?? [], [], "pending operations left in the state");
        const urns = new Set((exported.deployment.resources ?? []).map((r) => r.urn));
        assert.equal(urns.size, (exported.deployment.resources ?? []).length, "duplicate URNs in the state");
        for (const r of exported.deployment.resources ?? []) {
            for (const d of [...(r.dependencies ?? []), ...(r.parent ? [r.parent] : [])]) assert.ok(urns.has(d), `${r.urn} refers to missing ${d}`);
        }
        // Every commit that touched the stage holds a whole promotion: the three generated files agree.
        for (const c of p.git("log", "--format=%H", "main", "--", "environments/itg/").split("\n").filter(Boolean)) {
            const ledger = Object.keys(parseLedger(p.git("show", `${c}:environments/itg/releases.json`))).sort();
            const chart = [...p.git("show", `${c}:environments/itg/Chart.yaml`).matchAll(/"alias":"([a-z0-9-]+)"/g)].map((m) => m[1]).sort();
            const values = [...p.git("show", `${c}:environments/itg/values.yaml`).matchAll(/^([a-z0-9-]+):/gm)].map((m) => m[1]).sort();
            assert.deepEqual(chart, ledger, `commit ${c}: Chart.yaml and the ledger disagree`);
            assert.deepEqual(values, ledger, `commit ${c}: values.yaml and the ledger disagree`);
        }
        // The ledger in the ops repo equals the stack's outputs.
        const outputs = (await (await p.runner()).runner.status("itg"))[0].apps;
        const ledger = parseLedger(p.git("show", "main:environments/itg/releases.json"));
        assert.deepEqual(Object.fromEntries(Object.entries(ledger).map(([a, r]) => [a, r.version])), Object.fromEntries(Object.entries(outputs).map(([a, r]) => [a, r.version])));
        // No duplicate commit.
        const subjects = p.git("log", "--format=%s", "main").split("\n");
        const dupes = subjects.filter((s, i) => subjects.indexOf(s) !== i);
        assert.deepEqual(dupes, [], "duplicated commits");
        assert.equal(execFileSync("git", ["--git-dir", p.ops, "fsck", "--no-progress", "--no-dangling"], { encoding: "utf8" }).trim(), "", "git fsck found problems (dangling objects of rejected pushes are expected and ignored)");
    }

    for (let trial = 1; trial <= TRIALS; trial++) {
        const viaService = trial % 2 === 0;
        it(`trial ${trial}: kill -9 of the ${viaService ? "service" : "CLI"} during a promotion, then the next promotion succeeds`, async function () {
            const app = `k${trial % 3}`;
            const version = `1.${trial}.0`;
            const key = `crash-${trial}`;
            const bundle = makeBundleDir(p.dir, app, { replicas: trial });
            // A promotion takes about 2 s here: kill anywhere from its start to a little past its end.
            const delay = 100 + Math.floor(random() * 2600);
            kills.push(delay);
            // Every request has an id of its own in the request log (the CLI's and the service's alike).
            if (!viaService) {
                const args = ["promote", `${app}@${version}`, "--to", "itg", "--bundle", bundle, "--image", `registry.example/${app}:${version}`, "--commit", COMMIT, "--idempotency-key", key, "--quiet"];
                const child = spawnCli(args);
                await new Promise((r) => setTimeout(r, delay));
                if (child.exitCode === null) interrupted++;
                child.kill("SIGKILL");
                await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
                const t0 = Date.now();
                const again = await exec(args);
                recoveries.push(Date.now() - t0);
                assert.equal(again.code, 0, again.stderr);
            } else {
                const serve = () => {
                    const c = spawnCli(["serve", "--port", "0", "--replica", "crash"]);
                    let out = "";
                    c.stdout!.on("data", (b: Buffer) => (out += b.toString()));
                    return new Promise<{ c: ChildProcess; url: string }>((resolve, reject) => {
                        const t = setInterval(() => {
                            const m = /"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(out);
                            if (m) {
                                clearInterval(t);
                                resolve({ c, url: m[1] });
                            } else if (c.exitCode !== null) {
                                clearInterval(t);
                                reject(new Error(out));
                            }
                        }, 50);
                    });
                };
                const first = await serve();
                const body = { app, version, to: "itg", requester: "ci", source: { commit: COMMIT }, image: `registry.example/${app}:${version}`, bundle: bundleFiles(bundle), idempotencyKey: key };
                const accepted = await api(first.url, p.operatorToken)("POST", "/v1/promote", body);
                assert.ok([200, 202].includes(accepted.status), JSON.stringify(accepted.body));
                await new Promise((r) => setTimeout(r, delay));
                const rec = await api(first.url, p.operatorToken)("GET", `/v1/requests/${accepted.body.requestId as string}`);
                if (rec.body.state !== "done") interrupted++;
                first.c.kill("SIGKILL");
                await new Promise((r) => (first.c.exitCode !== null ? r(undefined) : first.c.once("exit", r)));
                const t0 = Date.now();
                const second = await serve();
                try {
                    const final = await settle(api(second.url, p.operatorToken), accepted.body.requestId as string);
                    recoveries.push(Date.now() - t0);
                    assert.equal(final.state, "done", JSON.stringify(final.error));
                } finally {
                    second.c.kill("SIGTERM");
                    await new Promise((r) => second.c.once("exit", r));
                }
            }
            assert.equal(parseLedger(p.git("show", "main:environments/itg/releases.json"))[app].version, version);
            // One commit for the promotion, whichever attempt (killed or retried) wrote it.
            const commits = p.git("log", "--format=%s", "main").split("\n").filter((s) => s.startsWith(`Promote ${app} ${version} to itg (request r-`));
            assert.equal(commits.length, 1, commits.join("\n"));
            await consistent();
        });
    }

    it("conflicts: third parties push to the ops repo during promotions; no commit is lost", async function () {
        const clone = path.join(p.dir, "third-party");
        execFileSync("git", ["clone", "-q", p.ops, clone]);
        execFileSync("git", ["-C", clone, "config", "user.email", "someone@example.invalid"]);
        execFileSync("git", ["-C", clone, "config", "user.name", "Someone"]);
        let pushes = 0;
        let stop = false;
        // The third party holds the runner's push token (the hook refuses anyone else on main).
        const git = (...args: string[]) => execFileSync("git", ["-C", clone, ...args], { stdio: "ignore", env: p.opsPushEnv });
        const pusher = (async () => {
            while (!stop) {
                fs.writeFileSync(path.join(clone, "NOTES.md"), `note ${pushes}\n`);
                git("add", "NOTES.md");
                git("commit", "-qm", `third-party note ${pushes}`);
                for (;;) {
                    try {
                        git("pull", "-q", "--rebase");
                        git("push", "-q", "origin", "HEAD:main");
                        pushes++;
                        break;
                    } catch {
                        // Someone (the runner) pushed first: rebase and try again.
                        await new Promise((r) => setTimeout(r, 20));
                    }
                }
                await new Promise((r) => setTimeout(r, 150));
            }
        })();
        const promoted: string[] = [];
        try {
            for (let i = 0; i < 4; i++) {
                const version = `2.${i}.0`;
                const r = await exec(["promote", `c1@${version}`, "--to", "itg", "--bundle", makeBundleDir(p.dir, "c1"), "--image", `registry.example/c1:${version}`, "--commit", COMMIT, "--quiet"]);
                assert.equal(r.code, 0, r.stderr);
                promoted.push(version);
            }
        } finally {
            stop = true;
            await pusher;
        }
        assert.ok(pushes >= 3, `only ${pushes} third-party pushes happened`);
        const subjects = p.git("log", "--format=%s", "main").split("\n");
        for (let n = 0; n < pushes; n++) assert.ok(subjects.includes(`third-party note ${n}`), `third-party note ${n} was lost`);
        for (const v of promoted) assert.equal(subjects.filter((s) => s.startsWith(`Promote c1 ${v} to itg`)).length, 1);
        await consistent();
    });
});
