/** Pure builders of the platform stack: protection settings, the ops skeleton, Argo CD specs. */
import * as assert from "node:assert/strict";

import { parsePlatformConfig } from "../../src/config/platform";
import { application, appProject, argocdValues, rbacPolicy } from "../../src/program/argocd/specs";
import { githubApiRoot } from "../../src/program/github";
import { branchProtection, scorecardScore, scorecardTiers } from "../../src/program/github/protection";
import { opsCodeowners, opsSkeleton } from "../../src/program/ops/skeleton";

const cfg = parsePlatformConfig({ gitHost: { kind: "github", owner: "acme", runnerActor: "/acme-bot" } }, { projectDir: "/p", stack: "platform" });

describe("branch protection", function () {
    for (const role of ["dev", "ops"] as const) {
        it(`${role} main scores 10/10 on the documented Scorecard Branch-Protection tiers`, function () {
            const p = branchProtection(role, cfg.repositories[role], "/acme-bot");
            assert.deepEqual(scorecardTiers(p).filter((t) => !t.met), []);
            assert.equal(scorecardScore(p), 10);
        });
    }

    it("a tier not fully met earns its share and stops the count, whatever higher tiers meet (Scorecard v5's arithmetic)", function () {
        const p = branchProtection("ops", cfg.repositories.ops);
        // Tier 2 meets 4 of its 5 weights: 3 + 3 * 4/5 = 5.4, truncated.
        assert.equal(scorecardScore({ ...p, requiredStatusChecks: [{ strict: false, contexts: ["validate"] }] }), 5);
        // Tier 1 meets half: 1.5, truncated.
        assert.equal(scorecardScore({ ...p, allowsForcePushes: true }), 1);
    });

    it("admins not included (what Scorecard reads from any ruleset with a bypass actor) costs one point: 9/10", function () {
        const p = branchProtection("ops", cfg.repositories.ops, "/acme-bot");
        assert.deepEqual(scorecardTiers({ ...p, enforceAdmins: false }).filter((t) => !t.met).map((t) => t.probe), ["branchProtectionAppliesToAdmins"]);
        assert.equal(scorecardScore({ ...p, enforceAdmins: false }), 9);
    });

    it("only the ops repo lets the runner skip pull requests, and only when a runner identity is configured", function () {
        assert.deepEqual(branchProtection("ops", cfg.repositories.ops, "/acme-bot").requiredPullRequestReviews[0].pullRequestBypassers, ["/acme-bot"]);
        assert.deepEqual(branchProtection("ops", cfg.repositories.ops).requiredPullRequestReviews[0].pullRequestBypassers, []);
        assert.deepEqual(branchProtection("dev", cfg.repositories.dev, "/acme-bot").requiredPullRequestReviews[0].pullRequestBypassers, []);
    });

    it("linear history on ops only", function () {
        assert.equal(branchProtection("ops", cfg.repositories.ops).requiredLinearHistory, true);
        assert.equal(branchProtection("dev", cfg.repositories.dev).requiredLinearHistory, false);
    });
});

describe("GitHub API root", function () {
    it("is github.com's API by default, and <root>/api/v3 for GitHub Enterprise Server, as the provider reads baseUrl", function () {
        assert.equal(githubApiRoot(undefined), "https://api.github.com");
        assert.equal(githubApiRoot("https://api.github.com/"), "https://api.github.com");
        assert.equal(githubApiRoot("https://ghe.acme.example/"), "https://ghe.acme.example/api/v3");
        assert.equal(githubApiRoot("https://ghe.acme.example/api/v3/"), "https://ghe.acme.example/api/v3");
    });
});

describe("ops repository skeleton", function () {
    it("holds the README, CODEOWNERS, releases/ and four files per stage", function () {
        assert.deepEqual(Object.keys(opsSkeleton(cfg)).sort(), [
            ".github/CODEOWNERS",
            "README.md",
            ...["itg", "perf", "prod", "tst"].flatMap((s) => [
                `environments/${s}/Chart.yaml`,
                `environments/${s}/releases.json`,
                `environments/${s}/secrets/.gitkeep`,
                `environments/${s}/templates/sealed-secrets.yaml`,
                `environments/${s}/values.yaml`,
            ]),
            "releases/.gitkeep",
        ]);
    });

    it("CODEOWNERS: catch-all to platform admins first, then each stage folder to its owners", function () {
        const lines = opsCodeowners(cfg).split("\n").filter((l) => l && !l.startsWith("#"));
        assert.equal(lines[0], "* @acme/platform-admins");
        assert.equal(lines[4], "/environments/prod/ @acme/prod-owners @acme/platform-admins");
    });

    it("the README documents every stage with its sync mode and owners", function () {
        const readme = opsSkeleton(cfg)["README.md"];
        assert.match(readme, /^\| `prod` \| manual \| `prod-owners` \| `prod` \| `perf` runs it \|$/m);
        assert.match(readme, /^\| `itg` \| automatic \| `itg-owners` \| `itg` \| a published release \|$/m);
    });
});

