/**
 * The resolver against the real toolchain cache and real executables; a fake CLI appears only
 * where the case is about a CLI we cannot have (one too old).
 */
import * as assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

import { which } from "../../src/toolchain/exec";
import { ToolchainError, engineEnv, ensureToolchain, findGo, registerPlugins } from "../../src/toolchain/resolve";
import { repoRoot, testToolchain } from "../support/engine";

const execFileAsync = promisify(execFile);

/** Runs `fn` with a fresh temporary folder and removes it afterwards. */
async function inTempDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    try {
        await fn(dir);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

function listTree(dir: string): string[] {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir, { recursive: true }).map(String).sort();
}

describe("toolchain resolver", function () {
    before(async function () {
        // Makes sure the shared cache is populated, building on a cold machine.
        await testToolchain();
    });

    it("reuses the cache: a second resolution builds nothing", async function () {
        const lines: string[] = [];
        const tc = await ensureToolchain({ projectRoot: repoRoot, log: (l) => lines.push(l), ignorePath: true });
        assert.deepEqual(
            tc.components.filter((c) => c.origin !== "cache").map((c) => `${c.component.name}:${c.origin}`),
            [],
        );
        assert.equal(lines.length, tc.components.length, "one progress line per component");
        for (const c of tc.components) {
            assert.ok(fs.existsSync(c.path), `${c.path} missing`);
            assert.match(lines.find((l) => l.includes(` ${c.component.name} `)) ?? "", /from cache/);
        }
    });

    it("says what to install when there is neither a Pulumi CLI nor Go, and leaves no partial cache entry", async function () {
        await inTempDir("gitops-stages-nocache-", async (cacheDir) => {
            await assert.rejects(
                ensureToolchain({ projectRoot: repoRoot, cacheDir, env: { PATH: "/nonexistent", HOME: cacheDir }, log: () => undefined }),
                (e: unknown) => {
                    assert.ok(e instanceof ToolchainError);
                    assert.equal(
                        e.message,
                        "cannot provide pulumi 3.248.0: no Pulumi CLI 3.248.0 or later was found (set PULUMI_CLI or put pulumi on PATH) " +
                            "and no Go toolchain is installed to build one. Install the Pulumi CLI (https://www.pulumi.com/docs/install/) " +
                            "or Go 1.25 or later.",
                    );
                    return true;
                },
            );
            assert.deepEqual(listTree(cacheDir).filter((p) => p.includes(".partial")), []);
        });
    });

    it("uses a Pulumi CLI found on PATH, and plugins already installed in PULUMI_HOME", async function () {
        const shared = await testToolchain();
        await inTempDir("gitops-stages-path-cli-", async (dir) => {
            const binDir = path.join(dir, "bin");
            fs.mkdirSync(binDir);
            const cli = shared.components.find((c) => c.component.role === "cli")!;
            fs.copyFileSync(cli.path, path.join(binDir, "pulumi"));
            fs.chmodSync(path.join(binDir, "pulumi"), 0o755);
            const home = path.join(dir, "home");
            registerPlugins(home, shared);
            const tc = await ensureToolchain({
                projectRoot: repoRoot,
                env: { ...process.env, PATH: `${binDir}${path.delimiter}${process.env.PATH}`, PULUMI_HOME: home },
                log: () => undefined,
            });
            const origin = Object.fromEntries(tc.components.map((c) => [c.component.name, c.origin]));
            assert.equal(origin.pulumi, "PATH");
            assert.equal(origin.kubernetes, "PULUMI_HOME");
            assert.equal(origin.random, "PULUMI_HOME");
            // A bare CLI without its language host beside it: ours comes from the cache.
            assert.equal(origin["language-nodejs"], "cache");
        });
    });

    it("knows an installed CLI's version from its answer, not the pin", async function () {
        await inTempDir("gitops-stages-cli-version-", async (dir) => {
            const fake = path.join(dir, "pulumi");
            fs.writeFileSync(fake, '#!/bin/sh\ncase "$1" in version) echo "pulumi v3.251.7";; plugin) echo "[]";; esac\n', { mode: 0o755 });
            const tc = await ensureToolchain({ projectRoot: repoRoot, env: { ...process.env, PULUMI_CLI: fake }, log: () => undefined });
            assert.equal(tc.components.find((c) => c.component.role === "cli")?.origin, "PATH");
            assert.equal(tc.cliVersion, "3.251.7");
        });
    });

    it("keeps Go's version per go executable and setting, asked in the cache folder; a go that is a script is asked every time", async function () {
        const go = which("go", process.env.PATH);
        assert.ok(go, "this test needs Go on PATH (the toolchain's builds do too)");
        await inTempDir("gitops-stages-go-version-", async (dir) => {
            const cache = path.join(dir, "cache");
            const real = execFileSync(go!, ["env", "GOVERSION"], { encoding: "utf8" }).trim();
            assert.equal((await findGo(process.env, cache))?.version, real);
            const memo = path.join(cache, "go-version.json");
            const kept = JSON.parse(fs.readFileSync(memo, "utf8")) as { key: string; version: string };
            assert.equal(kept.version, real);
            // The next call reads the memo without asking: a planted answer comes back.
            fs.writeFileSync(memo, JSON.stringify({ ...kept, version: "go0.0-planted" }));
            assert.equal((await findGo(process.env, cache))?.version, "go0.0-planted");
            // Another setting is another key: asked again.
            assert.equal((await findGo({ ...process.env, GOTOOLCHAIN: "local" }, cache))?.version, real);
            // A version manager's shim: the same file whatever it runs.
            const bin = path.join(dir, "bin");
            fs.mkdirSync(bin);
            fs.writeFileSync(path.join(bin, "go"), "#!/bin/sh\necho go9.9.1\n", { mode: 0o755 });
            const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` };
            assert.equal((await findGo(env, cache))?.version, "go9.9.1");
            fs.writeFileSync(path.join(bin, "go"), "#!/bin/sh\necho go9.9.2\n", { mode: 0o755 });
            assert.equal((await findGo(env, cache))?.version, "go9.9.2");
        });
    });

    it("refuses a PULUMI_CLI that is too old, naming the version it needs", async function () {
        await inTempDir("gitops-stages-old-cli-", async (dir) => {
            const fake = path.join(dir, "pulumi");
            fs.writeFileSync(fake, "#!/bin/sh\necho v3.100.0\n", { mode: 0o755 });
            await assert.rejects(
                ensureToolchain({ projectRoot: repoRoot, env: { ...process.env, PULUMI_CLI: fake }, log: () => undefined }),
                { name: "ToolchainError", message: `PULUMI_CLI=${fake} reports version v3.100.0; gitops-stages needs 3.248.0 or later` },
            );
        });
    });

    it("registers plugins under the exact versions the SDKs request and leaves installed ones alone", async function () {
        const tc = await testToolchain();
        await inTempDir("gitops-stages-home-", async (home) => {
            const preinstalled = path.join(home, "plugins", "resource-random-v4.21.2");
            fs.mkdirSync(preinstalled, { recursive: true });
            fs.writeFileSync(path.join(preinstalled, "pulumi-resource-random"), "official");
            registerPlugins(home, tc);
            assert.deepEqual(fs.readdirSync(path.join(home, "plugins")).sort(), [
                "analyzer-policy-v3.248.0",
                "language-nodejs-v3.248.0",
                "resource-kubernetes-v4.34.2",
                "resource-pulumi-nodejs-v3.248.0",
                "resource-random-v4.21.2",
            ]);
            assert.deepEqual(fs.readdirSync(tc.binDir), ["pulumi"], "only the CLI goes on PATH");
            assert.equal(fs.readFileSync(path.join(preinstalled, "pulumi-resource-random"), "utf8"), "official");
            const k8s = path.join(home, "plugins", "resource-kubernetes-v4.34.2", "pulumi-resource-kubernetes");
            assert.equal(fs.realpathSync(k8s), fs.realpathSync(tc.components.find((c) => c.component.name === "kubernetes")!.path));
        });
    });

    it("`stages toolchain --json` resolves the engine set by default, and says so", async function () {
        const { stdout } = await execFileAsync(process.execPath, [path.join(repoRoot, "bin", "stages"), "toolchain", "--json"], { env: { ...process.env, PULUMI_CLI: "" } });
        const out = JSON.parse(stdout) as { set: string; components: { name: string }[] };
        assert.equal(out.set, "engine");
        assert.deepEqual(out.components.map((c) => c.name), ["pulumi", "language-nodejs", "dynamic-provider-shim", "policy-shim", "kubernetes", "random"]);
        const bad = await execFileAsync(process.execPath, [path.join(repoRoot, "bin", "stages"), "toolchain", "--set", "all"]).then(
            () => undefined,
            (e: { code: number; stderr: string }) => e,
        );
        assert.equal(bad?.code, 2);
        assert.equal(bad?.stderr, 'stages toolchain: --set: must be one of engine, tests, got "all"\n');
    });

    it("`stages toolchain --set tests --json` lists every component with its version and origin", async function () {
        const { stdout } = await execFileAsync(process.execPath, [path.join(repoRoot, "bin", "stages"), "toolchain", "--set", "tests", "--json"], {
            env: { ...process.env, PULUMI_CLI: "" },
        });
        const out = JSON.parse(stdout) as { set: string; components: { name: string; version: string; origin: string; path: string }[] };
        assert.equal(out.set, "tests");
        assert.deepEqual(
            out.components.map((c) => [c.name, c.version]),
            [
                ["pulumi", "3.248.0"],
                ["language-nodejs", "3.248.0"],
                ["dynamic-provider-shim", "3.248.0"],
                ["policy-shim", "3.248.0"],
                ["kubernetes", "4.34.2"],
                ["random", "4.21.2"],
                ["kubeseal", "0.27.1"],
                ["sealed-secrets-controller", "0.27.1"],
                ["kube-apiserver", "1.36.3"],
                ["kube-controller-manager", "1.36.3"],
                ["etcd", "3.6.16"],
                ["argocd", "3.5.7"],
                ["helm", "4.2.1"],
                ["actionlint", "1.7.12"],
            ],
        );
        for (const c of out.components) assert.ok(["PATH", "PULUMI_HOME", "cache", "built"].includes(c.origin), c.origin);
    });

    it("Argo CD and Helm of the tests set run and report their pinned versions", async function () {
        const tc = await testToolchain();
        const tool = (name: string) => tc.components.find((c) => c.component.name === name)!.path;
        const argocd = await execFileAsync(tool("argocd"), ["version", "--client", "--short"], { env: { ...process.env, HOME: os.tmpdir() } });
        assert.match(argocd.stdout, /^argocd: v3\.5\.7\+/m);
        const helm = await execFileAsync(tool("helm"), ["version", "--short"], { env: { ...process.env, HELM_CACHE_HOME: os.tmpdir(), HELM_CONFIG_HOME: os.tmpdir(), HELM_DATA_HOME: os.tmpdir() } });
        assert.match(helm.stdout, /^v4\.2\.1\b/);
    });

    it("the engine's environment drops what would change its commands' meaning (KUBECONFIG, PULUMI_SKIP_CONFIRMATIONS)", async function () {
        const tc = await testToolchain();
        const env = engineEnv(tc, { PATH: "/usr/bin", KUBECONFIG: "/k", PULUMI_SKIP_CONFIRMATIONS: "true", KEEP: "1" }, { PULUMI_HOME: "/h" });
        assert.equal(env.KUBECONFIG, undefined);
        assert.equal(env.PULUMI_SKIP_CONFIRMATIONS, "false", "a preview-only refresh would fail with --yes");
        assert.equal(env.KEEP, "1");
        assert.equal(env.PULUMI_HOME, "/h");
        assert.equal(env.PATH, `${tc.binDir}:/usr/bin`);
    });

    it("the built CLI reports the pinned version (the Automation API parses it)", async function () {
        const tc = await testToolchain();
        const { stdout } = await execFileAsync(tc.pulumi, ["version"], { env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } });
        assert.equal(stdout.trim(), "v3.248.0");
    });
});
