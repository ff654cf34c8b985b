/**
 * The protection of main as the runner meets it: the local host's pre-receive hook (the rules GitHub
 * enforces, refused in GitHub's words), the runner's path through GitHub's required `validate`
 * status (a fake GitHub API on loopback and a bare repository whose hook enforces the status as
 * GitHub does), and the `validate` check itself, as the ops repo's workflow runs it.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { GitError, checkBranch, commitFiles, ensureBareRepository, protectBareRepository, pushEnv, pushTokenDigest } from "../../src/git/engine";
import { opsValidateScript } from "../../src/program/ops/workflows";
import { validateOpsChange } from "../../src/program/ops/validate";
import { renderSecretsFile } from "../../src/secrets/store";
import { GitDaemon, startGitDaemon } from "../support/fixtures";

const author = { name: "gitops-stages test", email: "test@gitops-stages.invalid" };
const TOKEN = "runner-push-token-0123456789abcdefghijklmnopqrstuv";
const SEALED = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: web\nspec:\n  encryptedData:\n    password: AgB4\n";

function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string } {
    const r = spawnSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1", ...env } });
    return { status: r.status ?? 1, stdout: r.stdout.trim(), stderr: r.stderr };
}

function ok(cwd: string, ...args: string[]): string {
    const r = git(cwd, args);
    assert.equal(r.status, 0, `git ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
}

/** The lines a refused push printed from the host (what a user sees as "remote: error: ..."). */
function remoteLines(stderr: string): string[] {
    return stderr.split("\n").filter((l) => l.startsWith("remote: error"));
}

