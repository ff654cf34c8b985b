/**
 * Stage and merge-request stacks on the real engine with real git: the platform stack creates the
 * ops repo (local host), releases are published to it, and stage stacks write
 * `environments/<stage>/` as one commit per update. A git daemon on loopback serves the ops repo
 * for the "someone else pushed meanwhile" case.
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import * as YAML from "yaml";

import { PushAs, pushEnv } from "../../src/git/engine";
import { parseLedger } from "../../src/program/stage/files";
import { prepareProjectCopy } from "../../src/project";
import { publishFromDir } from "../../src/release/publish";
import { walk } from "../support/files";
import { Engine, createEngine, disposeEngine, repoRoot } from "../support/engine";
import { GitDaemon, makeBundleDir, releaseMeta, startGitDaemon } from "../support/fixtures";
import { plant } from "../support/planted";

const git = (gitDir: string, ...args: string[]) => execFileSync("git", ["--git-dir", gitDir, ...args], { encoding: "utf8" }).trim();
const author = { name: "ci", email: "ci@example.invalid" };


describe("stage and merge-request stacks on the real engine", function () {
    let engine: Engine;
    let project: string;
    let ops: string;
    let itg: Stack;
    let daemon: GitDaemon | undefined;
    // The runner's push token: the ops repo's hook lets only its holder push to main (an operator
    // holding it here stands in for a merged pull request).
    let pushAs: PushAs;
    const asRunner = () => ({ env: { ...process.env, ...pushEnv(pushAs) } });
    const opts = () => (engine.workspaceOptions);

    const release = (_app: string, version: string, requestId: string) => ({
        version,
        requestId,
        requester: "ci@example.invalid",
        promotedAt: "2026-11-25T10:00:00Z",
        sourceCommit: "0123456789abcdef0123456789abcdef01234567",
    });
    const setStage = async (stack: Stack, releases: Record<string, unknown>, change: Record<string, unknown>) =>
        stack.setConfig("gitops-stages:stage", { value: JSON.stringify({ releases, change }) });
    const count = () => Number(git(ops, "rev-list", "--count", "main"));

    before(async function () {
        engine = await createEngine();
        project = path.join(engine.dir, "project");
        prepareProjectCopy(repoRoot, project);
        const gitDir = path.join(engine.dir, "git");
        const platform = await LocalWorkspace.createStack({ stackName: "platform", workDir: project }, opts());
        await platform.setAllConfig({
            "gitops-stages:gitHost": { value: JSON.stringify({ kind: "local", path: gitDir }) },
            "gitops-stages:cluster": { value: JSON.stringify({ renderDir: path.join(engine.dir, "rendered", "platform") }) },
        });
        await platform.up();
        ops = path.join(gitDir, "app-ops.git");
        pushAs = { token: plant((await platform.outputs()).opsPushToken.value as string) };
        for (const [app, v] of [["web", "1.0.0"], ["web", "1.1.0"], ["api", "2.1.0"]]) {
            await publishFromDir(ops, makeBundleDir(engine.dir, app, { replicas: v === "1.1.0" ? 2 : 1 }), releaseMeta(app, v), author, undefined, pushAs);
        }
        itg = await LocalWorkspace.createStack({ stackName: "itg", workDir: project }, opts());
    });

    after(async function () {
        await daemon?.stop();
        if (engine) disposeEngine(engine);
    });

    it("a promotion writes the stage's folder as exactly one commit, with app, version, stage, request and trailers", async function () {
        const before = count();
        await setStage(itg, { web: release("web", "1.0.0", "req-1") }, { kind: "promote", app: "web", version: "1.0.0", requestId: "req-1", requester: "ci@example.invalid", sourceCommit: "0123456789abcdef0123456789abcdef01234567", ciRunUrl: "https://ci.example/runs/1" });
        const up = await itg.up({ message: "promote web 1.0.0" });
        assert.equal(up.summary.result, "succeeded");
        assert.equal(count(), before + 1);
        assert.equal(
            git(ops, "log", "-1", "--format=%B", "main"),
            "Promote web 1.0.0 to itg (request req-1)\n\nRequester: ci@example.invalid\nSource-Commit: 0123456789abcdef0123456789abcdef01234567\nCI-Run: https://ci.example/runs/1\nRequest-Id: req-1",
        );
        assert.deepEqual(git(ops, "show", "--name-only", "--format=", "main").split("\n").sort(), [
            "environments/itg/Chart.yaml",
            "environments/itg/releases.json",
            "environments/itg/values.yaml",
        ]);
        const chart = YAML.parse(git(ops, "show", "main:environments/itg/Chart.yaml"));
        assert.deepEqual(chart.dependencies, [{ name: "web", alias: "web", version: "1.0.0", repository: "file://../../releases/web/1.0.0/chart" }]);
        const values = YAML.parse(git(ops, "show", "main:environments/itg/values.yaml"));
        assert.deepEqual(values.web, { env: { STAGE: "itg" }, replicas: 1, image: { repository: "registry.example/web", digest: `sha256:${"a".repeat(64)}` } });
        const ledger = parseLedger(git(ops, "show", "main:environments/itg/releases.json"));
        assert.equal(ledger.web.version, "1.0.0");
        assert.equal(ledger.web.requestId, "req-1");
        assert.match(String(ledger.web.bundleDigest), /^[0-9a-f]{64}$/);
        assert.equal(up.outputs.opsCommit.value, git(ops, "rev-parse", "main"));
        assert.equal(up.outputs.releases.value.web.digest, ledger.web.bundleDigest);
    });

    it("an identical second update makes no commit and changes no resource", async function () {
        const before = count();
        const up = await itg.up();
        assert.equal(count(), before);
        const changed = Object.entries(up.summary.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
        assert.deepEqual(changed, []);
    });

    it("promoting a second app touches only that app's lines", async function () {
        await setStage(itg, { web: release("web", "1.0.0", "req-1"), api: release("api", "2.1.0", "req-2") }, { kind: "promote", app: "api", version: "2.1.0", requestId: "req-2", requester: "ci@example.invalid" });
        await itg.up();
        const diff = git(ops, "diff", "-U0", "main~1", "main", "--", "environments/itg/").split("\n");
        const changedLines = diff.filter((l) => /^[+-]/.test(l) && !/^(\+\+\+|---)/.test(l));
        // Adding an app only adds lines: not one line of web's changes, not even a comma.
        assert.deepEqual(changedLines.filter((l) => l.startsWith("-")), []);
        assert.ok(changedLines.some((l) => l.includes('"api"')), "api's ledger line missing");
        for (const l of changedLines) assert.doesNotMatch(l, /\bweb\b/, `a line about web changed: ${l}`);
    });

    it("promoting a new version of one app leaves the other app's lines alone", async function () {
        await setStage(itg, { web: release("web", "1.1.0", "req-3"), api: release("api", "2.1.0", "req-2") }, { kind: "promote", app: "web", version: "1.1.0", requestId: "req-3", requester: "ci@example.invalid" });
        await itg.up();
        const changedLines = git(ops, "diff", "-U0", "main~1", "main").split("\n").filter((l) => /^[+-]/.test(l) && !/^(\+\+\+|---)/.test(l));
        for (const l of changedLines) assert.doesNotMatch(l, /api/, `api's line changed: ${l}`);
        assert.equal(YAML.parse(git(ops, "show", "main:environments/itg/values.yaml")).web.replicas, 2);
    });

    it("a hand edit of a generated file shows as drift on refresh, and the next update writes it back", async function () {
        const work = path.join(engine.dir, "hand-edit");
        execFileSync("git", ["clone", "-q", ops, work]);
        fs.appendFileSync(path.join(work, "environments/itg/values.yaml"), "hacked: true\n");
        execFileSync("git", ["-C", work, "-c", "user.name=Someone", "-c", "user.email=s@example.invalid", "commit", "-qam", "hand edit"]);
        // Without the runner's token the protection of main refuses it, naming the rule.
        const refused = spawnSync("git", ["-C", work, "push", "-q", "origin", "HEAD:main"], { encoding: "utf8" });
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /GH006: Protected branch update failed for refs\/heads\/main[\s\S]*rule: pull_request/);
        execFileSync("git", ["-C", work, "push", "-q", "origin", "HEAD:main"], asRunner());

        const refresh = await itg.refresh();
        assert.equal(refresh.summary.resourceChanges?.update, 1, JSON.stringify(refresh.summary.resourceChanges));
        // Refresh updates the resource's state (not the stack outputs, which only an update recomputes).
        const state = await itg.exportStack();
        const writer = state.deployment.resources.find((r: { urn: string }) => r.urn.endsWith("::ops-itg"));
        assert.deepEqual(writer.outputs.drifted, ["environments/itg/values.yaml"]);

        const preview = await itg.preview();
        assert.equal(preview.changeSummary.update, 1);
        await itg.up();
        assert.doesNotMatch(git(ops, "show", "main:environments/itg/values.yaml"), /hacked/);
        assert.deepEqual((await itg.outputs()).drifted.value, []);
    });

    it("never touches the stage's operator-owned secrets/", async function () {
        const work = path.join(engine.dir, "operator");
        execFileSync("git", ["clone", "-q", ops, work]);
        fs.writeFileSync(path.join(work, "environments/itg/secrets/web.yaml"), "kind: SealedSecret\n");
        execFileSync("git", ["-C", work, "add", "."]);
        execFileSync("git", ["-C", work, "-c", "user.name=Op", "-c", "user.email=op@example.invalid", "commit", "-qm", "seal web secret"]);
        execFileSync("git", ["-C", work, "push", "-q", "origin", "HEAD:main"], asRunner());
        await setStage(itg, { api: release("api", "2.1.0", "req-2") }, { kind: "remove", app: "web", requestId: "req-4", requester: "ci@example.invalid" });
        await itg.up();
        assert.equal(git(ops, "show", "main:environments/itg/secrets/web.yaml"), "kind: SealedSecret");
        assert.equal(git(ops, "log", "-1", "--format=%s", "main"), "Remove web from itg (request req-4)");
        const chart = YAML.parse(git(ops, "show", "main:environments/itg/Chart.yaml"));
        assert.deepEqual(chart.dependencies.map((d: { alias: string }) => d.alias), ["api"]);
        assert.deepEqual(Object.keys(parseLedger(git(ops, "show", "main:environments/itg/releases.json"))), ["api"]);
    });

    it("when someone else pushes between our read and our push (git daemon on loopback), both commits survive", async function () {
        daemon = await startGitDaemon(path.dirname(ops));
        // A remote named in the stack's config gets no push token of the platform's, so the ops
        // repo's protection hook is set aside for this race (tested over git:// in test/git/protection.test.ts).
        const protection = path.join(ops, "hooks", "pre-receive");
        const hook = fs.readFileSync(protection);
        fs.rmSync(protection);
        const marker = path.join(engine.dir, "raced");
        // The server moves main once, while our push is being received: exactly the race we must survive.
        fs.writeFileSync(
            path.join(ops, "hooks", "update"),
            [
                "#!/bin/sh",
                `[ -f '${marker}' ] && exit 0`,
                `touch '${marker}'`,
                "parent=$(git rev-parse refs/heads/main)",
                "blob=$(echo 'tst notes' | git hash-object -w --stdin)",
                "tree=$( (git ls-tree $parent; printf '100644 blob %s\\tNOTES.md\\n' $blob) | git mktree)",
                "c=$(echo 'third party: notes' | GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=o@example.invalid GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=o@example.invalid git commit-tree $tree -p $parent)",
                "git update-ref refs/heads/main $c $parent",
                "exit 0",
                "",
            ].join("\n"),
            { mode: 0o755 },
        );
        const tst = await LocalWorkspace.createStack({ stackName: "tst", workDir: project }, opts());
        await tst.setConfig("gitops-stages:opsRepo", { value: daemon.url("app-ops.git") });
        await setStage(tst, { api: release("api", "2.1.0", "req-5") }, { kind: "promote", app: "api", version: "2.1.0", requestId: "req-5", requester: "ci@example.invalid" });
        const before = count();
        await tst.up();
        assert.ok(fs.existsSync(marker), "the race was not triggered");
        fs.rmSync(path.join(ops, "hooks", "update"));
        fs.writeFileSync(protection, hook, { mode: 0o755 });
        assert.equal(count(), before + 2);
        assert.deepEqual(git(ops, "log", "-2", "--format=%s", "main").split("\n"), ["Promote api 2.1.0 to tst (request req-5)", "third party: notes"]);
        assert.equal(git(ops, "show", "main:NOTES.md"), "tst notes");
    });

    it("refuses a release that is not published, naming it, and commits nothing", async function () {
        const prod = await LocalWorkspace.createStack({ stackName: "prod", workDir: project }, opts());
        await setStage(prod, { web: release("web", "9.9.9", "req-6") }, { kind: "promote", app: "web", version: "9.9.9", requestId: "req-6", requester: "ci@example.invalid" });
        const before = count();
        await assert.rejects(prod.up(), /release web@9\.9\.9 is not published in the ops repo \(releases\/web\/9\.9\.9\/bundle\.json is missing\): publish it first/);
        assert.equal(count(), before);
    });

    it("a merge-request stack renders namespace mr-<n> and the release, labelled with MR, commit and expiry; destroy removes them", async function () {
        const bundle = makeBundleDir(engine.dir, "web");
        const renderDir = path.join(engine.dir, "rendered", "mr-7");
        const mr = await LocalWorkspace.createStack({ stackName: "mr-7", workDir: project }, opts());
        await mr.setAllConfig({
            "gitops-stages:mr": {
                value: JSON.stringify({ number: 7, app: "web", bundle, image: "registry.example/web:mr-7", sourceCommit: "abcdef0123456789", createdAt: "2026-11-25T10:00:00Z", ttlHours: 48 }),
            },
            "gitops-stages:cluster": { value: JSON.stringify({ renderDir }) },
        });
        const up = await mr.up();
        assert.equal(up.outputs.expiresAt.value, "2026-11-27T10:00:00Z");
        const docs = walk(renderDir).filter((f) => f.endsWith(".yaml")).map((f) => YAML.parse(fs.readFileSync(f, "utf8")));
        const ns = docs.find((d) => d.kind === "Namespace");
        const dep = docs.find((d) => d.kind === "Deployment");
        assert.equal(ns?.metadata.name, "mr-7");
        for (const o of [ns, dep]) {
            assert.equal(o?.metadata.labels["gitops-stages.dev/mr"], "7");
            assert.equal(o?.metadata.annotations["gitops-stages.dev/source-commit"], "abcdef0123456789");
            assert.equal(o?.metadata.annotations["gitops-stages.dev/expires-at"], "2026-11-27T10:00:00Z");
        }
        assert.equal(dep?.metadata.namespace, "mr-7");
        assert.equal(dep?.spec.template.spec.containers[0].image, "registry.example/web:mr-7");
        await mr.destroy();
        assert.deepEqual(walk(renderDir).filter((f) => f.endsWith(".yaml")), []);
    });
});
