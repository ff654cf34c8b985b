/**
 * The runner on the real engine, real git and the real CLI process: promotions through every
 * stage, policy refusals, approvals, rollback with hold, history, idempotency,
 * concurrent CLI processes, kill -9 recovery and SIGINT cancellation.
 */
import * as assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { AutomationEngine } from "../../src/runner/adapters/automation";
import { checkpointExists, checkpointOutputMap, latestUpdateRecord } from "../../src/runner/adapters/file-backend";
import { cliActor, createRunner } from "../../src/runner/index";
import { Commands, cliOwner } from "../../src/runner/commands";
import { RunnerError } from "../../src/runner/errors";
import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { DEFAULT_USER_VERBS, hashToken } from "../../src/runner/rights";
import type { Runner } from "../../src/runner/runner";
import { parseLedger } from "../../src/program/stage/files";
import { SqliteStore } from "../../src/service/sqlite-store";
import { repoRoot, testToolchain } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";
import { plant } from "../support/planted";

const STAGES_BIN = path.join(repoRoot, "bin", "stages");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
/** A configured token with read-only rights (runner.json stores only its hash). */
const VIEWER_TOKEN = plant(`viewer-${randomBytes(12).toString("hex")}`);
const DEPLOYER_TOKEN = plant(`deployer-${randomBytes(12).toString("hex")}`);

interface CliResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
}

