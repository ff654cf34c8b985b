/**
 * What the dev repo's CI runs, as it would run it: the generated workflows checked by actionlint
 * (built by the toolchain), and the seeded starters `ci/build.sh` and `ci/integration-test.sh` run
 * with bash in a copy of a dev repo, their bundle read back by the runner's own bundle reader.
 */
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

import { parsePlatformConfig } from "../../src/config/platform";
import { devSkeleton } from "../../src/program/ops/skeleton";
import { CI_PATHS, ciClientScript, opsValidateWorkflow } from "../../src/program/ops/workflows";
import { buildBundle, readBundleDir } from "../../src/release/bundle";
import { testToolchain } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";

const run = promisify(execFile);

describe("the dev repo's CI as it runs", function () {
    let dir: string;
    before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-dev-ci-"))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("actionlint finds nothing in any generated workflow (default pipeline, a first stage synced by hand, manual then automatic stages, the ops repo's validate)", async function () {
        const tc = await testToolchain();
        const actionlint = tc.components.find((c) => c.component.name === "actionlint")?.path;
        assert.ok(actionlint && fs.existsSync(actionlint), "the toolchain did not provide actionlint: run `npm run toolchain -- --set tests`");
        const configs = {
            default: parsePlatformConfig({}, { projectDir: "/p", stack: "platform" }),
            manualFirst: parsePlatformConfig({ stages: [{ name: "qa", sync: "manual" }, { name: "prod" }] }, { projectDir: "/p", stack: "platform" }),
            mixed: parsePlatformConfig({ stages: [{ name: "qa", sync: "manual" }, { name: "itg", sync: "automatic" }, { name: "prod" }] }, { projectDir: "/p", stack: "platform" }),
        };
        const files: string[] = [];
        for (const [name, cfg] of Object.entries(configs)) {
            const f = path.join(dir, `${name}.yml`);
            fs.writeFileSync(f, devSkeleton(cfg, ciClientScript())[CI_PATHS.workflow]);
            files.push(f);
        }
        const validate = path.join(dir, "validate.yml");
        fs.writeFileSync(validate, opsValidateWorkflow());
        assert.ok(fs.readFileSync(validate, "utf8").includes("name: validate"), "the ops skeleton has no validate workflow");
        files.push(validate);
        // actionlint exits 1 with one line per finding; -shellcheck= : its shellcheck pass needs a
        // shellcheck binary, which the scripts' own test below stands in for by running them.
        const r = await run(actionlint, ["-no-color", "-shellcheck=", "-pyflakes=", ...files]).catch((e: { code: number; stdout: string; stderr: string }) => e);
        assert.equal("code" in r ? r.code : 0, 0, `actionlint:\n${r.stdout}${r.stderr}`);
        // And it does find a broken one: the check is live.
        const broken = path.join(dir, "broken.yml");
        fs.writeFileSync(broken, devSkeleton(configs.default, ciClientScript())[CI_PATHS.workflow].replace("runs-on: ubuntu-latest", "runs-on: ${{ matrix.nope }}"));
        const bad = await run(actionlint, ["-no-color", "-shellcheck=", "-pyflakes=", broken]).catch((e: { code: number; stdout: string }) => e);
        assert.equal("code" in bad ? bad.code : 0, 1);
        assert.match(bad.stdout, /matrix/);
    });

    it("ci/build.sh builds the release bundle the runner accepts; an MR build is a prerelease of the same version; bad input says what is missing", async function () {
        const repo = path.join(dir, "dev");
        const skeleton = devSkeleton(parsePlatformConfig({}, { projectDir: "/p", stack: "platform" }), ciClientScript());
        for (const [p, content] of Object.entries(skeleton)) {
            fs.mkdirSync(path.dirname(path.join(repo, p)), { recursive: true });
            fs.writeFileSync(path.join(repo, p), content);
        }
        // The app's chart and values where the starter expects them.
        const sample = makeBundleDir(dir, "shop");
        fs.cpSync(path.join(sample, "chart"), path.join(repo, "deploy", "chart"), { recursive: true });
        fs.cpSync(path.join(sample, "values"), path.join(repo, "deploy", "values"), { recursive: true });
        fs.writeFileSync(path.join(repo, "deploy", "chart", "Chart.yaml"), 'apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: "2.3.4"\n');
        await run("git", ["init", "-q", "-b", "main", repo]);
        await run("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "add", "-A"]);
        await run("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "app"]);
        const env: NodeJS.ProcessEnv = { ...process.env, GITHUB_REPOSITORY: "Acme/Shop" };
        delete env.IMAGE;

        const release = await run("bash", ["ci/build.sh", "release"], { cwd: repo, env });
        assert.match(release.stdout, /^ci\/build\.sh: release 2\.3\.4, image ghcr\.io\/acme\/shop:2\.3\.4, bundle build\/bundle/m);
        assert.equal(fs.readFileSync(path.join(repo, "build", "version"), "utf8"), "2.3.4\n");
        const image = fs.readFileSync(path.join(repo, "build", "image"), "utf8").trim();
        // What `stages ci promote --bundle build/bundle --image ...` publishes: the runner's own checks pass.
        const bundle = buildBundle({ app: "shop", version: "2.3.4", image, source: { commit: "0123456789abcdef0123456789abcdef01234567" } }, readBundleDir(path.join(repo, "build", "bundle")));
        assert.deepEqual([...bundle.stages].sort(), ["itg", "mr", "perf", "prod", "tst"]);
        assert.equal(bundle.chart.name, "shop");

        const mr = await run("bash", ["ci/build.sh", "mr-17"], { cwd: repo, env: { ...env, IMAGE: "registry.example/shop@sha256:" + "b".repeat(64) } });
        assert.match(fs.readFileSync(path.join(repo, "build", "version"), "utf8"), /^2\.3\.4-mr-17\.g[0-9a-f]{12}\n$/);
        assert.match(mr.stdout, /image registry\.example\/shop@sha256:b{64}/);

        // As people write it: a leading v, a comment, build metadata; an MR build is still a prerelease of the core.
        fs.writeFileSync(path.join(repo, "deploy", "chart", "Chart.yaml"), "apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: v2.4.0+build.7 # bumped by release-please\n");
        await run("bash", ["ci/build.sh", "release"], { cwd: repo, env });
        assert.equal(fs.readFileSync(path.join(repo, "build", "version"), "utf8"), "2.4.0+build.7\n");
        assert.equal(fs.readFileSync(path.join(repo, "build", "image"), "utf8"), "ghcr.io/acme/shop:2.4.0_build.7\n");
        await run("bash", ["ci/build.sh", "mr-3"], { cwd: repo, env });
        assert.match(fs.readFileSync(path.join(repo, "build", "version"), "utf8"), /^2\.4\.0-mr-3\.g[0-9a-f]{12}\n$/);

        const usage = await run("bash", ["ci/build.sh", "nightly"], { cwd: repo, env }).catch((e: { code: number; stderr: string }) => e);
        assert.equal("code" in usage ? usage.code : 0, 2);
        fs.rmSync(path.join(repo, "deploy", "chart"), { recursive: true });
        const noChart = await run("bash", ["ci/build.sh", "release"], { cwd: repo, env }).catch((e: { code: number; stderr: string }) => e);
        assert.equal("code" in noChart ? noChart.code : 0, 1);
        assert.match(noChart.stderr, /no Helm chart at deploy\/chart\/Chart\.yaml/);
    });

    it("ci/integration-test.sh sends its smoke request to SMOKE_URL, and without one says so and passes", async function () {
        const script = path.join(dir, "integration-test.sh");
        fs.writeFileSync(script, devSkeleton(parsePlatformConfig({}, { projectDir: "/p", stack: "platform" }), ciClientScript())[CI_PATHS.integrationTest]);
        const hits: string[] = [];
        const server = http.createServer((req, res) => (hits.push(req.url ?? ""), res.writeHead(200).end("ok")));
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        try {
            const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
            const ok = await run("bash", [script, "itg"], { env: { ...process.env, SMOKE_URL: url } });
            assert.match(ok.stdout, /itg: .*\/healthz answered 2xx/);
            assert.deepEqual(hits, ["/healthz"]);
            // A stage that answers 500: the script fails, saying what it saw (one attempt, no waiting).
            const broken = http.createServer((_req, res) => res.writeHead(500).end("no"));
            await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
            const bad = await run("bash", [script, "itg"], { env: { ...process.env, SMOKE_ATTEMPTS: "1", SMOKE_URL: `http://127.0.0.1:${(broken.address() as AddressInfo).port}/` } }).catch((e: { code: number; stderr: string }) => e);
            await new Promise<void>((r) => broken.close(() => r()));
            assert.equal("code" in bad ? bad.code : 0, 1);
            assert.match(bad.stderr, /did not answer 2xx in 1 attempts/);
            const env = { ...process.env };
            delete env.SMOKE_URL;
            const none = await run("bash", [script, "tst"], { env });
            assert.match(none.stdout, /^::warning::.*no SMOKE_URL for stage tst/);
            assert.equal(hits.length, 1);
        } finally {
            await new Promise<void>((r) => server.close(() => r()));
        }
    });
});
