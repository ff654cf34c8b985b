/**
 * The platform stack on the real engine with the embedded default: local git host (real bare
 * repositories) and Kubernetes rendered to files, run as `pulumi up` of the project's own program
 * through the language host. Charts come from test/charts (stand-ins carrying the CRDs we use).
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import * as YAML from "yaml";

import { prepareProjectCopy } from "../../src/project";
import { walk } from "../support/files";
import { Engine, createEngine, disposeEngine, repoRoot } from "../support/engine";
import { argoCdTestChart } from "../support/argocd-chart";

const git = (dir: string, ...args: string[]) => execFileSync("git", ["--git-dir", dir, ...args], { encoding: "utf8" }).trim();


/** A parsed manifest: arbitrary YAML, read by the assertions field by field. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Manifest = Record<string, any>;

/** Rendered manifests by "kind/namespace/name". */
function manifests(renderDir: string): Map<string, Manifest> {
    const out = new Map<string, Manifest>();
    for (const f of walk(renderDir).filter((p) => p.endsWith(".yaml"))) {
        for (const doc of YAML.parseAllDocuments(fs.readFileSync(f, "utf8"))) {
            const o = doc.toJS();
            if (o?.kind) out.set(`${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`, o);
        }
    }
    return out;
}

describe("platform stack on the real engine (embedded default)", function () {
    let engine: Engine;
    let stack: Stack;
    let gitDir: string;
    let renderDir: string;
    let project: string;

    before(async function () {
        engine = await createEngine();
        project = path.join(engine.dir, "project");
        prepareProjectCopy(repoRoot, project);
        gitDir = path.join(engine.dir, "git");
        renderDir = path.join(engine.dir, "rendered");
        stack = await LocalWorkspace.createStack(
            { stackName: "platform", workDir: project },
            engine.workspaceOptions,
        );
        await stack.setAllConfig({
            "gitops-stages:gitHost": { value: JSON.stringify({ kind: "local", path: gitDir }) },
            "gitops-stages:cluster": { value: JSON.stringify({ renderDir }) },
            "gitops-stages:argocd": { value: JSON.stringify({ chart: { path: argoCdTestChart() } }) },
            "gitops-stages:sealedSecrets": { value: JSON.stringify({ chart: { path: path.join(repoRoot, "test/charts/sealed-secrets") } }) },
        });
    });

    after(function () {
        if (engine) disposeEngine(engine);
    });

    it("keeps stack config in stacks/Pulumi.platform.yaml of the workspace", function () {
        const file = path.join(project, "stacks", "Pulumi.platform.yaml");
        const doc = YAML.parse(fs.readFileSync(file, "utf8"));
        assert.equal(JSON.parse(doc.config["gitops-stages:gitHost"]).path, gitDir);
        assert.equal(fs.existsSync(path.join(project, "Pulumi.platform.yaml")), false, "config must not land beside Pulumi.yaml");
    });

    it("up creates both bare repositories, the ops skeleton as one commit and its validate check as another, and renders Argo CD, Sealed Secrets and one Application per stage", async function () {
        const up = await stack.up({ message: "bootstrap" });
        assert.equal(up.summary.result, "succeeded");

        const ops = path.join(gitDir, "app-ops.git");
        assert.deepEqual(git(ops, "log", "--format=%s", "main").split("\n"), ["The validate check of the ops repository", "Skeleton of the ops repository"]);
        assert.deepEqual(git(ops, "show", "--name-only", "--format=", "main").split("\n").sort(), [".github/gitops-stages/validate.js", ".github/workflows/validate.yml"]);
        const files = git(ops, "ls-tree", "-r", "--name-only", "main").split("\n");
        for (const s of ["itg", "tst", "perf", "prod"]) {
            for (const f of ["Chart.yaml", "values.yaml", "releases.json", "secrets/.gitkeep"]) assert.ok(files.includes(`environments/${s}/${f}`), `${s}/${f}`);
        }
        const codeowners = git(ops, "show", "main:.github/CODEOWNERS");
        assert.match(codeowners, /^\/environments\/prod\/ @local\/prod-owners @local\/platform-admins$/m);
        assert.equal(git(path.join(gitDir, "app-dev.git"), "rev-list", "--count", "main"), "1");
        assert.equal(up.outputs.opsSkeletonCommit.value, git(ops, "rev-parse", "main~1"));

        const m = manifests(renderDir);
        for (const s of ["itg", "tst", "perf", "prod"]) {
            const app = m.get(`Application/argocd/${s}`);
            assert.ok(app, `no Application ${s} rendered`);
            assert.equal(app.spec.source.repoURL, `file://${ops}`);
            assert.equal(app.spec.source.path, `environments/${s}`);
            assert.equal(Boolean(app.spec.syncPolicy.automated), s === "itg", `${s} automated sync`);
            const proj = m.get(`AppProject/argocd/${s}`);
            assert.deepEqual(proj?.spec.sourceRepos, [`file://${ops}`]);
            assert.deepEqual(proj?.spec.destinations, [{ server: "https://kubernetes.default.svc", namespace: s }]);
        }
        assert.ok(m.get("CustomResourceDefinition//applications.argoproj.io"), "Argo CD chart CRDs not rendered");
        assert.ok(m.get("CustomResourceDefinition//sealedsecrets.bitnami.com"), "Sealed Secrets chart not rendered");
        const rbac = m.get("ConfigMap/argocd/argocd-rbac-cm");
        assert.match(rbac?.data["policy.csv"], /^p, role:prod-owners, applications, sync, prod\/\*, allow$/m);
        assert.equal(rbac?.data["policy.csv"].includes("override"), false);
        assert.equal(m.get("Secret/argocd/gitops-stages-ops-repo")?.metadata.labels["argocd.argoproj.io/secret-type"], "repository");

        // The protection of main is installed in both bare repositories, and the push token is a secret.
        assert.equal(up.outputs.opsPushToken.secret, true);
        for (const [repo, role] of [["app-ops.git", "ops"], ["app-dev.git", "dev"]]) {
            const dir = path.join(gitDir, repo);
            assert.match(fs.readFileSync(path.join(dir, "hooks", "pre-receive"), "utf8"), /rule: non_fast_forward/);
            assert.equal(git(dir, "config", "--get", "gitops-stages.role"), role);
        }
        assert.equal(up.outputs.argocdAdminPassword.secret, true);
        assert.equal(up.outputs.runnerTokens.secret, true);
        assert.deepEqual(Object.keys(up.outputs.runnerTokens.value).sort(), ["itg", "perf", "prod", "tst"]);
        assert.deepEqual(
            up.outputs.notApplicable.value.map((n: { item: string }) => n.item),
            [
                "pull-request reviews and required status checks of main",
                "teams and repository permissions",
                "GitHub Environments with runner URL and per-stage tokens",
                "read-only deploy key for Argo CD",
                "webhook from the ops repository to Argo CD",
            ],
        );
        assert.deepEqual(
            up.outputs.charts.value.map((c: { name: string; installed: boolean }) => [c.name, c.installed]),
            [
                ["argo-cd", true],
                ["sealed-secrets", true],
            ],
        );
    });

    it("a second up changes nothing and makes no commit", async function () {
        const up = await stack.up();
        const changed = Object.entries(up.summary.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
        assert.deepEqual(changed, []);
        assert.equal(git(path.join(gitDir, "app-ops.git"), "rev-list", "--count", "main"), "2");
    });

    it("the state and the outputs never hold the admin password or tokens in clear text", async function () {
        const out = await stack.outputs();
        const secrets = [out.argocdAdminPassword.value, ...Object.values(out.runnerTokens.value as Record<string, string>)];
        const state = walk(engine.stateDir).map((f) => fs.readFileSync(f, "utf8")).join("\n");
        for (const s of secrets) {
            assert.equal(s.length >= 32, true);
            assert.equal(state.includes(s), false, "a generated secret is in the state in clear text");
        }
    });

    it("destroy removes the repositories and the rendered manifests", async function () {
        const down = await stack.destroy();
        assert.equal(down.summary.result, "succeeded");
        assert.equal(fs.existsSync(path.join(gitDir, "app-ops.git")), false);
        assert.equal(fs.existsSync(path.join(gitDir, "app-dev.git")), false);
        assert.deepEqual(walk(renderDir).filter((f) => f.endsWith(".yaml")), []);
    });

    it("refuses bad config with every problem listed and creates nothing", async function () {
        const bad = await LocalWorkspace.createStack(
            { stackName: "platform-bad", workDir: project },
            engine.workspaceOptions,
        );
        const badGit = path.join(engine.dir, "bad-git");
        await bad.setAllConfig({
            "gitops-stages:gitHost": { value: JSON.stringify({ kind: "local", path: badGit, owner: "acme" }) },
            "gitops-stages:stages": { value: JSON.stringify([{ name: "Prod!" }, { name: "itg", sync: "sometimes" }]) },
            "gitops-stages:cluster": { value: JSON.stringify({ renderDir: path.join(engine.dir, "bad-render") }) },
        });
        await assert.rejects(bad.up(), (e: Error) => {
            assert.match(e.message, /invalid platform configuration \(3 problems\)/);
            assert.match(e.message, /gitops-stages:gitHost\.owner = "acme": is only used with kind "github"/);
            assert.match(e.message, /gitops-stages:stages\[0\]\.name = "Prod!": must be a DNS label/);
            assert.match(e.message, /gitops-stages:stages\[1\]\.sync = "sometimes": must be one of "automatic", "manual"/);
            return true;
        });
        // The engine records its root Stack object for any run; nothing of ours may exist.
        const state = await bad.exportStack();
        const ours = (state.deployment.resources ?? []).filter((r: { type: string }) => r.type !== "pulumi:pulumi:Stack");
        assert.deepEqual(ours, []);
        assert.equal(fs.existsSync(badGit), false);
        assert.equal(fs.existsSync(path.join(engine.dir, "bad-render")), false);
    });
});