describe("the runner on the real engine", function () {
    let dir: string;
    let dataDir: string;
    let runner: Runner;
    let ops: string;
    let env: NodeJS.ProcessEnv;
    const alice = { name: "alice", teams: ["prod-owners"], canOverrideOrder: true, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };
    const bob = { name: "bob", teams: [], canOverrideOrder: false, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };

    const git = (...args: string[]) => execFileSync("git", ["--git-dir", ops, ...args], { encoding: "utf8" }).trim();
    const commits = () => Number(git("rev-list", "--count", "main"));
    const bundle = (app: string, replicas = 1) => makeBundleDir(dir, app, { replicas });
    const promote = (app: string, version: string, to: string, extra: Record<string, unknown> = {}) =>
        runner.promote({ app, version, to, requester: "ci@example.invalid", source: { commit: COMMIT, ciRunUrl: "https://ci.example/runs/7" }, ...extra }, bob);

    function cli(args: string[], opts: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): { child: ChildProcess; done: Promise<CliResult> } {
        const child = spawn(process.execPath, [STAGES_BIN, ...args], { env: { ...env, ...opts.env }, detached: opts.detached, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
        child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
        const done = new Promise<CliResult>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal, stdout, stderr })));
        return { child, done };
    }

    /** Waits until the Pulumi backend holds a lock on the stack (an update is running); fails at once, with its output, if `p` ends first. */
    async function waitForBackendLock(stack: string, p?: { child: ChildProcess; done: Promise<CliResult> }, timeoutMs = 60_000): Promise<void> {
        const locks = path.join(dataDir, "state", ".pulumi", "locks", "organization", "gitops-stages", stack);
        const deadline = Date.now() + timeoutMs;
        let ended: CliResult | undefined;
        void p?.done.then((r) => (ended = r));
        while (Date.now() < deadline) {
            if (ended) throw new Error(`the CLI ended (exit ${ended.code}) before an update of ${stack} started:\n${ended.stderr}`);
            if (fs.existsSync(locks) && fs.readdirSync(locks).some((f) => f.endsWith(".json"))) return;
            await new Promise((r) => setTimeout(r, 25));
        }
        throw new Error(`no update of ${stack} started within ${timeoutMs} ms`);
    }
    const backendLocks = (stack: string) => {
        const locks = path.join(dataDir, "state", ".pulumi", "locks", "organization", "gitops-stages", stack);
        return fs.existsSync(locks) ? fs.readdirSync(locks).filter((f) => f.endsWith(".json")) : [];
    };

    before(async function () {
        await testToolchain();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-runner-"));
        dataDir = path.join(dir, "data");
        fs.mkdirSync(dataDir, { recursive: true });
        fs.writeFileSync(
            path.join(dataDir, "runner.json"),
            JSON.stringify({
                users: { alice: { teams: ["prod-owners"], overrideOrder: true }, bob: { teams: [] }, carol: { teams: [], rights: [{ stages: ["*"], verbs: ["status"] }] } },
                tokens: [
                    { name: "viewer", sha256: hashToken(VIEWER_TOKEN), rights: [{ stages: ["*"], verbs: ["status", "history"] }] },
                    { name: "deployer", sha256: hashToken(DEPLOYER_TOKEN), rights: [{ stages: ["itg"], verbs: ["promote"] }] },
                ],
                lockWaitSeconds: 120,
            }),
        );
        env = selfContainedEnv(dataDir);
        const assembled = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined });
        runner = assembled.runner;
        const engine = new AutomationEngine(assembled.environment, { lockWaitMs: 60_000, log: () => undefined });
        const up = await engine.update(
            "platform",
            async () => ({
                gitHost: { kind: "local", path: path.join(dir, "git") },
                cluster: { renderDir: path.join(dir, "rendered", "platform") },
                stages: [{ name: "itg" }, { name: "tst" }, { name: "perf" }, { name: "prod", owners: ["prod-owners"], requireApproval: true }],
            }),
            { message: "bootstrap" },
        );
        assert.equal(up?.result, "succeeded");
        ops = path.join(dir, "git", "app-ops.git");
    });

    after(function () {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("publishes with the first promotion and promotes through itg, tst and perf in order", async function () {
        const first = await promote("web", "1.0.0", "itg", { bundle: bundle("web"), image: "registry.example/web:1.0.0", idempotencyKey: "web-1.0.0-itg" });
        assert.equal(first.state, "done");
        assert.ok(first.publishCommit, "the bundle was not published");
        assert.equal(first.opsCommit, git("rev-parse", "main"));
        for (const to of ["tst", "perf"]) {
            const r = await promote("web", "1.0.0", to);
            assert.equal(r.state, "done", `${to}: ${r.message}`);
            assert.equal(git("log", "-1", "--format=%s", "main"), `Promote web 1.0.0 to ${to} (request ${r.requestId})`);
        }
    });

    it("the same idempotency key again gives the same answer without another update", async function () {
        const before = commits();
        const again = await promote("web", "1.0.0", "itg", { bundle: bundle("web"), image: "registry.example/web:1.0.0", idempotencyKey: "web-1.0.0-itg" });
        assert.equal(again.publishCommit !== undefined, true);
        assert.equal(again.opsCommit, (await runner.history("itg"))[0] && again.opsCommit);
        assert.equal(commits(), before);
        const history = await runner.history("itg");
        assert.equal(history.filter((h) => h.change?.requestId === "web-1.0.0-itg").length, 1);
    });

    it("refuses to skip a stage, with the rule in the message", async function () {
        await promote("web", "1.1.0", "itg", { bundle: bundle("web", 2), image: "registry.example/web:1.1.0" });
        await assert.rejects(promote("web", "1.1.0", "perf"), (e: RunnerError) => e.kind === "refused" && e.reason === "stage-order" && /tst runs web 1\.0\.0/.test(e.message));
    });

    it("prod needs an approval of the release by one of its owners; a non-owner cannot approve; a retry with a new request id passes", async function () {
        await assert.rejects(promote("web", "1.0.0", "prod"), (e: RunnerError) => e.reason === "approval" && e.message.includes("stages approve web@1.0.0 --stage prod"));
        await assert.rejects(runner.approve({ app: "web", version: "1.0.0", stage: "prod" }, bob), (e: RunnerError) => e.kind === "forbidden");
        await assert.rejects(runner.approve({ app: "web", version: "v1", stage: "prod" }, alice), (e: RunnerError) => e.kind === "invalid" && /version = "v1"/.test(e.message));
        await runner.approve({ app: "web", version: "1.0.0", stage: "prod" }, alice);
        await assert.rejects(runner.approve({ app: "web", version: "9.9.9", stage: "prod" }, alice), (e: RunnerError) => e.kind === "not-found" && /release web@9\.9\.9 is not published/.test(e.message));
        // No idempotency key: this retry has a request id of its own, and the approval still holds.
        const r = await promote("web", "1.0.0", "prod");
        assert.equal(r.state, "done");
        // Read from the database every runner process of this data folder shares.
        const db = new SqliteStore(path.join(dataDir, "service", "requests.db"));
        const approvals = await db.approvals();
        await db.close();
        assert.deepEqual(approvals.filter((a) => a.app === "web" && a.stage === "prod"), [], "the approval was used up by the promotion it allowed");
    });

    it("rollback promotes the previous release and holds the app; the hold blocks the next promotion", async function () {
        for (const to of ["tst", "perf"]) assert.equal((await promote("web", "1.1.0", to)).state, "done");
        await runner.approve({ app: "web", version: "1.1.0", stage: "prod" }, alice);
        assert.equal((await promote("web", "1.1.0", "prod", { idempotencyKey: "web-1.1.0-prod" })).state, "done");
        const rb = await runner.rollback({ app: "web", stage: "prod", requester: "alice", reason: "error rate up" });
        assert.equal(rb.version, "1.0.0");
        assert.equal(git("log", "-1", "--format=%s", "main"), `Roll back web 1.0.0 to prod (request ${rb.requestId})`);
        const status = await runner.status("prod");
        assert.equal(status[0].apps.web.version, "1.0.0");
        assert.equal(status[0].apps.web.hold?.by, "alice");

        await assert.rejects(promote("web", "1.1.0", "prod", { idempotencyKey: "web-1.1.0-prod-again" }), (e: RunnerError) => e.reason === "hold");
    });

    it("history shows every update of a stage with requester, request, source commit and CI run", async function () {
        const h = await runner.history("prod");
        const kinds = h.filter((e) => e.result === "succeeded").map((e) => `${e.change?.kind} ${e.change?.version}`);
        assert.deepEqual(kinds.slice(0, 3), ["rollback 1.0.0", "promote 1.1.0", "promote 1.0.0"]);
        const promoteEntry = h.find((e) => e.change?.kind === "promote")!;
        assert.equal(promoteEntry.change?.requester, "ci@example.invalid");
        assert.equal(promoteEntry.change?.sourceCommit, COMMIT);
        assert.equal(promoteEntry.change?.ciRunUrl, "https://ci.example/runs/7");
        assert.match(promoteEntry.message, /^Promote web 1\.1\.0 to prod \(request web-1\.1\.0-prod\)/);
        assert.ok((promoteEntry.durationMs ?? -1) >= 0);
        // Each update links to the ops repo commit it wrote: the one whose Request-Id trailer is the update's request.
        for (const e of h.filter((x) => x.result === "succeeded" && x.change)) {
            const written = git("log", "--format=%H", "--fixed-strings", `--grep=Request-Id: ${e.change!.requestId}`, "main", "--", "environments/prod/");
            assert.equal(e.opsCommit, written.split("\n")[0], `${e.change!.kind} ${e.change!.requestId}`);
            assert.equal(e.opsCommitUrl, undefined, "the local git host has no web pages");
        }
    });

    it("history and rollback see past the ten entries `pulumi stack history` shows by default", async function () {
        // tst ran web 1.0.0 then 1.1.0; eleven holds and releases keep 1.1.0 there.
        for (let i = 0; i < 11; i++) assert.equal((await runner.hold({ app: "web", stage: "tst", requester: "alice" }, i % 2 === 0)).state, "done");
        const h = await runner.history("tst");
        assert.ok(h.length > 12, `${h.length} entries`);
        const oldest = h[h.length - 1].change;
        assert.equal(`${oldest?.kind} ${oldest?.app} ${oldest?.version}`, "promote web 1.0.0", "the oldest entry is tst's first update");
        const rb = await runner.rollback({ app: "web", stage: "tst", requester: "alice", reason: "back past the holds" });
        assert.equal(rb.version, "1.0.0", "the previous release, twelve updates back");
        // Back to what the later tests expect in tst: web 1.1.0, not held.
        assert.equal((await runner.hold({ app: "web", stage: "tst", requester: "alice" }, false)).state, "done");
        assert.equal((await promote("web", "1.1.0", "tst")).state, "done");
    });

    it("one ops repo commit of a stage: message, files and patch of that stage only; other stages' commits are not found", async function () {
        const h = await runner.history("prod");
        const entry = h.find((e) => e.change?.kind === "promote" && e.change.version === "1.1.0")!;
        const c = await runner.stageCommit("prod", entry.opsCommit!.slice(0, 12));
        assert.equal(c.commit, entry.opsCommit);
        assert.equal(c.trailers["Request-Id"], entry.change!.requestId);
        assert.match(c.subject, /^Promote web 1\.1\.0 to prod/);
        assert.ok(c.files.some((f) => f.status === "M" && f.path === "environments/prod/releases.json"), JSON.stringify(c.files));
        assert.ok(c.files.every((f) => f.path.startsWith("environments/prod/")));
        assert.match(c.patch, /^\+.*"version": ?"1\.1\.0"/m);
        const itgCommit = git("log", "-1", "--format=%H", "main", "--", "environments/itg/");
        await assert.rejects(runner.stageCommit("prod", itgCommit), (e: RunnerError) => e.kind === "not-found" && /no commit/.test(e.message));
        await assert.rejects(runner.stageCommit("prod", "HEAD~1"), (e: RunnerError) => e.kind === "invalid" && /commit = "HEAD~1": must be a git commit id/.test(e.message));
        const shown = await cli(["history", "prod", "--commit", entry.opsCommit!]).done;
        assert.equal(shown.code, 0, shown.stderr);
        assert.match(shown.stdout, new RegExp(`^commit ${entry.opsCommit}\nAuthor: `));
        assert.match(shown.stdout, /\nM\tenvironments\/prod\/releases\.json\n/);
        const listed = await cli(["history", "prod"]).done;
        assert.match(listed.stdout, new RegExp(`\\b${entry.opsCommit!.slice(0, 12)}\\b`));
    });

    it("what the runner reads from the file backend's files is what the Pulumi CLI says (outputs, secrets, the newest update, existence)", async function () {
        const assembled = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined });
        const e = assembled.environment;
        const pulumi = (...args: string[]) => execFileSync(e.toolchain.pulumi, [...args, "--non-interactive"], { cwd: e.workDir, env: { ...env, ...e.envVars }, encoding: "utf8" });
        for (const stack of ["itg", "platform"]) {
            const map = checkpointOutputMap(e.backendUrl, stack)!;
            // The CLI masks secrets as "[secret]", as the file read does (it never decrypts).
            assert.deepEqual(Object.fromEntries(Object.entries(map).map(([k, o]) => [k, o.value])), JSON.parse(pulumi("stack", "output", "--json", "--stack", stack)), stack);
            const revealed = JSON.parse(pulumi("stack", "output", "--json", "--show-secrets", "--stack", stack)) as Record<string, unknown>;
            for (const [k, o] of Object.entries(map)) assert.equal(o.secret, o.value === "[secret]" && revealed[k] !== "[secret]", `${stack}.${k}: secret flag`);
            assert.ok(Object.values(map).some((o) => o.secret) === (stack === "platform"), `${stack}: secrets where the CLI shows them`);
            const [last] = JSON.parse(pulumi("stack", "history", "--json", "--page-size", "1", "--stack", stack)) as { kind: string; result: string; message: string; resourceChanges?: Record<string, number> }[];
            const record = latestUpdateRecord(e.backendUrl, stack)!;
            assert.deepEqual({ kind: record.kind, result: record.result, message: record.message, resourceChanges: record.resourceChanges }, { kind: last.kind, result: last.result, message: last.message, resourceChanges: last.resourceChanges }, stack);
            assert.equal(checkpointExists(e.backendUrl, stack), true);
        }
        assert.equal(checkpointExists(e.backendUrl, "mr-404"), false);
        assert.equal(checkpointExists("https://api.pulumi.com", "itg"), undefined, "another backend is left to the CLI");
    });

    it("merge-request environments: deploy, reap only the expired ones, destroy", async function () {
        const mrBundle = bundle("web");
        const a = await runner.mrDeploy({ mr: 3, app: "web", bundle: mrBundle, image: "registry.example/web:mr-3", sourceCommit: "abcdef0", requester: "ci", ttlHours: 1 });
        const b = await runner.mrDeploy({ mr: 4, app: "web", bundle: mrBundle, image: "registry.example/web:mr-4", sourceCommit: "abcdef1", requester: "ci", ttlHours: 72 });
        assert.equal(a.namespace, "mr-3");
        assert.ok(Date.parse(a.expiresAt!) < Date.parse(b.expiresAt!));
        const rendered = (n: number) => path.join(dataDir, "rendered", `mr-${n}`);
        assert.ok(fs.readdirSync(rendered(3), { recursive: true }).length > 0, "mr-3 was not rendered");
        // Two hours later, mr-3 has expired and mr-4 has not.
        const later = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined, now: () => new Date(Date.now() + 2 * 3600_000) });
        const reaped = await later.runner.mrReap("reaper");
        assert.deepEqual(reaped.destroyed, ["mr-3"]);
        assert.deepEqual(reaped.kept.map((k) => k.stack), ["mr-4"]);
        const stacks = await new AutomationEngine(later.environment, { lockWaitMs: 10_000, log: () => undefined }).listStacks();
        assert.equal(stacks.includes("mr-3"), false, "the expired stack was not removed");
        const yaml = (n: number) => (fs.existsSync(rendered(n)) ? fs.readdirSync(rendered(n), { recursive: true }).map(String).filter((f) => f.endsWith(".yaml")) : []);
        assert.deepEqual(yaml(3), [], "mr-3's manifests were not removed");
        assert.ok(yaml(4).length > 0);
        const destroyed = await runner.mrDestroy(4, "ci");
        assert.equal(destroyed.state, "done");
        assert.deepEqual(yaml(4), []);
    });

    it("the reaper takes each merge request's stack in the request log, and keeps one redeployed while it waited", async function () {
        const mrBundle = bundle("web");
        await runner.mrDeploy({ mr: 5, app: "web", bundle: mrBundle, image: "registry.example/web:mr-5", sourceCommit: "abcdef2", requester: "ci", ttlHours: 1 });
        const later = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined, now: () => new Date(Date.now() + 2 * 3600_000) });
        const db = new SqliteStore(path.join(dataDir, "service", "requests.db"));
        try {
            // Another process runs a request of mr-5 (a deploy, say): the reaper must wait for it.
            const at = new Date();
            assert.ok((await db.begin({ id: "r-mr5-busy-0001", verb: "mr-deploy", stack: "mr-5", body: {}, principal: "ci" }, "serve:elsewhere:8080", at, new Date(at.getTime() + 600_000)))?.created);
            const log = { store: db, owner: cliOwner(), lockWaitMs: 120_000 };
            const reaping = new Commands(later).execute({ verb: "mr-reap", input: {} }, cliActor(later.settings, "reaper"), { log }) as Promise<{ destroyed: string[]; kept: { stack: string; expiresAt: string }[] }>;
            let settled = false;
            void reaping.then(() => (settled = true), () => (settled = true));
            await new Promise((r) => setTimeout(r, 3000));
            assert.equal(settled, false, "the reaper did not wait for the running request of mr-5");
            const engine = new AutomationEngine(later.environment, { lockWaitMs: 10_000, log: () => undefined });
            assert.ok((await engine.listStacks()).includes("mr-5"), "mr-5 was destroyed while another request held its stack");
            // That request redeployed it for three more days, then ended: the reaper looks again and keeps it.
            await runner.mrDeploy({ mr: 5, app: "web", bundle: mrBundle, image: "registry.example/web:mr-5b", sourceCommit: "abcdef3", requester: "ci", ttlHours: 72 });
            await db.finish("r-mr5-busy-0001", "done", new Date(), { result: {} });
            const reaped = await reaping;
            assert.equal(reaped.destroyed.includes("mr-5"), false, "a redeployed environment was reaped");
            assert.ok(reaped.kept.some((k) => k.stack === "mr-5" && Date.parse(k.expiresAt) > Date.now() + 70 * 3600_000), JSON.stringify(reaped.kept));
            assert.ok((await engine.listStacks()).includes("mr-5"));
            // The reaper's turn on mr-5 is a request of that stack in the log, answered noop.
            const own = (await db.recent(20)).find((r) => r.verb === "mr-destroy" && r.stack === "mr-5");
            assert.equal(own?.state, "done");
            assert.equal((own?.result as { state: string }).state, "noop");
            await runner.mrDestroy(5, "ci");
        } finally {
            await db.close();
        }
    });

    describe("through the stages CLI", function () {
        it("--json answers and exit codes: ok 0, invalid 2, refused 3, not found 4", async function () {
            const ok = await cli(["status", "--json"]).done;
            assert.equal(ok.code, 0, ok.stderr);
            const rows = JSON.parse(ok.stdout) as { stage: string; apps: Record<string, { version: string }> }[];
            assert.deepEqual(rows.map((r) => r.stage), ["itg", "tst", "perf", "prod"]);
            assert.equal(rows[3].apps.web.version, "1.0.0");

            const invalid = await cli(["promote", "web@v1", "--to", "itg", "--commit", "abcdef0", "--json"]).done;
            assert.equal(invalid.code, 2);
            const err = JSON.parse(invalid.stdout).error;
            assert.equal(err.kind, "invalid");
            assert.match(err.message, /version = "v1": must be a semantic version/);

            const refused = await cli(["promote", "web@1.1.0", "--to", "prod", "--commit", "abcdef0", "--json", "--as", "bob"]).done;
            assert.equal(refused.code, 3);
            assert.equal(JSON.parse(refused.stdout).error.reason, "hold");

            const missing = await cli(["history", "staging", "--json"]).done;
            assert.equal(missing.code, 4);
            assert.match(JSON.parse(missing.stdout).error.message, /unknown stage "staging"/);

            const unknown = await cli(["promote", "web@1.1.0", "--to", "tst", "--commit", "abcdef0", "--force"]).done;
            assert.equal(unknown.code, 2);
            assert.match(unknown.stderr, /--force/);
        });

        it("checks the principal's rights for every verb, as the service does: forbidden is exit 3 and writes nothing", async function () {
            const before = commits();
            // carol's runner.json rights hold only status.
            for (const args of [
                ["promote", "web@1.1.0", "--to", "tst", "--commit", COMMIT],
                ["hold", "web", "--stage", "tst"],
                ["rollback", "web", "--stage", "tst"],
                ["history", "tst"],
                ["drift", "--stage", "tst"],
                ["mr", "reap"],
            ]) {
                const r = await cli([...args, "--json", "--as", "carol"]).done;
                assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
                const e = JSON.parse(r.stdout).error;
                assert.equal(e.kind, "forbidden", args.join(" "));
                assert.match(e.message, /^carol is not allowed to /);
            }
            assert.equal((await cli(["status", "--json", "--as", "carol"]).done).code, 0);
            // With GITOPS_STAGES_TOKEN the CLI acts with that token's rights, not the user's.
            const viewer = { GITOPS_STAGES_TOKEN: VIEWER_TOKEN };
            const held = await cli(["hold", "web", "--stage", "tst", "--json"], { env: viewer }).done;
            assert.equal(held.code, 3, held.stderr);
            assert.equal(JSON.parse(held.stdout).error.message, "viewer is not allowed to hold in stage tst");
            assert.equal((await cli(["history", "tst", "--json"], { env: viewer }).done).code, 0);
            const unknown = await cli(["status", "--json"], { env: { GITOPS_STAGES_TOKEN: "not-a-token" } }).done;
            assert.equal(unknown.code, 3);
            assert.equal(JSON.parse(unknown.stdout).error.kind, "unauthorized");
            assert.equal(commits(), before, "a refused verb committed something");
        });

        it("records the principal as the requester; --requester is gone and a requester with a newline is refused", async function () {
            const before = commits();
            const forged = await cli(["hold", "web", "--stage", "tst", "--json", "--as", "ci\nRequest-Id: r-forged"]).done;
            assert.equal(forged.code, 2, forged.stderr);
            assert.match(JSON.parse(forged.stdout).error.message, /^user = "ci\\nRequest-Id: r-forged": must be one line/);
            const both = await cli(["status", "--json", "--as", "alice"], { env: { GITOPS_STAGES_TOKEN: VIEWER_TOKEN } }).done;
            assert.equal(both.code, 2);
            assert.match(JSON.parse(both.stdout).error.message, /--as: cannot be combined with GITOPS_STAGES_TOKEN/);
            const flag = await cli(["hold", "web", "--stage", "tst", "--requester", "alice", "--json"]).done;
            assert.equal(flag.code, 2);
            assert.match(flag.stderr, /--requester/);
            assert.equal(commits(), before, "an invalid requester committed something");
            const held = await cli(["hold", "web", "--stage", "tst", "--reason", "audit", "--json", "--as", "bob"]).done;
            assert.equal(held.code, 0, held.stderr);
            assert.match(git("log", "-1", "--format=%B", "main"), /^Requester: bob$/m);
            assert.equal((await cli(["release", "web", "--stage", "tst", "--json", "--as", "bob"]).done).code, 0, "release");
        });

        it("a push the git host refuses is a conflict (exit 5) carrying the host's reason, and nothing is written", async function () {
            const hook = path.join(ops, "hooks", "pre-receive");
            // The platform's own protection hook is put back afterwards: later tests run against it.
            const protection = fs.readFileSync(hook);
            fs.writeFileSync(hook, "#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\nexit 1\n", { mode: 0o755 });
            try {
                const before = git("rev-parse", "main");
                const r = await cli(["promote", "queue@1.0.0", "--to", "itg", "--bundle", bundle("queue"), "--image", "registry.example/queue:1.0.0", "--commit", COMMIT, "--json"]).done;
                assert.equal(r.code, 5, r.stderr);
                const err = JSON.parse(r.stdout).error;
                assert.equal(err.kind, "conflict");
                assert.match(err.message, /GH006: Protected branch update failed/);
                assert.equal(git("rev-parse", "main"), before);
            } finally {
                fs.writeFileSync(hook, protection);
            }
        });

        it("two CLI processes promoting into the same stage at once both succeed, one after the other", async function () {
            await promote("db", "1.0.0", "itg", { bundle: bundle("db"), image: "registry.example/db:1.0.0" });
            await promote("api", "2.2.0", "itg", { bundle: bundle("api"), image: "registry.example/api:2.2.0" });
            await promote("api", "2.2.0", "tst");
            const before = commits();
            const a = cli(["promote", "db@1.0.0", "--to", "tst", "--commit", COMMIT, "--json"]);
            const b = cli(["promote", "web@1.1.0", "--to", "tst", "--commit", COMMIT, "--json"]);
            const [ra, rb] = await Promise.all([a.done, b.done]);
            assert.equal(ra.code, 0, ra.stderr);
            const web = JSON.parse(rb.stdout);
            // web 1.1.0 already runs in tst: a no-op, answered as such, while db's update runs.
            assert.equal(rb.code, 0, rb.stderr);
            assert.equal(web.state, "noop");
            assert.equal(JSON.parse(ra.stdout).state, "done");
            const c = cli(["promote", "db@1.0.0", "--to", "perf", "--commit", COMMIT, "--json"]);
            const d = cli(["promote", "api@2.2.0", "--to", "perf", "--commit", COMMIT, "--json"]);
            const [rc, rd] = await Promise.all([c.done, d.done]);
            assert.equal(rc.code, 0, rc.stderr);
            assert.equal(rd.code, 0, rd.stderr);
            assert.equal(commits(), before + 3);
            const ledger = parseLedger(git("show", "main:environments/perf/releases.json"));
            assert.equal(ledger.db.version, "1.0.0");
            assert.equal(ledger.api.version, "2.2.0");
        });

        it("a person named like a token never gets that token's answer for an idempotency key", async function () {
            const args = ["promote", "keyed@1.0.0", "--to", "itg", "--commit", COMMIT, "--idempotency-key", "keyed-1", "--json"];
            const byToken = await cli([...args, "--bundle", bundle("keyed"), "--image", "registry.example/keyed:1.0.0"], { env: { GITOPS_STAGES_TOKEN: DEPLOYER_TOKEN } }).done;
            assert.equal(byToken.code, 0, byToken.stderr);
            const first = JSON.parse(byToken.stdout) as { requestId: string; state: string };
            assert.equal(first.state, "done");
            // The same key from the token again: its answer, no second request.
            const replay = JSON.parse((await cli(args, { env: { GITOPS_STAGES_TOKEN: DEPLOYER_TOKEN } }).done).stdout) as { requestId: string };
            assert.equal(replay.requestId, first.requestId);
            // The same key from a person named "deployer": a request of their own (a no-op: the release runs).
            const byPerson = await cli([...args, "--as", "deployer"]).done;
            assert.equal(byPerson.code, 0, byPerson.stderr);
            const own = JSON.parse(byPerson.stdout) as { requestId: string; state: string };
            assert.notEqual(own.requestId, first.requestId, "the person got the token's answer");
            assert.equal(own.state, "noop");
        });

        it("records its changes in the request log, replays a key's success from it, and waits while another process runs the stack", async function () {
            const db = new SqliteStore(path.join(dataDir, "service", "requests.db"));
            try {
                const args = ["promote", "logged@1.0.0", "--to", "itg", "--bundle", bundle("logged"), "--image", "registry.example/logged:1.0.0", "--commit", COMMIT, "--idempotency-key", "logged-1", "--json"];
                const first = await cli(args).done;
                assert.equal(first.code, 0, first.stderr);
                const answer = JSON.parse(first.stdout) as { requestId: string; state: string };
                const record = await db.get(answer.requestId);
                assert.equal(record?.state, "done");
                assert.equal(record?.verb, "promote");
                assert.equal(record?.stack, "itg");
                // A person's requests are theirs in the log, apart from any token's of the same name.
                assert.equal(record?.principal, `user:${os.userInfo().username}`);
                assert.equal((record?.result as { requestId: string }).requestId, answer.requestId);
                const before = commits();
                const again = await cli(args).done;
                assert.equal(again.code, 0, again.stderr);
                assert.equal((JSON.parse(again.stdout) as { requestId: string }).requestId, answer.requestId, "the key's success is answered from the log");
                assert.equal(commits(), before);

                // Another process (a replica sharing the database) runs tst: the CLI waits for it.
                const now = new Date();
                const busy = await db.begin({ id: "r-busy-00000001", verb: "promote", stack: "tst", body: {}, principal: "someone" }, "replica-elsewhere", now, new Date(now.getTime() + 600_000));
                assert.ok(busy?.created);
                const waiting = cli(["promote", "logged@1.0.0", "--to", "tst", "--commit", COMMIT, "--json"]);
                let ended = false;
                void waiting.done.then(() => (ended = true));
                await new Promise((r) => setTimeout(r, 4000));
                assert.equal(ended, false, "the CLI ran while another request held the stack");
                assert.equal(commits(), before);
                await db.finish("r-busy-00000001", "done", new Date(), { result: {} });
                const waited = await waiting.done;
                assert.equal(waited.code, 0, waited.stderr);
                assert.equal(JSON.parse(waited.stdout).state, "done");

                // A CLI process that died while running a request leaves it running: the next one
                // sees its process is gone, records it as failed and goes ahead.
                const gone = spawn(process.execPath, ["-e", ""]);
                await new Promise((r) => gone.once("exit", r));
                const at = new Date();
                await db.begin({ id: "r-dead-00000001", verb: "hold", stack: "tst", body: {}, principal: "someone" }, `cli:${os.hostname()}:${gone.pid}`, at, new Date(at.getTime() + 600_000));
                const after = await cli(["hold", "logged", "--stage", "tst", "--json"]).done;
                assert.equal(after.code, 0, after.stderr);
                assert.match(after.stderr, /request r-dead-00000001 of cli:.* was left running by a process that ended; recorded as failed/);
                const dead = await db.get("r-dead-00000001");
                assert.equal(dead?.state, "failed");
                assert.match((dead?.error as { message: string }).message, /ended before it finished/);
                assert.equal((await cli(["release", "logged", "--stage", "tst", "--json"]).done).code, 0);
            } finally {
                await db.close();
            }
        });

        it("SIGINT during an update cancels it cleanly: exit 130 and no lock left", async function () {
            await promote("cache", "1.0.0", "itg", { bundle: bundle("cache"), image: "registry.example/cache:1.0.0" });
            const p = cli(["promote", "cache@1.0.0", "--to", "tst", "--commit", COMMIT]);
            await waitForBackendLock("tst", p);
            p.child.kill("SIGINT");
            const r = await p.done;
            assert.equal(r.code, 130, r.stderr);
            assert.match(r.stderr, /SIGINT received: cancelling the update in flight/);
            assert.deepEqual(backendLocks("tst"), [], "the stack is still locked");
            // The request log's running request is the stack's one lock: the cancelled one ended.
            const db = new SqliteStore(path.join(dataDir, "service", "requests.db"));
            try {
                assert.equal(await db.runningOn("tst"), undefined, "the request log still holds the stack");
            } finally {
                await db.close();
            }
            // The cancelled promotion left nothing half done: the next one goes through.
            const next = await promote("cache", "1.0.0", "tst");
            assert.ok(["done", "noop"].includes(next.state), next.message);
            assert.equal((await runner.status("tst"))[0].apps.cache.version, "1.0.0");
        });

        it("after kill -9 in the middle of an update, the next promotion recovers the stack and succeeds", async function () {
            const p = cli(["promote", "cache@1.0.0", "--to", "perf", "--commit", COMMIT], { detached: true });
            await waitForBackendLock("perf", p);
            process.kill(-p.child.pid!, "SIGKILL");
            await p.done;
            assert.ok(backendLocks("perf").length > 0, "the killed update should have left its lock");
            const before = commits();
            const r = await promote("cache", "1.0.0", "perf");
            assert.ok(["done", "noop"].includes(r.state), r.message);
            if (r.state === "done") assert.match(r.recovered ?? "", /recovered stack perf: removed the lock of process \d+ \(no longer running\)/);
            assert.deepEqual(backendLocks("perf"), []);
            // The ops repo holds the promotion once: never half of it, never twice.
            const subjects = git("log", "--format=%s", "main").split("\n").filter((s) => s.startsWith("Promote cache 1.0.0 to perf"));
            assert.equal(subjects.length, 1);
            assert.ok(commits() <= before + 1);
            assert.equal(parseLedger(git("show", "main:environments/perf/releases.json")).cache.version, "1.0.0");
        });
    });
});
