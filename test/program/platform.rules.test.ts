/**
 * What the platform stack declares, checked as rules with Pulumi's mocks (no engine, no GitHub,
 * no cluster). Integration tests cover the embedded default on the real engine.
 */
import * as assert from "node:assert/strict";

import YAML from "yaml";

import * as pulumi from "@pulumi/pulumi";

/** A resource the program registered. */
interface Registered {
    type: string;
    name: string;
    // Mock inputs are arbitrary JSON; the rules read them field by field.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    inputs: Record<string, any>;
}

const created: Registered[] = [];

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Mock inputs carry secrets as signed wrappers; the rules read the values inside. */
function plain(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (SECRET_SIG in o && "value" in o) return plain(o.value);
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, plain(x)]));
    }
    return v;
}

pulumi.runtime.setMocks(
    {
        newResource(args: pulumi.runtime.MockResourceArgs) {
            created.push({ type: args.type, name: args.name, inputs: plain(args.inputs) as Record<string, unknown> });
            const state: Record<string, unknown> = { ...args.inputs };
            if (args.type === "github:index/repository:Repository") {
                state.httpCloneUrl = `https://github.com/acme/${args.inputs.name}.git`;
                state.sshCloneUrl = `git@github.com:acme/${args.inputs.name}.git`;
                state.nodeId = `R_${args.inputs.name}`;
            }
            if (args.type === "github:index/team:Team") return { id: String(1000 + created.length), state };
            if (args.type === "random:index/randomPassword:RandomPassword") {
                state.result = `${args.name}-${"x".repeat(40)}`;
                state.bcryptHash = `$2a$10$${args.name}`;
            }
            if (args.type === "pulumi-nodejs:dynamic/gitops-stages-ssh:SshKeyPair") {
                state.publicKey = "ssh-ed25519 AAAAtest argocd@gitops-stages";
                state.privateKey = "-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n";
            }
            return { id: `${args.name}-id`, state };
        },
        call(args: pulumi.runtime.MockCallArgs) {
            return args.inputs;
        },
    },
    "gitops-stages",
    "platform",
    false,
);

function unwrap<T>(o: pulumi.Input<T> | undefined): Promise<T> {
    return new Promise((resolve) => pulumi.output(o as pulumi.Input<T>).apply((v) => (resolve(v as T), v)));
}

const byType = (type: string) => created.filter((r) => r.type === type);
const one = (type: string, name: string) => {
    const r = created.find((x) => x.type === type && x.name === name);
    assert.ok(r, `no ${type} named ${name}; have: ${created.filter((x) => x.type === type).map((x) => x.name).join(", ")}`);
    return r!;
};

