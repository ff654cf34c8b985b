import * as assert from "node:assert/strict";

import { ARGOCD_CHART, DEFAULT_STAGES, parsePlatformConfig } from "../../src/config/platform";
import { ValidationError } from "../../src/config/validate";

const ctx = { projectDir: "/srv/project", stack: "platform" };

describe("platform configuration", function () {
    it("an empty config gives the default pipeline on the embedded defaults", function () {
        const cfg = parsePlatformConfig({}, ctx);
        assert.deepEqual(cfg.gitHost, { kind: "local", path: "/srv/project/.gitops-stages/git", serveUrl: undefined });
        assert.deepEqual(cfg.stages, DEFAULT_STAGES);
        assert.deepEqual(
            cfg.stages.map((s) => [s.name, s.sync, s.requireReview, s.queue]),
            [
                ["itg", "automatic", false, "coalesce"],
                ["tst", "manual", false, "fifo"],
                ["perf", "manual", true, "fifo"],
                ["prod", "manual", true, "fifo"],
            ],
        );
        assert.deepEqual(cfg.argocd.chart, ARGOCD_CHART);
        assert.equal(cfg.cluster.kubeconfig, undefined, "no cluster configured means render mode");
        assert.equal(cfg.cluster.renderDir, "/srv/project/.gitops-stages/rendered/platform");
        assert.deepEqual([cfg.repositories.dev.name, cfg.repositories.ops.name], ["app-dev", "app-ops"]);
    });

    it("a stage may not take a name the program gives the platform's role (platform, platform-*)", function () {
        assert.throws(
            () => parsePlatformConfig({ stages: [{ name: "itg" }, { name: "platform-x" }] }, ctx),
            (e: ValidationError) => e.message.includes('gitops-stages:stages[1].name = "platform-x": must not be "platform" or start with "platform-" (names of the bootstrap stack)'),
        );
    });

    it("sync windows are checked as Argo CD reads them: names and descriptors pass, a wrong zone or field is named", function () {
        const windows = (w: Record<string, unknown>) => parsePlatformConfig({ stages: [{ name: "prod", syncWindows: [{ kind: "deny", duration: "1h30m", ...w }] }] }, ctx);
        assert.equal(windows({ schedule: "0 18 * * FRI", timeZone: "Europe/Paris" }).stages[0].syncWindows[0].schedule, "0 18 * * FRI");
        assert.equal(windows({ schedule: "0 0 ? * *" }).stages[0].syncWindows[0].duration, "1h30m");
        assert.throws(() => windows({ schedule: "@daily" }), (e: ValidationError) => e.message.includes('syncWindows[0].schedule = "@daily": must be a cron schedule Argo CD accepts'));
        assert.throws(
            () => windows({ schedule: "0 18 * * 5", timeZone: "Europe/Pari" }),
            (e: ValidationError) => e.message.includes('gitops-stages:stages[0].syncWindows[0].timeZone = "Europe/Pari": must be an IANA time zone, spelled as in the tz database, such as UTC or Europe/Paris'),
        );
        assert.throws(
            () => windows({ schedule: "0 25 * * *", duration: "1d" }),
            (e: ValidationError) =>
                e.message.includes('gitops-stages:stages[0].syncWindows[0].schedule = "0 25 * * *": must be a cron schedule Argo CD accepts') &&
                e.message.includes('gitops-stages:stages[0].syncWindows[0].duration = "1d": must be a duration such as'),
        );
    });

    it("a kubeconfig path ~/... is in the home folder, as the README's example means it", function () {
        const cfg = parsePlatformConfig({ cluster: { kubeconfig: "~/.kube/prod-eu.yaml" } }, { ...ctx, homeDir: "/home/olivia" });
        assert.equal(cfg.cluster.kubeconfig, "/home/olivia/.kube/prod-eu.yaml");
        assert.equal(parsePlatformConfig({ cluster: { kubeconfig: "kube/config" } }, ctx).cluster.kubeconfig, "/srv/project/kube/config");
    });

    it("reads a full GitHub configuration", function () {
        const cfg = parsePlatformConfig(
            {
                gitHost: { kind: "github", owner: "acme", runnerActor: "/acme-gitops" },
                repositories: { dev: { name: "shop" }, ops: { name: "shop-ops", visibility: "internal" } },
                stages: [
                    { name: "itg", owners: ["qa"] },
                    { name: "prod", owners: ["sre", "release-managers"], requireReview: true, syncWindows: [{ kind: "deny", schedule: "0 18 * * 5", duration: "60h", timeZone: "Europe/Paris" }] },
                ],
                argocd: { url: "https://cd.acme.example", chart: { oci: "oci://registry.acme.example/charts/argo-cd", version: "9.1.0" } },
                cluster: { kubeconfig: "kube/config", context: "prod-eu" },
            },
            ctx,
        );
        assert.deepEqual(cfg.gitHost, { kind: "github", owner: "acme", baseUrl: undefined, runnerActor: "/acme-gitops" });
        assert.equal(cfg.stages[0].sync, "automatic");
        assert.equal(cfg.stages[1].sync, "manual");
        assert.deepEqual(cfg.stages[1].syncWindows[0], { kind: "deny", schedule: "0 18 * * 5", duration: "60h", timeZone: "Europe/Paris", manualSync: false });
        assert.deepEqual(cfg.stages[1].freezeWindows, []);
        assert.equal(cfg.stages[1].requireApproval, false);
        assert.deepEqual(cfg.argocd.chart, { kind: "oci", reference: "oci://registry.acme.example/charts/argo-cd", version: "9.1.0" });
        assert.equal(cfg.cluster.kubeconfig, "/srv/project/kube/config");
        assert.equal(cfg.repositories.ops.visibility, "internal");
    });

    // Each bad config, with the exact problem lines it must produce.
    const bad: [string, Record<string, unknown>, string[]][] = [
        ["unknown top-level key", { stage: [] }, ["gitops-stages:stage: is not a known setting (known: gitHost, repositories, teams, stages, argocd, sealedSecrets, cluster, runner)"]],
        ["unknown git host", { gitHost: { kind: "gitlab" } }, ['gitops-stages:gitHost.kind = "gitlab": must be one of "local", "github"']],
        ["github without owner or runner", { gitHost: { kind: "github" } }, ["gitops-stages:gitHost.owner: is required", "gitops-stages:gitHost.runnerActor: is required"]],
        [
            "runner actor that branch protection cannot name",
            { gitHost: { kind: "github", owner: "acme", runnerActor: "acme-bot" } },
            ['gitops-stages:gitHost.runnerActor = "acme-bot": must be "/<login>" of the runner\'s machine user or the node ID of its GitHub App (gh api /apps/<slug> --jq .node_id), as branch protection names bypass actors'],
        ],
        [
            "ops requiring a check the runner cannot report",
            { repositories: { ops: { requiredChecks: ["validate", "lint"] } } },
            ['gitops-stages:repositories.ops.requiredChecks = ["validate","lint"]: must be ["validate"] on the ops repo: the runner reports only that check on its own commits, so any other would refuse every promotion'],
        ],
        ["local with an owner", { gitHost: { owner: "acme" } }, ['gitops-stages:gitHost.owner = "acme": is only used with kind "github"']],
        ["bad repository name", { repositories: { ops: { name: "ops repo" } } }, ['gitops-stages:repositories.ops.name = "ops repo": must be a GitHub name: letters, digits, \'.\', \'_\' and \'-\', at most 100 characters']],
        ["same name twice", { repositories: { dev: { name: "x" }, ops: { name: "x" } } }, ['gitops-stages:repositories.ops.name = "x": must differ from repositories.dev.name']],
        ["stage name not a DNS label", { stages: [{ name: "Prod_1" }] }, ['gitops-stages:stages[0].name = "Prod_1": must be a DNS label: lowercase letters, digits and \'-\', starting with a letter, ending with a letter or digit, at most 63 characters']],
        ["duplicate stage", { stages: [{ name: "itg" }, { name: "itg" }] }, ['gitops-stages:stages[1].name = "itg": must be unique (also stages[0].name)']],
        ["reserved mr- prefix", { stages: [{ name: "mr-1" }] }, ['gitops-stages:stages[0].name = "mr-1": must not start with "mr-" (reserved for merge-request stacks)']],
        ["no stages", { stages: [] }, ["gitops-stages:stages = []: must list at least one stage"]],
        ["stages not a list", { stages: "itg,prod" }, ['gitops-stages:stages = "itg,prod": must be a list']],
        ["bad sync mode", { stages: [{ name: "itg", sync: "auto" }] }, ['gitops-stages:stages[0].sync = "auto": must be one of "automatic", "manual"']],
        ["unknown stage setting", { stages: [{ name: "itg", autoSync: true }] }, ["gitops-stages:stages[0].autoSync: is not a known setting (known: name, sync, owners, namespaces, requireReview, queue, syncWindows, freezeWindows, requireApproval, annotations)"]],
        ["shared namespace", { stages: [{ name: "a", namespaces: ["apps"] }, { name: "b", namespaces: ["apps"] }] }, ['gitops-stages:stages[1].namespaces[0] = "apps": must belong to one stage only (also used by a)']],
        ["platform namespace", { stages: [{ name: "a", namespaces: ["argocd"] }] }, ['gitops-stages:stages[0].namespaces[0] = "argocd": must not be a platform namespace (Argo CD or Sealed Secrets)']],
        ["bad sync window", { stages: [{ name: "a", syncWindows: [{ schedule: "daily", duration: "1 day" }] }] }, [
            'gitops-stages:stages[0].syncWindows[0].schedule = "daily": must be a cron schedule Argo CD accepts: 5 fields (minute hour day-of-month month day-of-week) of numbers, names such as FRI or JAN, ranges, lists and steps (day of week 0-6; no descriptors such as @daily, no L, W or #)',
            'gitops-stages:stages[0].syncWindows[0].duration = "1 day": must be a duration such as "1h", "30m" or "1h30m"',
        ]],
        ["chart with two sources", { argocd: { chart: { path: "charts/argo", repository: "https://x" } } }, ['gitops-stages:argocd.chart = {"path":"charts/argo","repository":"https://x"}: must set exactly one of "repository" (with "name" and "version"), "oci" (with "version") or "path"']],
        ["chart version not semver", { argocd: { chart: { repository: "https://mirror.example/argo", name: "argo-cd", version: "v9.1" } } }, ['gitops-stages:argocd.chart.version = "v9.1": must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)']],
        ["argocd url not http", { argocd: { url: "ftp://cd" } }, ['gitops-stages:argocd.url = "ftp://cd": must be an http:// or https:// URL']],
        ["context without kubeconfig", { cluster: { context: "prod" } }, ['gitops-stages:cluster.context = "prod": needs cluster.kubeconfig']],
        ["wrong types", { cluster: { skipAwait: "yes" }, teams: { developers: 7 } }, ['gitops-stages:teams.developers = 7: must be a string', 'gitops-stages:cluster.skipAwait = "yes": must be true or false']],
    ];
    for (const [title, raw, lines] of bad) {
        it(`refuses ${title}`, function () {
            assert.throws(
                () => parsePlatformConfig(raw, ctx),
                (e: unknown) => {
                    assert.ok(e instanceof ValidationError);
                    const got = e.message.split("\n").slice(1).map((l) => l.trim());
                    assert.deepEqual(got, lines);
                    assert.equal(e.message.split("\n")[0], `invalid platform configuration (${lines.length} problem${lines.length === 1 ? "" : "s"}):`);
                    return true;
                },
            );
        });
    }

    it("takes a GitHub App's node ID as the runner actor (legacy and current forms)", function () {
        for (const actor of ["MDM6QXBwMTIzNDU2", "A_kwHOAbcdEf8"]) {
            const cfg = parsePlatformConfig({ gitHost: { kind: "github", owner: "acme", runnerActor: actor } }, ctx);
            assert.equal(cfg.gitHost.kind === "github" && cfg.gitHost.runnerActor, actor);
        }
    });

    it("lists problems of shape and of the rules across keys of one section together, judging no default", function () {
        assert.throws(
            () => parsePlatformConfig({ gitHost: { kind: "github", owner: "acme corp" }, repositories: { dev: { name: "app-ops" }, ops: { name: "bad name" } }, stages: [{ name: "itg" }, { name: "Bad" }, { name: "itg" }] }, ctx),
            (e: unknown) => {
                assert.ok(e instanceof ValidationError);
                assert.deepEqual(e.message.split("\n").slice(1).map((l) => l.trim()), [
                    'gitops-stages:gitHost.owner = "acme corp": must be a GitHub name: letters, digits, \'.\', \'_\' and \'-\', at most 100 characters',
                    'gitops-stages:repositories.ops.name = "bad name": must be a GitHub name: letters, digits, \'.\', \'_\' and \'-\', at most 100 characters',
                    "gitops-stages:stages[1].name = \"Bad\": must be a DNS label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters",
                    "gitops-stages:gitHost.runnerActor: is required",
                    'gitops-stages:stages[2].name = "itg": must be unique (also stages[0].name)',
                ]);
                return true;
            },
        );
    });

    it("reports every problem at once", function () {
        assert.throws(
            () => parsePlatformConfig({ gitHost: { kind: "github", runnerActor: "/acme-bot" }, stages: [{ name: "A" }], argocd: { url: 3 } }, ctx),
            (e: unknown) => e instanceof ValidationError && e.problems.length === 3,
        );
    });
});
