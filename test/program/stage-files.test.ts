/** The generated files of a stage, and the stage and merge-request config parsers. */
import * as assert from "node:assert/strict";

import * as YAML from "yaml";

import { mrExpiry, parseMrConfig, parseStageConfig } from "../../src/config/stage";
import { ValidationError } from "../../src/config/validate";
import type { BundleJson } from "../../src/release/bundle";
import { commitMessage, imageValues, parseLedger, stageFiles } from "../../src/program/stage/files";

function bundle(app: string, version: string, image = `registry.example/${app}:${version}`): BundleJson {
    return {
        schema: 1,
        app,
        version,
        image,
        source: { commit: "abcdef0" },
        chart: { name: `${app}-chart`, version: "0.3.0" },
        stages: ["itg"],
        files: {},
        digest: `${app}${version}`.padEnd(64, "0"),
    };
}
const rel = (version: string) => ({ version, requestId: "r-1", requester: "ci", promotedAt: "2026-11-25T10:00:00Z" });

describe("stage files", function () {
    const releases = { web: rel("1.0.0"), api: rel("2.0.0") };
    const found = {
        web: { bundle: bundle("web", "1.0.0"), values: "replicas: 2\nimage:\n  pullPolicy: Always\n  tag: should-be-overridden\n" },
        api: { bundle: bundle("api", "2.0.0", `registry.example/api@sha256:${"b".repeat(64)}`), values: "{}\n" },
    };
    const files = stageFiles("itg", releases, found);

    it("the umbrella chart has one dependency per app, sorted, aliased to the app, from its release folder", function () {
        assert.deepEqual(YAML.parse(files["environments/itg/Chart.yaml"]).dependencies, [
            { name: "api-chart", alias: "api", version: "0.3.0", repository: "file://../../releases/api/2.0.0/chart" },
            { name: "web-chart", alias: "web", version: "0.3.0", repository: "file://../../releases/web/1.0.0/chart" },
        ]);
    });

    it("values come from the stage's values file; the image comes from the bundle and wins", function () {
        const v = YAML.parse(files["environments/itg/values.yaml"]);
        assert.deepEqual(v.web, { replicas: 2, image: { pullPolicy: "Always", repository: "registry.example/web", tag: "1.0.0" } });
        assert.deepEqual(v.api.image, { repository: "registry.example/api", digest: `sha256:${"b".repeat(64)}` });
    });

    it("the ledger is valid JSON with one line per app", function () {
        const ledger = parseLedger(files["environments/itg/releases.json"]);
        assert.deepEqual(Object.keys(ledger), ["api", "web"]);
        assert.equal(ledger.web.bundleDigest, bundle("web", "1.0.0").digest);
        const lines = files["environments/itg/releases.json"].split("\n");
        assert.equal(lines.filter((l) => l.includes('"web"')).length, 1);
    });

    it("changing one app's release changes no line that mentions another app", function () {
        const next = stageFiles("itg", { ...releases, web: rel("1.1.0") }, { ...found, web: { ...found.web, bundle: bundle("web", "1.1.0") } });
        for (const file of Object.keys(files)) {
            const before = new Set(files[file].split("\n"));
            const after = new Set(next[file].split("\n"));
            const removed = [...before].filter((l) => !after.has(l));
            for (const l of removed) assert.doesNotMatch(l, /api/, `${file}: api line changed: ${l}`);
        }
    });

    it("an empty stage renders nothing", function () {
        const empty = stageFiles("tst", {}, {});
        assert.match(empty["environments/tst/Chart.yaml"], /^dependencies: \[\]$/m);
        assert.deepEqual(YAML.parse(empty["environments/tst/values.yaml"]), {});
        assert.deepEqual(parseLedger(empty["environments/tst/releases.json"]), {});
    });

    it("splits image references into repository, tag and digest", function () {
        assert.deepEqual(imageValues("registry.example:5000/team/app:1.2.3"), { repository: "registry.example:5000/team/app", tag: "1.2.3" });
        assert.deepEqual(imageValues(`r.example/app:1.2.3@sha256:${"c".repeat(64)}`), { repository: "r.example/app", tag: "1.2.3", digest: `sha256:${"c".repeat(64)}` });
    });

    it("commit messages name app, version, stage and request, with provenance trailers", function () {
        assert.equal(
            commitMessage("prod", { kind: "rollback", app: "web", version: "1.0.0", requestId: "r-9", requester: "alice", reason: "errors up", overrideOrder: true }),
            "Roll back web 1.0.0 to prod (request r-9)\n\nerrors up\n\nRequester: alice\nRequest-Id: r-9\nOverride: stage order overridden by the requester\n",
        );
    });
});

describe("stage and merge-request configuration", function () {
    it("reads a stage's releases and change", function () {
        const cfg = parseStageConfig({ stage: { releases: { web: rel("1.0.0") }, change: { kind: "promote", app: "web", version: "1.0.0", requestId: "r-1", requester: "ci" } } });
        assert.equal(cfg.releases.web.version, "1.0.0");
        assert.equal(cfg.platformStack, "platform");
    });

    const bad: [string, Record<string, unknown>, string[]][] = [
        ["a bad app name", { stage: { releases: { "Web!": rel("1.0.0") } } }, ["gitops-stages:stage.releases.Web!: app name must be a DNS label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters"]],
        ["a bad version", { stage: { releases: { web: rel("1.0") } } }, ['gitops-stages:stage.releases.web.version = "1.0": must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)']],
        ["a local time", { stage: { releases: { web: { ...rel("1.0.0"), promotedAt: "2026-11-25 10:00" } } } }, ['gitops-stages:stage.releases.web.promotedAt = "2026-11-25 10:00": must be an ISO time in UTC such as 2026-01-31T12:00:00Z']],
        ["an unknown key", { stages: {} }, ["gitops-stages:stages: is not a known setting of a stage stack (known: stage, platformStack, opsRepo)"]],
    ];
    for (const [title, raw, lines] of bad) {
        it(`refuses ${title}`, function () {
            assert.throws(() => parseStageConfig(raw), (e: unknown) => e instanceof ValidationError && JSON.stringify(e.message.split("\n").slice(1).map((l) => l.trim())) === JSON.stringify(lines));
        });
    }

    it("a merge-request stack's number must match its name; the default TTL is 72 hours", function () {
        const raw = { mr: { number: 7, app: "web", bundle: "b", image: "r/web:mr-7", sourceCommit: "abcdef0", createdAt: "2026-11-25T10:00:00Z" } };
        const cfg = parseMrConfig(raw, "mr-7", "/p");
        assert.equal(cfg.ttlHours, 72);
        assert.equal(cfg.bundle, "/p/b");
        assert.equal(mrExpiry(cfg), "2026-11-28T10:00:00Z");
        assert.throws(() => parseMrConfig(raw, "mr-8", "/p"), /gitops-stages:mr\.number = 7: must match the stack name \(mr-8\)/);
    });
});