describe("protection of main on the local git host (pre-receive hook)", function () {
    let dir: string;
    let ops: string;
    let dev: string;
    let work: string;
    const asRunner = pushEnv({ token: TOKEN })!;
    const refusals: string[] = [];

    const commitIn = (message: string, file = "environments/itg/values.yaml") => {
        fs.mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
        fs.appendFileSync(path.join(work, file), `${message}\n`);
        ok(work, "add", file);
        ok(work, "-c", "user.name=Someone", "-c", "user.email=s@example.invalid", "commit", "-qm", message);
    };
    const refused = (r: { status: number; stderr: string }, rule: string) => {
        assert.notEqual(r.status, 0, "the push was accepted");
        const lines = remoteLines(r.stderr);
        assert.ok(lines.some((l) => l.includes("GH006: Protected branch update failed for refs/heads/main.")), r.stderr);
        assert.ok(lines.some((l) => l.includes(`(rule: ${rule}`)), `no line names rule ${rule}:\n${r.stderr}`);
        refusals.push(...lines);
    };

    before(async function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-protect-"));
        ops = path.join(dir, "app-ops.git");
        dev = path.join(dir, "app-dev.git");
        await ensureBareRepository(ops, "main");
        await ensureBareRepository(dev, "main");
        await protectBareRepository(ops, { role: "ops", runnerTokenSha256: pushTokenDigest(TOKEN) });
        await protectBareRepository(dev, { role: "dev" });
        // The first commit, as the platform's skeleton makes it: by the runner's token.
        await commitFiles({ remote: ops, branch: "main", message: "skeleton", author, pushAs: { token: TOKEN }, compute: async () => ({ writes: { "README.md": "ops\n" }, deletes: [] }) });
        work = path.join(dir, "work");
        ok(dir, "clone", "-q", ops, work);
    });
    after(function () {
        // The refusals as a user sees them, for the record.
        process.stdout.write(`      refusals printed by the local host:\n${[...new Set(refusals)].map((l) => `        ${l}`).join("\n")}\n`);
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("refuses a push to ops main by anyone but the runner, naming the rule, and keeps main as it was", function () {
        const before = ok(ops, "rev-parse", "main");
        commitIn("an operator's direct edit");
        refused(git(work, ["push", "-q", "origin", "HEAD:main"]), "pull_request");
        // A wrong token is nobody's token.
        refused(git(work, ["push", "-q", "origin", "HEAD:main"], pushEnv({ token: "not-the-runner" })), "pull_request");
        assert.equal(ok(ops, "rev-parse", "main"), before);
        // Other branches are not protected: the same commit goes to a topic branch (a pull request's head).
        assert.equal(git(work, ["push", "-q", "origin", "HEAD:refs/heads/topic"]).status, 0);
        ok(work, "reset", "-q", "--hard", "origin/main");
    });

    it("lets the runner's commits through, over a path and over git:// alike, and loses none", async function () {
        const first = await commitFiles({ remote: ops, branch: "main", message: "promote one", author, pushAs: { token: TOKEN }, compute: async () => ({ writes: { "environments/itg/values.yaml": "one\n" }, deletes: [] }) });
        assert.equal(ok(ops, "rev-parse", "main"), first.commit);
        let daemon: GitDaemon | undefined;
        try {
            daemon = await startGitDaemon(dir);
            // The token travels as a push option, which reaches the hook over the network as well.
            const second = await commitFiles({ remote: daemon.url("app-ops.git"), branch: "main", message: "promote two", author, pushAs: { token: TOKEN }, compute: async () => ({ writes: { "environments/tst/values.yaml": "two\n" }, deletes: [] }) });
            assert.equal(ok(ops, "rev-parse", "main"), second.commit);
            await assert.rejects(
                commitFiles({ remote: daemon.url("app-ops.git"), branch: "main", message: "no token", author, maxAttempts: 1, compute: async () => ({ writes: { "environments/tst/values.yaml": "three\n" }, deletes: [] }) }),
                (e: unknown) => e instanceof GitError && /rule: pull_request/.test(e.message),
            );
        } finally {
            await daemon?.stop();
        }
        assert.deepEqual(ok(ops, "log", "--format=%s", "main").split("\n"), ["promote two", "promote one", "skeleton"]);
        // The token never lands in the repository: only its digest is in the config.
        assert.doesNotMatch(fs.readFileSync(path.join(ops, "config"), "utf8"), new RegExp(TOKEN));
    });

    it("refuses a force push, a merge commit and the deletion of main, even from the runner", function () {
        ok(work, "fetch", "-q", "origin");
        ok(work, "reset", "-q", "--hard", "origin/main");
        const before = ok(ops, "rev-parse", "main");
        // Force push: main rewritten without its last commit.
        ok(work, "reset", "-q", "--hard", "HEAD~1");
        commitIn("rewritten history");
        refused(git(work, ["push", "-q", "--force", "origin", "HEAD:main"], asRunner), "non_fast_forward");
        // Merge commit: two lines of history joined on top of main.
        ok(work, "reset", "-q", "--hard", "origin/main");
        ok(work, "checkout", "-q", "-b", "side", "HEAD~1");
        commitIn("side line", "environments/perf/values.yaml");
        ok(work, "checkout", "-q", "-B", "merged", "origin/main");
        ok(work, "-c", "user.name=Someone", "-c", "user.email=s@example.invalid", "merge", "-q", "--no-ff", "-m", "merge side", "side");
        refused(git(work, ["push", "-q", "origin", "HEAD:main"], asRunner), "required_linear_history");
        // Deletion.
        refused(git(work, ["push", "-q", "origin", ":main"], asRunner), "deletion");
        assert.equal(ok(ops, "rev-parse", "main"), before, "main moved");
        assert.equal(ok(ops, "rev-list", "--count", "main"), "3", "a commit was lost");
    });

    it("refuses to create ops main from a history with a merge commit", async function () {
        const fresh = path.join(dir, "fresh-ops.git");
        await ensureBareRepository(fresh, "main");
        await protectBareRepository(fresh, { role: "ops", runnerTokenSha256: pushTokenDigest(TOKEN) });
        ok(work, "fetch", "-q", "origin");
        ok(work, "checkout", "-q", "-B", "merged", "origin/main");
        ok(work, "checkout", "-q", "-b", "side2", "HEAD~1");
        commitIn("side line 2", "environments/perf/values.yaml");
        ok(work, "checkout", "-q", "merged");
        ok(work, "-c", "user.name=Someone", "-c", "user.email=s@example.invalid", "merge", "-q", "--no-ff", "-m", "merge side2", "side2");
        refused(git(work, ["push", "-q", fresh, "HEAD:main"], asRunner), "required_linear_history");
        assert.notEqual(git(fresh, ["rev-parse", "--verify", "-q", "refs/heads/main"]).status, 0, "main was created");
    });

    it("on dev: anyone pushes, but nobody force-pushes or deletes main", function () {
        const clone = path.join(dir, "dev-work");
        fs.mkdirSync(clone);
        ok(clone, "init", "-q", "-b", "main");
        fs.writeFileSync(path.join(clone, "app.txt"), "v1\n");
        ok(clone, "add", ".");
        ok(clone, "-c", "user.name=Dev", "-c", "user.email=d@example.invalid", "commit", "-qm", "v1");
        assert.equal(git(clone, ["push", "-q", dev, "HEAD:main"]).status, 0);
        ok(clone, "-c", "user.name=Dev", "-c", "user.email=d@example.invalid", "commit", "-q", "--amend", "-m", "v1 amended");
        refused(git(clone, ["push", "-q", "--force", dev, "HEAD:main"]), "non_fast_forward");
        refused(git(clone, ["push", "-q", dev, ":main"]), "deletion");
        assert.equal(ok(dev, "log", "-1", "--format=%s", "main"), "v1");
    });
});

/** A fake GitHub API: records commit statuses, and can be told to refuse them. */
interface FakeGithub {
    readonly api: string;
    readonly statuses: { sha: string; body: { state: string; context: string }; authorization?: string }[];
    refuseWith?: number;
    close(): Promise<void>;
}

async function fakeGithub(record: (sha: string, context: string) => void, has: (sha: string) => boolean): Promise<FakeGithub> {
    const fake: { -readonly [K in keyof FakeGithub]?: FakeGithub[K] } & { statuses: FakeGithub["statuses"] } = { statuses: [] };
    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (b: Buffer) => (body += b.toString()));
        req.on("end", () => {
            const m = /^\/repos\/acme\/app-ops\/statuses\/([0-9a-f]{40})$/.exec(req.url ?? "");
            if (req.method !== "POST" || !m) {
                res.writeHead(404).end('{"message":"Not Found"}');
                return;
            }
            if (fake.refuseWith) {
                // Echoes the credential, so that a client quoting the answer would leak it.
                res.writeHead(fake.refuseWith, { "content-type": "application/json" }).end(JSON.stringify({ message: "Resource not accessible by integration", seen: req.headers.authorization }));
                return;
            }
            // As GitHub: a status only for a commit the repository has.
            if (!has(m[1])) {
                res.writeHead(422, { "content-type": "application/json" }).end('{"message":"No commit found for SHA"}');
                return;
            }
            const parsed = JSON.parse(body) as { state: string; context: string };
            fake.statuses.push({ sha: m[1], body: parsed, authorization: req.headers.authorization });
            if (parsed.state === "success") record(m[1], parsed.context);
            res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ state: parsed.state, context: parsed.context }));
        });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    fake.api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    fake.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
    return fake as FakeGithub;
}