describe("Argo CD specs", function () {
    const ops = "git@github.com:acme/app-ops.git";

    it("sync windows go to the stage's AppProject", function () {
        const c = parsePlatformConfig(
            { stages: [{ name: "prod", syncWindows: [{ kind: "deny", schedule: "0 18 * * 5", duration: "60h" }] }] },
            { projectDir: "/p", stack: "platform" },
        );
        assert.deepEqual(appProject(c, c.stages[0], ops).spec.syncWindows, [
            { kind: "deny", schedule: "0 18 * * 5", duration: "60h", timeZone: "UTC", manualSync: false, applications: ["*"] },
        ]);
    });

    it("Applications delete what they deployed when removed (finalizer)", function () {
        assert.deepEqual(application(cfg, cfg.stages[3], ops).metadata.finalizers, ["resources-finalizer.argocd.argoproj.io"]);
    });

    it("the RBAC policy binds each owners team to its stage's role only", function () {
        const groups = rbacPolicy(cfg).split("\n").filter((l) => l.startsWith("g, "));
        assert.deepEqual(groups, [
            "g, acme:itg-owners, role:itg-owners",
            "g, acme:tst-owners, role:tst-owners",
            "g, acme:perf-owners, role:perf-owners",
            "g, acme:prod-owners, role:prod-owners",
            "g, acme:developers, role:readonly",
            "g, acme:platform-admins, role:admin",
            "g, gitops-stages-runner, role:readonly",
        ]);
    });

    it("local accounts: API tokens only, each bound to its teams' groups (so to their roles, nothing more); the runner's own is read-only", function () {
        const c = parsePlatformConfig(
            { gitHost: { kind: "local" }, argocd: { accounts: [{ name: "alice", teams: ["tst-owners", "developers"] }, { name: "ci-bot" }] } },
            { projectDir: "/p", stack: "platform" },
        );
        const groups = rbacPolicy(c).split("\n").filter((l) => l.startsWith("g, ") && !l.includes("-owners, role:"));
        assert.deepEqual(groups, [
            "g, developers, role:readonly",
            "g, platform-admins, role:admin",
            "g, gitops-stages-runner, role:readonly",
            "g, alice, tst-owners",
            "g, alice, developers",
        ]);
        const cm = argocdValues(c, { adminPasswordHash: "h", webhookSecret: "s" }).configs.cm as Record<string, unknown>;
        assert.equal(cm["accounts.gitops-stages-runner"], "apiKey");
        assert.equal(cm["accounts.alice"], "apiKey");
        assert.equal(cm["accounts.ci-bot"], "apiKey");
        // No account may sign in with a password: people use SSO.
        assert.ok(!Object.entries(cm).some(([k, v]) => k.startsWith("accounts.") && String(v).includes("login")));
    });

    it("account names are checked: Argo CD's and the runner's own names, team names, duplicates, bad characters and unknown teams are refused, all in one error", function () {
        assert.throws(
            () =>
                parsePlatformConfig(
                    { argocd: { accounts: [{ name: "admin" }, { name: "gitops-stages-runner" }, { name: "a.b" }, { name: "x" }, { name: "x" }, { name: "y", teams: ["Bad Team"] }, { name: "prod-owners" }, { name: "z", teams: ["nobody"] }] } },
                    { projectDir: "/p", stack: "platform" },
                ),
            (e: Error) =>
                /argocd\.accounts\[0\]\.name = "admin": must not be "admin" or "gitops-stages-runner"/.test(e.message) &&
                /argocd\.accounts\[1\]\.name = "gitops-stages-runner"/.test(e.message) &&
                /argocd\.accounts\[2\]\.name = "a\.b": must be 1 to 63 lowercase letters/.test(e.message) &&
                /argocd\.accounts\[4\]\.name = "x": must be unique/.test(e.message) &&
                /argocd\.accounts\[5\]\.teams\[0\] = "Bad Team"/.test(e.message) &&
                /argocd\.accounts\[6\]\.name = "prod-owners": must not be the name of a team/.test(e.message) &&
                /argocd\.accounts\[7\]\.teams\[0\] = "nobody": must be a team of this platform \(platform-admins, developers, itg-owners/.test(e.message),
        );
    });
});