describe("platform stack rules (GitHub host, mocks)", function () {
    let outputs: Record<string, unknown>;

    before(async function () {
        const { parsePlatformConfig } = await import("../../src/config/platform");
        const { platform } = await import("../../src/program/platform");
        const cfg = parsePlatformConfig(
            {
                gitHost: { kind: "github", owner: "acme", runnerActor: "/acme-gitops-runner" },
                argocd: { url: "https://cd.acme.example" },
                cluster: { kubeconfig: "/dev/null" },
            },
            { projectDir: "/srv", stack: "platform" },
        );
        outputs = await platform(cfg, { chartAvailability: async () => ({ ok: true }), env: { GITHUB_TOKEN: "ghp_mocktoken" } });
        // Let every resource registration settle.
        await unwrap(outputs.runnerTokenHashes as pulumi.Output<unknown>);
        await new Promise((r) => setTimeout(r, 50));
    });

    describe("repositories", function () {
        it("ops main requires 2 approvals, code owners, stale-approval dismissal and approval of the last push", async function () {
            const p = one("github:index/branchProtection:BranchProtection", "github-ops-main").inputs;
            const reviews = p.requiredPullRequestReviews[0];
            assert.equal(reviews.requiredApprovingReviewCount, 2);
            assert.equal(reviews.requireCodeOwnerReviews, true);
            assert.equal(reviews.dismissStaleReviews, true);
            assert.equal(reviews.requireLastPushApproval, true);
            assert.equal(p.requiredLinearHistory, true);
        });

        it("both mains forbid force pushes and deletion, include admins and require strict status checks", function () {
            for (const role of ["dev", "ops"]) {
                const p = one("github:index/branchProtection:BranchProtection", `github-${role}-main`).inputs;
                assert.equal(p.pattern, "main");
                assert.equal(p.allowsForcePushes, false);
                assert.equal(p.allowsDeletions, false);
                assert.equal(p.enforceAdmins, true);
                assert.equal(p.requiredStatusChecks[0].strict, true);
                assert.ok(p.requiredStatusChecks[0].contexts.length > 0);
            }
        });

        it("only the runner may push to ops main without a pull request, and nobody to dev main", function () {
            const ops = one("github:index/branchProtection:BranchProtection", "github-ops-main").inputs;
            const dev = one("github:index/branchProtection:BranchProtection", "github-dev-main").inputs;
            assert.deepEqual(ops.requiredPullRequestReviews[0].pullRequestBypassers, ["/acme-gitops-runner"]);
            assert.deepEqual(dev.requiredPullRequestReviews[0].pullRequestBypassers ?? [], []);
            assert.deepEqual(ops.forcePushBypassers ?? [], []);
        });

        it("the ops repo ships the workflow that produces its required check, and the runner learns where to report it", async function () {
            const check = one("pulumi-nodejs:dynamic/gitops-stages-git:GitFiles", "github-ops-check").inputs;
            // Owned, so an upgrade brings the workflow the rules the runner runs.
            assert.equal(check.mode, "own");
            assert.deepEqual([...check.scope].sort(), Object.keys(check.files).sort());
            const files = check.files;
            const workflow = YAML.parse(files[".github/workflows/validate.yml"]);
            const required = one("github:index/branchProtection:BranchProtection", "github-ops-main").inputs.requiredStatusChecks[0].contexts;
            // A job's check run is named after the job: the job id is the required context.
            assert.deepEqual(Object.keys(workflow.jobs), required);
            assert.deepEqual(Object.keys(workflow.on), ["pull_request"]);
            assert.match(files[".github/gitops-stages/validate.js"], /validateOpsChange/);
            assert.deepEqual(await unwrap(outputs.opsChecks as pulumi.Output<unknown>), { api: "https://api.github.com", repository: "acme/app-ops" });
            assert.equal(outputs.opsPushToken, null);
        });

        it("the platform's own later commits to ops main report validate as the runner's do (a new stage's folder, an upgraded check)", function () {
            for (const name of ["github-ops-skeleton", "github-ops-check"]) {
                const pushAs = one("pulumi-nodejs:dynamic/gitops-stages-git:GitFiles", name).inputs.pushAs;
                assert.deepEqual(pushAs, { checks: { api: "https://api.github.com", repository: "acme/app-ops", token: "ghp_mocktoken" } }, name);
            }
            assert.equal(one("pulumi-nodejs:dynamic/gitops-stages-git:GitFiles", "github-dev-skeleton").inputs.pushAs, undefined);
        });

        it("protection waits for the skeleton commit that creates main", function () {
            // The dependency is what makes protection of a fresh ops repo possible at all.
            const skeleton = byType("pulumi-nodejs:dynamic/gitops-stages-git:GitFiles").find((r) => r.name === "github-ops-skeleton");
            assert.ok(skeleton, "ops skeleton resource missing");
            assert.equal(skeleton!.inputs.mode, "seed");
            assert.equal(skeleton!.inputs.branch, "main");
        });

        it("CODEOWNERS gives each environments/<stage>/ to that stage's owners", function () {
            const files = byType("pulumi-nodejs:dynamic/gitops-stages-git:GitFiles").find((r) => r.name === "github-ops-skeleton")!.inputs.files;
            const codeowners: string = files[".github/CODEOWNERS"];
            for (const s of ["itg", "tst", "perf", "prod"]) {
                assert.match(codeowners, new RegExp(`^/environments/${s}/ @acme/${s}-owners @acme/platform-admins$`, "m"));
            }
        });

        it("teams: platform admins, developers and one owners team per stage", function () {
            assert.deepEqual(byType("github:index/team:Team").map((t) => t.inputs.name).sort(), [
                "developers",
                "itg-owners",
                "perf-owners",
                "platform-admins",
                "prod-owners",
                "tst-owners",
            ]);
        });

        it("developers can write code but only read the ops repo", function () {
            const grants = byType("github:index/teamRepository:TeamRepository").map((g) => g.name + "=" + g.inputs.permission);
            assert.ok(grants.includes("github-dev-developers=push"));
            assert.ok(grants.includes("github-ops-developers=pull"));
        });

        it("the ops repo's deploy key for Argo CD is read-only", function () {
            assert.equal(one("github:index/repositoryDeployKey:RepositoryDeployKey", "github-ops-deploy-key").inputs.readOnly, true);
        });

        it("the ops repo's webhook posts pushes to Argo CD with a secret", function () {
            const hook = one("github:index/repositoryWebhook:RepositoryWebhook", "github-ops-webhook").inputs;
            assert.deepEqual(hook.events, ["push"]);
            assert.equal(hook.configuration.url, "https://cd.acme.example/api/webhook");
            assert.ok(hook.configuration.secret.length >= 40);
        });
    });

    describe("GitHub Environments", function () {
        it("perf and prod need their owners' review before CI promotes; itg and tst do not", function () {
            for (const s of ["itg", "tst", "perf", "prod"]) {
                const env = one("github:index/repositoryEnvironment:RepositoryEnvironment", `github-env-${s}`).inputs;
                const teams = (env.reviewers ?? []).flatMap((r: { teams?: number[] }) => r.teams ?? []);
                assert.equal(teams.length > 0, s === "perf" || s === "prod", `${s} reviewers: ${JSON.stringify(env.reviewers)}`);
            }
        });

        it("each stage's runner token lives only in that stage's Environment", async function () {
            const tokens = await unwrap(outputs.runnerTokens as pulumi.Output<Record<string, string>>);
            const secrets = byType("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret");
            assert.equal(secrets.length, 4);
            for (const s of secrets) {
                assert.equal(s.inputs.secretName, "GITOPS_STAGES_RUNNER_TOKEN");
                assert.equal(s.inputs.plaintextValue, tokens[s.inputs.environment], `token of ${s.inputs.environment}`);
            }
            assert.equal(new Set(Object.values(tokens)).size, 4, "tokens must differ per stage");
        });

        it("deployments come from protected branches only", function () {
            for (const env of byType("github:index/repositoryEnvironment:RepositoryEnvironment")) {
                assert.deepEqual(env.inputs.deploymentBranchPolicy, { protectedBranches: true, customBranchPolicies: false });
            }
        });
    });

    describe("Argo CD", function () {
        const apps = () => byType("kubernetes:argoproj.io/v1alpha1:Application");
        const projects = () => byType("kubernetes:argoproj.io/v1alpha1:AppProject");

        it("one Application per stage, each rendering its own environments/<stage>/ of the ops repo", function () {
            assert.deepEqual(apps().map((a) => a.inputs.metadata.name), ["itg", "tst", "perf", "prod"]);
            for (const a of apps()) {
                assert.equal(a.inputs.spec.source.repoURL, "git@github.com:acme/app-ops.git");
                assert.equal(a.inputs.spec.source.path, `environments/${a.inputs.metadata.name}`);
                assert.equal(a.inputs.spec.project, a.inputs.metadata.name);
            }
        });

        it("itg syncs automatically with prune and self-heal; prod has no automated sync", function () {
            const spec = (n: string) => apps().find((a) => a.inputs.metadata.name === n)!.inputs.spec;
            assert.deepEqual(spec("itg").syncPolicy.automated, { prune: true, selfHeal: true });
            for (const s of ["tst", "perf", "prod"]) assert.equal(spec(s).syncPolicy.automated, undefined, `${s} must sync manually`);
        });

        it("no AppProject allows a source other than the ops repo", function () {
            assert.equal(projects().length, 4);
            for (const p of projects()) assert.deepEqual(p.inputs.spec.sourceRepos, ["git@github.com:acme/app-ops.git"]);
        });

        it("each AppProject deploys only into its stage's namespaces", function () {
            for (const p of projects()) {
                assert.deepEqual(p.inputs.spec.destinations, [{ server: "https://kubernetes.default.svc", namespace: p.inputs.metadata.name }]);
            }
        });

        it("tst owners cannot sync prod, and no stage owner gets override or another project", function () {
            const chart = one("kubernetes:helm.sh/v4:Chart", "argocd-chart").inputs;
            const policy: string = chart.values.configs.rbac["policy.csv"];
            const lines = policy.split("\n").filter((l) => l.startsWith("p, role:tst-owners"));
            assert.deepEqual(lines, [
                "p, role:tst-owners, applications, get, tst/*, allow",
                "p, role:tst-owners, applications, sync, tst/*, allow",
                "p, role:tst-owners, projects, get, tst, allow",
            ]);
            assert.match(policy, /^g, acme:tst-owners, role:tst-owners$/m);
            assert.doesNotMatch(policy, /override/);
            assert.equal(chart.values.configs.rbac["policy.default"], "", "no default role: what is not granted is denied");
            const prodProject = projects().find((p) => p.inputs.metadata.name === "prod")!;
            assert.deepEqual(prodProject.inputs.spec.roles[0].groups, ["acme:prod-owners"]);
        });

        it("the chart is pinned and receives the admin password hash and webhook secret", function () {
            const chart = one("kubernetes:helm.sh/v4:Chart", "argocd-chart").inputs;
            assert.equal(chart.chart, "argo-cd");
            assert.equal(chart.version, "9.1.0");
            assert.equal(chart.repositoryOpts.repo, "https://argoproj.github.io/argo-helm");
            assert.equal(chart.values.configs.secret.argocdServerAdminPassword, "$2a$10$argocd-admin");
            assert.ok(chart.values.configs.secret.githubSecret.startsWith("ops-webhook-secret-"));
        });

        it("Argo CD reads the ops repo with the deploy key's private half", function () {
            const secret = one("kubernetes:core/v1:Secret", "argocd-ops-repo").inputs;
            assert.equal(secret.metadata.labels["argocd.argoproj.io/secret-type"], "repository");
            assert.equal(secret.stringData.url, "git@github.com:acme/app-ops.git");
            assert.match(secret.stringData.sshPrivateKey, /BEGIN PRIVATE KEY/);
        });

        it("the Sealed Secrets controller is installed from its pinned chart", function () {
            const chart = one("kubernetes:helm.sh/v4:Chart", "sealed-secrets-chart").inputs;
            assert.equal(chart.chart, "sealed-secrets");
            assert.equal(chart.version, "2.17.7");
        });
    });

    describe("outputs", function () {
        it("the admin password and runner tokens are secret outputs", async function () {
            assert.equal(await pulumi.isSecret(outputs.argocdAdminPassword as pulumi.Output<string>), true);
            assert.equal(await pulumi.isSecret(outputs.runnerTokens as pulumi.Output<unknown>), true);
        });

        it("token hashes are plain sha256 hex, one per stage", async function () {
            const hashes = await unwrap(outputs.runnerTokenHashes as pulumi.Output<Record<string, string>>);
            assert.deepEqual(Object.keys(hashes).sort(), ["itg", "perf", "prod", "tst"]);
            for (const h of Object.values(hashes)) assert.match(h, /^[0-9a-f]{64}$/);
        });
    });
});