describe("the runner's commits and GitHub's required validate status (fake API on loopback)", function () {
    let dir: string;
    let ops: string;
    let gh: FakeGithub;
    const GH_TOKEN = "ghs_faketoken0123456789";
    const checks = () => ({ api: gh.api, repository: "acme/app-ops", token: GH_TOKEN });
    const write = (files: Record<string, string>, deletes: string[] = []) => async () => ({ writes: files, deletes });

    before(async function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-ghchecks-"));
        ops = path.join(dir, "app-ops.git");
        await ensureBareRepository(ops, "main");
        const passed = path.join(dir, "passed");
        fs.mkdirSync(passed);
        // GitHub's rule, as this repository's host enforces it: main takes a commit only once the
        // required status `validate` passed on it (other branches take anything).
        fs.writeFileSync(
            path.join(ops, "hooks", "pre-receive"),
            [
                "#!/bin/sh",
                "status=0",
                "while read -r old new ref; do",
                "  [ \"$ref\" = refs/heads/main ] || continue",
                "  [ \"$new\" = 0000000000000000000000000000000000000000 ] && continue",
                // Protection applies to a branch that exists (the platform protects main after its first commit).
                "  [ \"$old\" = 0000000000000000000000000000000000000000 ] && continue",
                `  if [ ! -f "${passed}/$new.validate" ]; then echo 'error: GH006: Protected branch update failed for refs/heads/main.' >&2; echo 'error: Required status check "validate" is expected.' >&2; status=1; fi`,
                "done",
                "exit $status",
                "",
            ].join("\n"),
            { mode: 0o755 },
        );
        gh = await fakeGithub(
            (sha, context) => fs.writeFileSync(path.join(passed, `${sha}.${context}`), ""),
            (sha) => git(ops, ["cat-file", "-e", `${sha}^{commit}`]).status === 0,
        );
        await commitFiles({ remote: ops, branch: "main", message: "skeleton", author, pushAs: { checks: checks() }, compute: write({ "README.md": "ops\n", "releases/web/1.0.0/bundle.json": "{}\n" }) });
    });
    after(async function () {
        await gh?.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const sideBranches = () => ok(ops, "for-each-ref", "--format=%(refname)", "refs/heads/gitops-stages/");

    it("without reporting the check, a promotion is refused, as GitHub refuses it", async function () {
        const before = ok(ops, "rev-parse", "main");
        await assert.rejects(
            commitFiles({ remote: ops, branch: "main", message: "unchecked", author, maxAttempts: 1, compute: write({ "environments/itg/values.yaml": "x\n" }) }),
            (e: unknown) => e instanceof GitError && /Required status check "validate"/.test(e.message),
        );
        assert.equal(ok(ops, "rev-parse", "main"), before);
    });

    it("reports validate on its commit (pushed to a side branch first), then lands on main and removes the side branch", async function () {
        const statuses = gh.statuses.length;
        const r = await commitFiles({ remote: ops, branch: "main", message: "promote web", author, pushAs: { checks: checks() }, compute: write({ "environments/itg/values.yaml": "web: {}\n" }) });
        assert.equal(ok(ops, "rev-parse", "main"), r.commit);
        const reported = gh.statuses.slice(statuses);
        assert.equal(reported.length, 1);
        assert.equal(reported[0].sha, r.commit);
        assert.deepEqual({ state: reported[0].body.state, context: reported[0].body.context }, { state: "success", context: "validate" });
        assert.equal(reported[0].authorization, `Bearer ${GH_TOKEN}`);
        assert.equal(sideBranches(), "");
        assert.equal(checkBranch(r.commit!), `gitops-stages/validate/${r.commit}`);
    });

    it("when main moves meanwhile, each attempt reports its own commit and nothing is lost or left behind", async function () {
        const statuses = gh.statuses.length;
        let moved = false;
        const r = await commitFiles({
            remote: ops,
            branch: "main",
            message: "promote tst",
            author,
            pushAs: { checks: checks() },
            compute: async (head) => {
                if (!moved) {
                    moved = true;
                    // Someone else lands on main between our read and our push (on the server, as a merged pull request would).
                    const other = ok(ops, "commit-tree", `${head.commit}^{tree}`, "-p", head.commit!, "-m", "someone else's commit");
                    ok(ops, "update-ref", "refs/heads/main", other, head.commit!);
                }
                return { writes: { "environments/tst/values.yaml": "tst: {}\n" }, deletes: [] };
            },
        });
        assert.equal(r.attempts, 2);
        assert.deepEqual(ok(ops, "log", "-2", "--format=%s", "main").split("\n"), ["promote tst", "someone else's commit"]);
        const reported = gh.statuses.slice(statuses).map((x) => x.sha);
        assert.equal(reported.length, 2);
        assert.notEqual(reported[0], reported[1]);
        assert.equal(reported[1], r.commit);
        assert.equal(sideBranches(), "");
    });

    it("a commit that breaks a rule of the check is refused before anything is pushed or reported", async function () {
        const before = ok(ops, "rev-parse", "main");
        const statuses = gh.statuses.length;
        await assert.rejects(
            commitFiles({ remote: ops, branch: "main", message: "rewrite a release", author, pushAs: { checks: checks() }, compute: write({ "releases/web/1.0.0/bundle.json": "{\"changed\":true}\n" }) }),
            (e: unknown) => e instanceof GitError && /releases\/web\/1\.0\.0\/bundle\.json: .*\(rule: immutable-release\)/.test(e.message),
        );
        assert.equal(ok(ops, "rev-parse", "main"), before);
        assert.equal(gh.statuses.length, statuses);
        assert.equal(sideBranches(), "");
    });

    it("adding a file to a published release is refused too", async function () {
        await assert.rejects(
            commitFiles({ remote: ops, branch: "main", message: "sneak a value in", author, pushAs: { checks: checks() }, compute: write({ "releases/web/1.0.0/values/prod.yaml": "debug: true\n" }) }),
            (e: unknown) => e instanceof GitError && /adds a file to the published release releases\/web\/1\.0\.0\/ \(rule: immutable-release\)/.test(e.message),
        );
    });

    it("GitHub refusing the status fails the commit with its answer, never the token, and leaves no side branch", async function () {
        const before = ok(ops, "rev-parse", "main");
        gh.refuseWith = 403;
        try {
            await assert.rejects(
                commitFiles({ remote: ops, branch: "main", message: "no permission", author, pushAs: { checks: checks() }, compute: write({ "environments/tst/values.yaml": "x\n" }) }),
                (e: unknown) => e instanceof GitError && /GitHub answered 403/.test(e.message) && /Resource not accessible by integration/.test(e.message) && !e.message.includes(GH_TOKEN),
            );
        } finally {
            gh.refuseWith = undefined;
        }
        assert.equal(ok(ops, "rev-parse", "main"), before);
        assert.equal(sideBranches(), "");
    });
});

describe("the ops repo's validate check", function () {
    it("names the rule and the path of each problem", function () {
        const problems = validateOpsChange([
            { path: "NOTES.md", after: "x" },
            { path: "environments/itg/../../x", after: "x" },
            { path: "releases/web/1.0.0/bundle.json", before: "{}", after: "{\"a\":1}" },
            { path: "releases/web/1.0.0/chart/Chart.yaml", before: "name: web\n" },
            { path: "environments/prod/secrets/db.yaml", after: "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n" },
            { path: "environments/prod/secrets/mixed.yaml", after: `${SEALED}---\napiVersion: v1\nkind: Secret\n` },
            { path: "environments/prod/releases.json", after: "{not json" },
            { path: "environments/prod/secrets/quoted.yaml", after: 'apiVersion: "v1"\nkind: "Secret"\ndata:\n  password: aHVudGVyMg==\n' },
            { path: "releases/web/1.0.0/values/prod.yaml", after: "debug: true\n" },
        ], (release) => release === "releases/web/1.0.0/");
        assert.deepEqual(
            problems.map((p) => `${p.rule} ${p.path}`),
            [
                "layout NOTES.md",
                "layout environments/itg/../../x",
                "immutable-release releases/web/1.0.0/bundle.json",
                "immutable-release releases/web/1.0.0/chart/Chart.yaml",
                "sealed-secrets-only environments/prod/secrets/db.yaml",
                "sealed-secrets-only environments/prod/secrets/mixed.yaml",
                "json environments/prod/releases.json",
                "sealed-secrets-only environments/prod/secrets/quoted.yaml",
                "immutable-release releases/web/1.0.0/values/prod.yaml",
            ],
        );
        // A plain Secret's values never appear in the report.
        assert.ok(problems.every((p) => !p.message.includes("hunter2")));
    });

    it("passes what operators and the runner write: sealed secrets (as `stages secret` renders them), new releases, the stage's generated files", function () {
        // Two SealedSecrets in one file, one of them with an encrypted key named stringData.
        const rendered = renderSecretsFile("web", [
            { name: "web-db", namespace: "prod", scope: "strict", encryptedData: { password: "AgB4", stringData: "AgC5" } },
            { name: "web-api", namespace: "prod", scope: "strict", encryptedData: { token: "AgD6" } },
        ]);
        assert.deepEqual(
            validateOpsChange([
                { path: "environments/prod/secrets/web.yaml", after: rendered },
                { path: "environments/prod/secrets/db.yaml", after: SEALED },
                { path: "environments/prod/secrets/old.yaml", before: SEALED },
                { path: "releases/web/1.1.0/bundle.json", after: "{}" },
                { path: "environments/itg/values.yaml", before: "a: 1\n", after: "a: 2\n" },
                { path: "environments/itg/templates/sealed-secrets.yaml", after: "{{- range . }}\n" },
                { path: ".github/workflows/validate.yml", after: "name: validate\n" },
            ]),
            [],
        );
    });

    it("as the workflow runs it (the shipped script, in a clone): fails a pull request adding a plain Secret, passes a sealed one", function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-validate-"));
        try {
            const script = path.join(dir, "validate.js");
            fs.writeFileSync(script, opsValidateScript());
            ok(dir, "init", "-q", "-b", "main");
            fs.mkdirSync(path.join(dir, "environments", "prod", "secrets"), { recursive: true });
            fs.writeFileSync(path.join(dir, "README.md"), "ops\n");
            ok(dir, "add", "README.md");
            ok(dir, "-c", "user.name=A", "-c", "user.email=a@example.invalid", "commit", "-qm", "base");
            ok(dir, "checkout", "-q", "-b", "pr");
            fs.writeFileSync(path.join(dir, "environments", "prod", "secrets", "db.yaml"), "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n");
            ok(dir, "add", "environments");
            ok(dir, "-c", "user.name=A", "-c", "user.email=a@example.invalid", "commit", "-qm", "plain secret");
            const failed = spawnSync(process.execPath, [script, "--base", "main", "--head", "HEAD"], { cwd: dir, encoding: "utf8" });
            assert.equal(failed.status, 1, failed.stderr);
            assert.match(failed.stderr, /environments\/prod\/secrets\/db\.yaml: .*\(rule: sealed-secrets-only\)/);
            assert.doesNotMatch(failed.stderr + failed.stdout, /hunter2/);
            fs.writeFileSync(path.join(dir, "environments", "prod", "secrets", "db.yaml"), SEALED);
            ok(dir, "-c", "user.name=A", "-c", "user.email=a@example.invalid", "commit", "-qam", "sealed");
            const passed = spawnSync(process.execPath, [script, "--base", "main", "--head", "HEAD"], { cwd: dir, encoding: "utf8" });
            assert.equal(passed.status, 0, passed.stderr);
            assert.match(passed.stdout, /validate: 1 changed file\(s\) follow the ops repo's rules/);
            const usage = spawnSync(process.execPath, [script], { cwd: dir, encoding: "utf8" });
            assert.equal(usage.status, 2);
            assert.match(usage.stderr, /--base is required/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
