import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { applyPatch } from "../../src/toolchain/resolve";

import { spawnSync } from "node:child_process";

import {
    DYNAMIC_PROVIDER_SHIM,
    KUBERNETES_PROVIDER_PSEUDO_VERSION,
    components,
    nonLocalReplaces,
    parseVersion,
    pseudoVersion,
    versionAtLeast,
    wrapperGoMod,
} from "../../src/toolchain/recipes";

const pins = { pulumi: "3.248.0", plugins: { kubernetes: "4.34.2", random: "4.21.2", github: "6.15.0" } };

describe("toolchain recipes", function () {
    it("build the CLI and language host at the SDK's version and each plugin at its SDK's version", function () {
        const list = components(pins, { withGithub: false, set: "tests" });
        assert.deepEqual(
            list.map((c) => [c.binary, c.version, c.role]),
            [
                ["pulumi", "3.248.0", "cli"],
                ["pulumi-language-nodejs", "3.248.0", "language"],
                ["pulumi-resource-pulumi-nodejs", "3.248.0", "shim"],
                ["pulumi-analyzer-policy", "3.248.0", "shim"],
                ["pulumi-resource-kubernetes", "4.34.2", "resource-plugin"],
                ["pulumi-resource-random", "4.21.2", "resource-plugin"],
                ["kubeseal", "0.27.1", "tool"],
                ["sealed-secrets-controller", "0.27.1", "tool"],
                ["kube-apiserver", "1.36.3", "tool"],
                ["kube-controller-manager", "1.36.3", "tool"],
                ["etcd", "3.6.16", "tool"],
                ["argocd", "3.5.7", "tool"],
                ["helm", "4.2.1", "tool"],
                ["actionlint", "1.7.12", "tool"],
            ],
        );
    });

    it("link the CLI's version into the binary, since the Automation API refuses an empty version", function () {
        const cli = components(pins, { withGithub: false })[0];
        assert.equal(cli.recipe.type, "go-wrapper");
        if (cli.recipe.type !== "go-wrapper") return;
        assert.deepEqual(cli.recipe.ldflags, ["-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.248.0"]);
        assert.equal(cli.recipe.mainPackage, "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi");
    });

    it("register the kubernetes build under the SDK's version although it is built from a pinned commit", function () {
        const k8s = components(pins, { withGithub: false }).find((c) => c.name === "kubernetes");
        assert.ok(k8s && k8s.recipe.type === "go-wrapper");
        if (k8s?.recipe.type !== "go-wrapper") return;
        assert.equal(k8s.recipe.version, KUBERNETES_PROVIDER_PSEUDO_VERSION);
        assert.ok(k8s.recipe.ldflags[0].endsWith("pkg/version.Version=4.34.2"));
    });

    it("give the demo and user commands only the engine; the tests also get the cluster tier's tools", function () {
        const names = (set?: "engine" | "tests") => components(pins, { withGithub: false, ...(set ? { set } : {}) }).map((c) => c.name);
        const engine = ["pulumi", "language-nodejs", "dynamic-provider-shim", "policy-shim", "kubernetes", "random"];
        assert.deepEqual(names(), engine, "the default is the engine set");
        assert.deepEqual(names("engine"), engine);
        assert.deepEqual(names("tests"), [...engine, "kubeseal", "sealed-secrets-controller", "kube-apiserver", "kube-controller-manager", "etcd", "argocd", "helm", "actionlint"]);
        assert.equal(components(pins, { withGithub: true, set: "engine" }).at(-1)?.name, "github", "GitHub's provider is part of the engine when asked for");
    });

    it("add the GitHub provider only on request", function () {
        const names = (withGithub: boolean) => components(pins, { withGithub }).map((c) => c.name);
        assert.equal(names(false).includes("github"), false);
        assert.equal(names(true).at(-1), "github");
    });

    it("name the missing SDK when a plugin has no pin", function () {
        assert.throws(
            () => components({ pulumi: "3.248.0", plugins: { kubernetes: "4.34.2" } }, { withGithub: false }),
            { message: "no version pinned for the random provider: @pulumi/random is missing from node_modules (run npm ci)" },
        );
    });
});

