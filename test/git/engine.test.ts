/** The git engine against real bare repositories on disk. */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { startGitHttp } from "../support/fixtures";
import { plant } from "../support/planted";
import { GitError, commitFiles, computeChange, ensureBareRepository, listFiles, observedDigest, readFiles, redact } from "../../src/git/engine";

const author = { name: "gitops-stages test", email: "test@gitops-stages.invalid" };

function git(cwd: string, ...args: string[]): string {
    return execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" } }).trim();
}

/** A third party's commit made through an ordinary clone. */
function thirdPartyPush(remote: string, file: string, content: string): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-third-"));
    try {
        git(dir, "clone", "-q", remote, ".");
        fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
        fs.writeFileSync(path.join(dir, file), content);
        git(dir, "add", file);
        git(dir, "-c", "user.name=Someone Else", "-c", "user.email=else@example.invalid", "commit", "-q", "-m", `third party: ${file}`);
        git(dir, "push", "-q", "origin", "HEAD:main");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("git engine (real repositories)", function () {
    let dir: string;
    let remote: string;

    beforeEach(async function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-gitengine-"));
        remote = path.join(dir, "ops.git");
        await ensureBareRepository(remote, "main");
    });
    afterEach(function () {
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const own = (files: Record<string, string>, scope = ["environments/itg/"], keep = ["environments/itg/secrets/"]) =>
        (head: Parameters<typeof computeChange>[0]) => computeChange(head, "own", files, scope, keep);

    it("creates the branch with exactly one commit holding every file", async function () {
        const r = await commitFiles({
            remote,
            branch: "main",
            message: "skeleton\n\nRequest-Id: r-1\n",
            author,
            compute: own({ "environments/itg/values.yaml": "a: 1\n", "environments/itg/Chart.yaml": "name: itg\n" }),
        });
        assert.ok(r.commit);
        assert.equal(r.parent, undefined);
        assert.equal(git(remote, "rev-list", "--count", "main"), "1");
        assert.equal(git(remote, "show", "main:environments/itg/values.yaml"), "a: 1");
        assert.equal(git(remote, "log", "-1", "--format=%an <%ae>%n%B", "main"), "gitops-stages test <test@gitops-stages.invalid>\nskeleton\n\nRequest-Id: r-1");
        assert.deepEqual(r.changed, ["environments/itg/Chart.yaml", "environments/itg/values.yaml"]);
    });

    it("makes no commit when the files are already there", async function () {
        const files = { "environments/itg/values.yaml": "a: 1\n" };
        await commitFiles({ remote, branch: "main", message: "one", author, compute: own(files) });
        const again = await commitFiles({ remote, branch: "main", message: "two", author, compute: own(files) });
        assert.equal(again.commit, undefined);
        assert.equal(git(remote, "rev-list", "--count", "main"), "1");
    });

    it("in own mode removes other files under its scope but never under keep or outside the scope", async function () {
        thirdPartyPushInit(remote);
        thirdPartyPush(remote, "environments/itg/secrets/app.yaml", "sealed\n");
        thirdPartyPush(remote, "environments/itg/old.yaml", "stale\n");
        thirdPartyPush(remote, "environments/tst/values.yaml", "tst\n");
        await commitFiles({ remote, branch: "main", message: "own", author, compute: own({ "environments/itg/values.yaml": "new\n" }) });
        assert.deepEqual((await listFiles(remote, "main")).sort(), [
            "README.md",
            "environments/itg/secrets/app.yaml",
            "environments/itg/values.yaml",
            "environments/tst/values.yaml",
        ]);
    });

    it("in seed mode writes absent files only and never overwrites", async function () {
        thirdPartyPushInit(remote);
        const seed = (files: Record<string, string>) => (head: Parameters<typeof computeChange>[0]) => computeChange(head, "seed", files, [], []);
        const r = await commitFiles({ remote, branch: "main", message: "seed", author, compute: seed({ "README.md": "ours\n", "CODEOWNERS": "* @x\n" }) });
        assert.deepEqual(r.changed, ["CODEOWNERS"]);
        assert.equal((await readFiles(remote, "main", ["README.md"])).files["README.md"], "# ops\n");
    });

    it("recomputes on the new head when someone else pushes between our read and our push; both commits survive", async function () {
        thirdPartyPushInit(remote);
        let calls = 0;
        const retries: number[] = [];
        const r = await commitFiles({
            remote,
            branch: "main",
            message: "ours",
            author,
            onRetry: (attempt) => retries.push(attempt),
            compute: async (head) => {
                calls++;
                if (calls === 1) thirdPartyPush(remote, "environments/tst/values.yaml", "theirs\n");
                return computeChange(head, "own", { "environments/itg/values.yaml": "ours\n" }, ["environments/itg/"], []);
            },
        });
        assert.equal(r.attempts, 2);
        assert.deepEqual(retries, [1]);
        assert.equal(calls, 2);
        const log = git(remote, "log", "--format=%s", "main").split("\n");
        assert.deepEqual(log, ["ours", "third party: environments/tst/values.yaml", "third party: README.md"]);
        assert.equal(git(remote, "show", "main:environments/tst/values.yaml"), "theirs");
        assert.equal(git(remote, "show", "main:environments/itg/values.yaml"), "ours");
    });

    it("stores many files in one attempt, and gives up on a branch that never stops moving only when its time is up, naming attempts and time", async function () {
        thirdPartyPushInit(remote);
        const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`environments/itg/f${String(i).padStart(2, "0")}.yaml`, `n: ${i}\n`]));
        const first = await commitFiles({ remote, branch: "main", message: "many", author, compute: own(many) });
        assert.equal(first.changed.length, 40);
        for (const [file, content] of Object.entries(many)) assert.equal(git(remote, "show", `main:${file}`) + "\n", content);
        // Every attempt loses the race: a third party pushes between our read and our push.
        let n = 0;
        await assert.rejects(
            commitFiles({
                remote,
                branch: "main",
                message: "never lands",
                author,
                retryForMs: 1500,
                compute: async (head) => {
                    thirdPartyPush(remote, "NOTES.md", `note ${n++}\n`);
                    return computeChange(head, "own", { "environments/itg/values.yaml": "ours\n" }, ["environments/itg/"], []);
                },
            }),
            (e: GitError) => /the branch kept moving; gave up after (\d+) attempts in \d+\.\d s/.test(e.message),
        );
        // It kept trying for its time (not a fixed count of quick retries), then stopped.
        assert.ok(n >= 3, `only ${n} attempts`);
        assert.equal(git(remote, "log", "--format=%s", "main").split("\n").filter((s) => s === "never lands").length, 0);
        await assert.rejects(
            commitFiles({ remote, branch: "main", message: "capped", author, maxAttempts: 2, compute: async (head) => (thirdPartyPush(remote, "NOTES.md", `x ${n++}\n`), computeChange(head, "own", { "environments/itg/values.yaml": "x\n" }, ["environments/itg/"], [])) }),
            /gave up after 2 attempts/,
        );
    });

    it("reports a hand edit as drift and an untouched branch as in sync", async function () {
        const files = { "environments/itg/values.yaml": "a: 1\n" };
        await commitFiles({ remote, branch: "main", message: "one", author, compute: own(files) });
        const clean = await observedDigest(remote, "main", "own", files, ["environments/itg/"], []);
        assert.deepEqual(clean.differing, []);
        thirdPartyPush(remote, "environments/itg/values.yaml", "a: 2 # edited by hand\n");
        const drifted = await observedDigest(remote, "main", "own", files, ["environments/itg/"], []);
        assert.deepEqual(drifted.differing, ["environments/itg/values.yaml"]);
        assert.notEqual(drifted.digest, clean.digest);
    });

    it("fails with the host's reason when a hook refuses the push, and leaves the branch as it was", async function () {
        thirdPartyPushInit(remote);
        const hook = path.join(remote, "hooks", "pre-receive");
        fs.writeFileSync(hook, "#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\nexit 1\n", { mode: 0o755 });
        const before = git(remote, "rev-parse", "main");
        await assert.rejects(
            commitFiles({ remote, branch: "main", message: "x", author, compute: own({ "environments/itg/a": "1" }) }),
            (e: unknown) => e instanceof GitError && /GH006: Protected branch update failed/.test(e.message),
        );
        assert.equal(git(remote, "rev-parse", "main"), before);
    });

    it("never shows credentials of a remote URL in errors", async function () {
        await assert.rejects(
            commitFiles({
                remote: "http://x-access-token:ghs_PLANTEDSECRET123@127.0.0.1:9/acme/ops.git",
                branch: "main",
                message: "x",
                author,
                compute: async () => ({ writes: { a: "1" }, deletes: [] }),
            }),
            (e: unknown) => e instanceof GitError && !e.message.includes("ghs_PLANTEDSECRET123") && !JSON.stringify(e).includes("ghs_PLANTEDSECRET123"),
        );
        assert.equal(redact("fatal: https://u:p@host/x.git and ssh://git@h/y"), "fatal: https://***@host/x.git and ssh://***@h/y");
    });
});

