/**
 * The runner's adapters where they meet other programs: the Sealed Secrets controller's answers
 * (the live controller is in the cluster tier) and the engine going away under an inline program.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";

import { METADATA_VARS, metadataEnv, vcsOf } from "../../src/runner/adapters/metadata";
import { rotated } from "../../src/runner/adapters/controller";
import { checkpointOutputMap, latestUpdateRecord } from "../../src/runner/adapters/file-backend";
import { parseSecretsFile } from "../../src/secrets/store";
import { RunnerError } from "../../src/runner/errors";
import { REMOTES_VAR, reachable } from "../../src/git/engine";
import { parseOpsUrl } from "../../src/runner/adapters/environment";
import { isStale, postgresBackend } from "../../src/runner/adapters/backend-locks";
import { descendants, stopsHard } from "../../src/runner/adapters/engine-process";
import { ConcurrentUpdateError, type PulumiCommand } from "@pulumi/pulumi/automation";
import { LeaseLostError } from "../../src/runner/lease";

describe("the controller's rotate answer", function () {
    it("gains the type the controller leaves out, and parses as the resealed secret", function () {
        // The shape the controller writes: json.Marshal of the object, without apiVersion and kind.
        const answer = JSON.stringify({ metadata: { name: "api-db", namespace: "tst", creationTimestamp: null }, spec: { template: { metadata: { name: "api-db", namespace: "tst", creationTimestamp: null } }, encryptedData: { PASSWORD: "QUJD" } }, status: {} });
        const [s] = parseSecretsFile(rotated(answer), "answer");
        assert.deepEqual(s, { name: "api-db", namespace: "tst", scope: "strict", encryptedData: { PASSWORD: "QUJD" } });
    });

    it("refuses an answer that is not a SealedSecret, or not JSON, naming the controller", function () {
        for (const answer of ['{"kind":"Secret","metadata":{"name":"x"}}', "error decrypting secret", "[1]"]) {
            assert.throws(() => rotated(answer), (e: RunnerError) => e.kind === "refused" && e.reason === "controller" && /Sealed Secrets controller's rotate answer/.test(e.message), answer);
        }
    });
});

describe("an engine that goes away under the inline program", function () {
    const adapter = path.join(__dirname, "../../src/runner/adapters/automation.js");
    /** Runs a Node process that creates the engine adapter, then leaves `rejection` unhandled. */
    const withUnhandled = (rejection: string) =>
        spawnSync(process.execPath, ["-e", `
            const { AutomationEngine } = require(${JSON.stringify(adapter)});
            new AutomationEngine({}, { lockWaitMs: 1, log: (l) => process.stdout.write(l + "\\n") });
            Promise.reject(${rejection});
            setTimeout(() => process.stdout.write("still running\\n"), 50);
        `], { encoding: "utf8" });

    it("does not end the process when the program's calls to the engine fail (gRPC UNAVAILABLE, CANCELLED)", function () {
        for (const e of ['Object.assign(new Error("14 UNAVAILABLE: read ECONNRESET"), { code: 14 })', 'Object.assign(new Error("1 CANCELLED: Cancelled on client"), { code: 1 })']) {
            const r = withUnhandled(e);
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /the program's call to the engine failed after the engine went away: (14 UNAVAILABLE|1 CANCELLED)/);
            assert.match(r.stdout, /still running/);
        }
    });

    it("still ends the process on any other unhandled rejection", function () {
        for (const e of ['new Error("a real bug")', 'Object.assign(new Error("13 INTERNAL: boom"), { code: 13 })', 'Object.assign(new Error("UNAVAILABLE but not gRPC"), { code: "ECONNRESET" })']) {
            const r = withUnhandled(e);
            assert.notEqual(r.status, 0, `${e}: the process kept running`);
            assert.doesNotMatch(r.stdout, /still running/);
        }
    });
});