describe("go.mod handling", function () {
    const goMod = [
        "module github.com/pulumi/pulumi/pkg/v3",
        "",
        "go 1.25.11",
        "",
        "replace github.com/pulumi/pulumi/sdk/v3 => ../sdk",
        "",
        "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e",
        "",
        "replace (",
        "\tgithub.com/a/b v1.0.0 => github.com/c/d v1.2.3 // pinned fork",
        "\tgithub.com/e/f => ./local",
        ")",
        "",
        "require github.com/x/y v1.0.0",
    ].join("\n");

    it("copy only the replaces that point at other modules", function () {
        assert.deepEqual(nonLocalReplaces(goMod), {
            "github.com/atotto/clipboard": "github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e",
            "github.com/a/b": "github.com/c/d v1.2.3",
        });
    });

    it("stand published modules in for local replaces when asked (Kubernetes' staging modules)", function () {
        const kube = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\n";
        assert.deepEqual(nonLocalReplaces(kube, "v0.36.3"), { "k8s.io/api": "k8s.io/api v0.36.3", "k8s.io/client-go": "k8s.io/client-go v0.36.3" });
        assert.deepEqual(nonLocalReplaces(kube), {});
    });

    it("stand a named published module in for one local replace (Argo CD's nested gitops-engine)", function () {
        const argo = "module github.com/argoproj/argo-cd/v3\n\nreplace github.com/argoproj/argo-cd/gitops-engine => ./gitops-engine\nreplace github.com/golang/protobuf => github.com/golang/protobuf v1.5.4\n";
        const engine = { "github.com/argoproj/argo-cd/gitops-engine": "github.com/argoproj/argo-cd/gitops-engine v0.0.0-20260914071520-c9c369efcc5b" };
        assert.deepEqual(nonLocalReplaces(argo, engine), { ...engine, "github.com/golang/protobuf": "github.com/golang/protobuf v1.5.4" });
    });

    it("write a wrapper go.mod with sorted replaces", function () {
        assert.equal(
            wrapperGoMod("pulumi", "1.26.8", { "z/z": "y/y v1.0.0", "a/a": "b/b v2.0.0" }),
            "module gitops-stages.local/toolchain/pulumi\n\ngo 1.26.8\n\nreplace a/a => b/b v2.0.0\nreplace z/z => y/y v1.0.0\n",
        );
    });

    it("patch a copy of a module, never the module cache, and fail when an edit no longer fits the source", function () {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-patch-"));
        try {
            const mod = path.join(tmp, "mod");
            fs.mkdirSync(path.join(mod, "pkg/controller"), { recursive: true });
            fs.writeFileSync(path.join(mod, "pkg/controller/main.go"), "package controller\n\nfunc Main() {\n\tconfig, err := rest.InClusterConfig()\n}\n");
            fs.chmodSync(path.join(mod, "pkg/controller/main.go"), 0o444);
            const c = components(pins, { withGithub: false, set: "tests" }).find((x) => x.name === "sealed-secrets-controller")!;
            assert.ok(c.recipe.type === "go-wrapper" && c.recipe.patch);
            const patch = c.recipe.patch;
            applyPatch(c, patch, mod, path.join(tmp, "src"));
            assert.match(fs.readFileSync(path.join(tmp, "src/pkg/controller/main.go"), "utf8"), /config, err := restConfig\(rest\.InClusterConfig\)/);
            assert.match(fs.readFileSync(path.join(tmp, "src/pkg/controller/zz_gitops_stages_kubeconfig.go"), "utf8"), /os\.Getenv\("KUBECONFIG"\)/);
            assert.match(fs.readFileSync(path.join(mod, "pkg/controller/main.go"), "utf8"), /rest\.InClusterConfig\(\)/, "the original changed");
            // Upstream moved on: the edit matches nowhere, and the build says so instead of building something else.
            fs.chmodSync(path.join(mod, "pkg/controller/main.go"), 0o644);
            fs.writeFileSync(path.join(mod, "pkg/controller/main.go"), "package controller\n");
            assert.throws(() => applyPatch(c, patch, mod, path.join(tmp, "src")), /pkg\/controller\/main\.go contains "config, err := rest\.InClusterConfig\(\)" 0 times \(expected once\)/);
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });

    it("form pseudo-versions the way go does", function () {
        assert.equal(
            pseudoVersion(4, new Date("2026-09-17T11:22:58Z"), "b62f810278b98604d335131499f80e890624b7c3"),
            "v4.0.0-20260917112258-b62f810278b9",
        );
        assert.throws(() => pseudoVersion(4, new Date(), "not-a-hash"), { message: "not a commit hash: not-a-hash" });
    });
});

describe("version comparison", function () {
    const cases: [string, string, boolean][] = [
        ["v3.248.0", "3.248.0", true],
        ["v3.249.1\n", "3.248.0", true],
        ["v3.247.9", "3.248.0", false],
        ["v4.0.0", "3.248.0", true],
        ["v3.248.0-dev", "3.248.0", true],
        ["", "3.248.0", false],
        ["garbage", "3.248.0", false],
    ];
    for (const [have, want, expected] of cases) {
        it(`${JSON.stringify(have)} ${expected ? "satisfies" : "does not satisfy"} ${want}`, function () {
            assert.equal(versionAtLeast(have, want), expected);
        });
    }
    it("parse `pulumi version` output", function () {
        assert.deepEqual(parseVersion("v3.248.0\n"), [3, 248, 0]);
        assert.equal(parseVersion("unknown"), undefined);
    });

    it("the dynamic-provider shim runs the program's own host, found up from its folder, else through Node's resolution, else says what is missing", function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shim with space-"));
        try {
            const shim = path.join(dir, "pulumi-resource-pulumi-nodejs");
            fs.writeFileSync(shim, DYNAMIC_PROVIDER_SHIM, { mode: 0o755 });
            const host = (root: string, says: string) => {
                const entry = path.join(root, "node_modules", "@pulumi", "pulumi", "cmd", "dynamic-provider");
                fs.mkdirSync(entry, { recursive: true });
                fs.writeFileSync(path.join(entry, "index.js"), `process.stdout.write(${JSON.stringify(says)} + " " + process.argv.slice(2).join(" "));\n`);
            };
            const run = (cwd: string, env: NodeJS.ProcessEnv = {}) => spawnSync(shim, ["127.0.0.1:1"], { cwd, env: { PATH: process.env.PATH, ...env }, encoding: "utf8" });
            // The program's folder is below the project that holds node_modules (src/program); found
            // by the shell: a `node` that refuses `-e` (Node's resolution) changes nothing.
            host(path.join(dir, "project"), "project's host");
            fs.mkdirSync(path.join(dir, "project", "src", "program"), { recursive: true });
            const noResolve = path.join(dir, "no-resolve");
            fs.mkdirSync(noResolve);
            fs.writeFileSync(path.join(noResolve, "node"), `#!/bin/sh\n[ "$1" = -e ] && exit 9\nexec ${JSON.stringify(process.execPath)} "$@"\n`, { mode: 0o755 });
            assert.equal(run(path.join(dir, "project", "src", "program"), { PATH: `${noResolve}${path.delimiter}${process.env.PATH}` }).stdout, "project's host 127.0.0.1:1");
            // Nothing up from the folder: Node's own resolution (NODE_PATH here).
            host(path.join(dir, "elsewhere"), "NODE_PATH's host");
            fs.mkdirSync(path.join(dir, "bare"));
            assert.equal(run(path.join(dir, "bare"), { NODE_PATH: path.join(dir, "elsewhere", "node_modules") }).stdout, "NODE_PATH's host 127.0.0.1:1");
            const missing = run(path.join(dir, "bare"));
            assert.equal(missing.status, 1);
            assert.match(missing.stderr, /cannot find @pulumi\/pulumi\/cmd\/dynamic-provider: run npm install in the Pulumi project/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