/** Gives an empty bare repository a first commit (README.md) through an ordinary clone. */
function thirdPartyPushInit(remote: string): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-init-"));
    try {
        git(dir, "init", "-q", "-b", "main");
        fs.writeFileSync(path.join(dir, "README.md"), "# ops\n");
        git(dir, "add", "README.md");
        git(dir, "-c", "user.name=Someone Else", "-c", "user.email=else@example.invalid", "commit", "-q", "-m", "third party: README.md");
        git(dir, "push", "-q", remote, "HEAD:main");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("credentials of remote URLs", function () {
    it("never reach git's command line, and the server still gets them (as a header)", async function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-argv-"));
        const secret = plant(`pw-${Math.random().toString(36).slice(2)}x${Date.now().toString(36)}`);
        const server = await startGitHttp(dir, () => ({ username: "reader", password: secret }));
        const savedPath = process.env.PATH;
        try {
            const repo = path.join(dir, "r.git");
            execFileSync("git", ["init", "-q", "--bare", "-b", "main", repo]);
            const work = path.join(dir, "work");
            execFileSync("git", ["init", "-q", "-b", "main", work]);
            fs.writeFileSync(path.join(work, "a.txt"), "served\n");
            execFileSync("git", ["-C", work, "add", "a.txt"]);
            execFileSync("git", ["-C", work, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "a"]);
            execFileSync("git", ["-C", work, "push", "-q", repo, "main"]);
            // A git on PATH that writes down every command line it is given, then runs the real one.
            const real = execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim();
            const shim = path.join(dir, "bin");
            fs.mkdirSync(shim);
            const argvLog = path.join(dir, "argv.log");
            fs.writeFileSync(path.join(shim, "git"), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
            process.env.PATH = `${shim}:${savedPath}`;
            const remote = server.url("r.git").replace("http://", `http://reader:${encodeURIComponent(secret)}@`);
            const read = await readFiles(remote, "main", ["a.txt"]);
            assert.equal(read.files["a.txt"], "served\n");
            const logged = fs.readFileSync(argvLog, "utf8");
            assert.ok(logged.includes(server.url("r.git")), `git was not run against the server:\n${logged}`);
            assert.ok(!logged.includes(secret) && !logged.includes("reader:"), "the credentials were on git's command line");
            assert.ok(server.requests.some((r) => r.authorized), "the server never got the credentials");
            assert.ok(!server.requests.some((r) => !r.authorized && r.path.endsWith("/git-upload-pack")), "a fetch went out without them");
        } finally {
            process.env.PATH = savedPath;
            await server.stop();
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