describe("update metadata", function () {
    it("names the release, the CI run, the merge request and the principal; only what is known", function () {
        const env = metadataEnv({ requestId: "r-1", kind: "promote", requester: "ci-itg", sourceCommit: "a".repeat(40), ciRunUrl: "https://ci.example/run/1", mr: 12 }, "https://github.com/acme/app.git");
        assert.deepEqual(env, {
            PULUMI_CI_SYSTEM: "gitops-stages",
            PULUMI_CI_BUILD_ID: "r-1",
            PULUMI_CI_BUILD_TYPE: "promote",
            PULUMI_GIT_COMMITTER: "ci-itg",
            PULUMI_CI_BUILD_URL: "https://ci.example/run/1",
            PULUMI_PR_NUMBER: "12",
            PULUMI_GIT_HEAD: "a".repeat(40),
            PULUMI_VCS_REPO_KIND: "github.com",
            PULUMI_VCS_REPO_OWNER: "acme",
            PULUMI_VCS_REPO_NAME: "app",
        });
        for (const k of Object.keys(env)) assert.ok((METADATA_VARS as readonly string[]).includes(k), `${k} is not reset between updates`);
        const hold = metadataEnv({ requestId: "r-2", kind: "hold", requester: "operator" });
        assert.deepEqual(Object.keys(hold).filter((k) => hold[k] !== "").sort(), ["PULUMI_CI_BUILD_ID", "PULUMI_CI_BUILD_TYPE", "PULUMI_CI_SYSTEM", "PULUMI_GIT_COMMITTER"]);
        // Every variable is set, empty when unknown, so one the runner's own environment carries never describes the update.
        assert.deepEqual(Object.keys(hold).sort(), [...METADATA_VARS].sort());
    });

    it("reads host, owner and name from the URLs people write, and a local repository's folder name", function () {
        assert.deepEqual(vcsOf("git@gitlab.example:group/sub/app.git"), { kind: "gitlab.example", owner: "group/sub", name: "app" });
        assert.deepEqual(vcsOf("ssh://git@git.example:2222/acme/app"), { kind: "git.example", owner: "acme", name: "app" });
        assert.deepEqual(vcsOf("/srv/git/app.git"), { kind: "local", name: "app" });
        assert.deepEqual(vcsOf("file:///srv/git/app.git/"), { kind: "local", name: "app" });
    });
});

describe("the file backend's files the runner reads", function () {
    let dir: string;
    beforeEach(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-files-"));
    });
    afterEach(function () {
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("the newest update record whatever its compression; a zstd one is left to the CLI", function () {
        const history = path.join(dir, ".pulumi", "history", "gitops-stages", "itg");
        fs.mkdirSync(history, { recursive: true });
        const record = (result: string) => JSON.stringify({ kind: "update", startTime: 1, endTime: 2, message: result, result, resourceChanges: { update: 1 } });
        fs.writeFileSync(path.join(history, "itg-100.history.json"), record("failed"));
        // Compression switched on later: the newer record is gzip, next to the older plain one.
        fs.writeFileSync(path.join(history, "itg-200.history.json.gz"), zlib.gzipSync(record("succeeded")));
        fs.writeFileSync(path.join(history, "itg-150.checkpoint.json"), "{}");
        fs.writeFileSync(path.join(history, "other-900.history.json"), record("failed"));
        assert.equal(latestUpdateRecord(`file://${dir}`, "itg")?.result, "succeeded");
        fs.writeFileSync(path.join(history, "itg-300.history.json.zst"), "(zstd)");
        assert.equal(latestUpdateRecord(`file://${dir}`, "itg"), undefined, "an older record was taken for the newest");
        assert.equal(latestUpdateRecord("s3://bucket", "itg"), undefined);
    });

    it("only secrets are secret: assets and resource references in outputs are not", function () {
        const stacks = path.join(dir, ".pulumi", "stacks", "gitops-stages");
        fs.mkdirSync(stacks, { recursive: true });
        const sig = "4dabf18193072939515e22adb298388d";
        const outputs = {
            token: { [sig]: "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:abc" },
            file: { [sig]: "c44067f5952c0a294b673a41bacd8c17", path: "a.txt" },
            nested: { plain: 1, hidden: { [sig]: "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:def" } },
        };
        fs.writeFileSync(path.join(stacks, "itg.json"), JSON.stringify({ checkpoint: { latest: { resources: [{ type: "pulumi:pulumi:Stack", outputs }] } } }));
        const map = checkpointOutputMap(`file://${dir}`, "itg")!;
        assert.deepEqual(map.token, { value: "[secret]", secret: true });
        assert.equal(map.file.secret, false);
        assert.deepEqual(map.file.value, outputs.file);
        assert.deepEqual(map.nested, { value: { plain: 1, hidden: "[secret]" }, secret: false });
    });
});

describe("where a runner reaches the ops repo ($GITOPS_STAGES_OPS_URL)", function () {
    it("maps the platform's name of a repository to the URL given, exactly, and nothing else", function () {
        const env = { [REMOTES_VAR]: JSON.stringify({ "/srv/git/app-ops.git": "http://runner:pw@git.example:8080/app-ops.git" }) };
        assert.equal(reachable("/srv/git/app-ops.git", env), "http://runner:pw@git.example:8080/app-ops.git");
        assert.equal(reachable("file:///srv/git/app-ops.git", env), "http://runner:pw@git.example:8080/app-ops.git");
        assert.equal(reachable("/srv/git/app-dev.git", env), "/srv/git/app-dev.git");
        assert.equal(reachable("/srv/git/app-ops.git", {}), "/srv/git/app-ops.git");
        assert.equal(reachable("/srv/git/app-ops.git", { [REMOTES_VAR]: "not json" }), "/srv/git/app-ops.git");
    });

    it("takes an http(s) or ssh URL with a host, and names the variable for anything else", function () {
        assert.equal(parseOpsUrl(undefined), undefined);
        assert.equal(parseOpsUrl("https://git.example/app-ops.git"), "https://git.example/app-ops.git");
        for (const bad of ["/srv/git/app-ops.git", "file:///srv/git/app-ops.git", "ftp://x/y"]) {
            assert.throws(() => parseOpsUrl(bad), (e: unknown) => e instanceof RunnerError && e.kind === "invalid" && /^GITOPS_STAGES_OPS_URL: must be/.test(e.message), bad);
        }
    });
});

describe("Pulumi's locks in a shared state backend", function () {
    it("a lock of this machine is stale when its process is gone; of another machine, once older than a lease", function () {
        const now = Date.parse("2026-12-06T12:00:00Z");
        assert.equal(isStale({ pid: process.pid, hostname: os.hostname() }, now, 60_000), false);
        const dead = spawnSync("true").pid!;
        assert.equal(isStale({ pid: dead, hostname: os.hostname() }, now, 60_000), true);
        assert.equal(isStale({ pid: process.pid, hostname: "replica-b", timestamp: "2026-12-06T11:59:30Z" }, now, 60_000), false);
        assert.equal(isStale({ pid: process.pid, hostname: "replica-b", timestamp: "2026-12-06T11:58:30Z" }, now, 60_000), true);
        // Without a readable time, never taken for stale.
        assert.equal(isStale({ pid: 1, hostname: "replica-b" }, now, 60_000), false);
    });

    it("reads the postgres:// backend's table from its URL, and refuses a table name that is not an identifier", function () {
        assert.deepEqual(postgresBackend("postgres://u:p@db:5432/pulumi?sslmode=require"), { connectionString: "postgres://u:p@db:5432/pulumi?sslmode=require&uselibpqcompat=true", table: "pulumi_state", prefix: "pulumi/" });
        assert.deepEqual(postgresBackend("postgres://db/pulumi?table=state_v2"), { connectionString: "postgres://db/pulumi", table: "state_v2", prefix: "pulumi/" });
        assert.equal(postgresBackend("postgres://db")?.prefix, "");
        assert.equal(postgresBackend("file:///tmp/state"), undefined);
        assert.throws(() => postgresBackend("postgres://db/pulumi?table=x;drop"), (e: unknown) => e instanceof RunnerError && e.kind === "invalid" && /^PULUMI_BACKEND_URL: the table parameter must be a plain SQL identifier/.test(e.message));
    });
});

describe("a cancelled engine run that does not stop", function () {
    type Run = (a: string[], c: string, e: Record<string, string>, o?: (t: string) => void, er?: (t: string) => void, s?: AbortSignal) => Promise<unknown>;
    const processState = (pid: number) => {
        try {
            const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
            return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
        } catch {
            return "gone";
        }
    };
    const dead = (pid: number) => ["gone", "Z", "X"].includes(processState(pid));

    it("cancelled for a lost lease, is killed with every process it started a grace after its SIGINT", async function () {
        // A stand-in for the CLI that ignores SIGINT and starts a child, as the CLI starts plugins.
        const command = { command: "/bin/sh", run: () => Promise.reject(new Error("the replaced run was called")) } as unknown as PulumiCommand;
        stopsHard(command, 200);
        const controller = new AbortController();
        let printed = "";
        const run = (command as unknown as { run: (a: string[], c: string, e: Record<string, string>, o?: (t: string) => void, er?: (t: string) => void, s?: AbortSignal) => Promise<unknown> }).run;
        const done = run(["-c", "trap '' INT; sleep 300 & echo $!; wait"], os.tmpdir(), {}, (t) => (printed += t), undefined, controller.signal);
        while (!/\d+\n/.test(printed)) await new Promise((r) => setTimeout(r, 20));
        const child = Number(printed.trim());
        assert.ok(descendants(process.pid).includes(child), "the child is found among the runner's descendants");
        controller.abort(new LeaseLostError("unavailable", "its lease could not be renewed"));
        await assert.rejects(done);
        // Gone, or dead and waiting to be reaped (a container's first process may never reap it).
        for (let i = 0; i < 50 && !dead(child); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(dead(child), `the CLI's child was killed too (state ${processState(child)})`);
    });

    it("cancelled for another reason (Ctrl-C, a shutdown), has four graces to stop by itself, then is killed too", async function () {
        const command = { command: "/bin/sh", run: () => Promise.reject(new Error("the replaced run was called")) } as unknown as PulumiCommand;
        stopsHard(command, 250);
        const controller = new AbortController();
        let printed = "";
        const done = (command as unknown as { run: Run }).run(["-c", "trap 'echo interrupted' INT; while :; do sleep 0.05; done"], os.tmpdir(), {}, (t) => (printed += t), undefined, controller.signal);
        done.catch(() => undefined);
        const shell = () => descendants(process.pid).find((p) => { try { return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes("trap 'echo interrupted'"); } catch { return false; } });
        while (!shell()) await new Promise((r) => setTimeout(r, 20));
        const pid = shell()!;
        controller.abort(new Error("SIGINT received"));
        while (!printed.includes("interrupted")) await new Promise((r) => setTimeout(r, 20));
        // Past one grace it still runs (a lost lease would have been killed by now)...
        await new Promise((r) => setTimeout(r, 500));
        assert.ok(!dead(pid), "a cancellation that is not a lost lease was killed after one grace");
        // ...and after four it is killed, so that a lease lost meanwhile finds it gone.
        await assert.rejects(done);
        for (let i = 0; i < 50 && !dead(pid); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(dead(pid));
    });

    it("keeps the Automation API's errors: a locked stack is a ConcurrentUpdateError", async function () {
        const command = { command: "/bin/sh", run: () => Promise.reject(new Error("the replaced run was called")) } as unknown as PulumiCommand;
        stopsHard(command, 100);
        const run = (command as unknown as { run: Run }).run;
        await assert.rejects(
            run(["-c", "echo 'error: the stack is currently locked by 1 lock(s).' >&2; exit 255"], os.tmpdir(), {}, undefined, undefined, new AbortController().signal),
            (e: unknown) => e instanceof ConcurrentUpdateError,
        );
        const out = await run(["-c", "printf 'caf\\303\\251\\n'"], os.tmpdir(), {}, undefined, undefined, new AbortController().signal);
        assert.equal((out as { stdout: string }).stdout, "café");
    });

    it("without a signal, runs as the Automation API does", async function () {
        let called = false;
        const command = { command: "/bin/sh", run: async () => ((called = true), "original") } as unknown as PulumiCommand;
        stopsHard(command, 200);
        const out = await (command as unknown as { run: (a: string[], c: string, e: Record<string, string>) => Promise<unknown> }).run(["-c", "true"], os.tmpdir(), {});
        assert.equal(out, "original");
        assert.ok(called);
    });
});
