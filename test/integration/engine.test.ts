/**
 * The real engine, end to end: the toolchain's CLI, kubernetes and random plugins, the dynamic
 * provider shim and our Node.js language host, on a temporary `file://` backend. Nothing is mocked;
 * if a part of the toolchain is missing or broken these tests fail (they never skip).
 */
import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import * as k8s from "@pulumi/kubernetes";
import * as random from "@pulumi/random";

import { walk } from "../support/files";
import { pulumiCommand } from "../../src/runner/adapters/environment";
import { Engine, createEngine, disposeEngine, repoRoot } from "../support/engine";

/** A dynamic-provider resource: writes a file and reports its digest (runs through the shim). */
class MarkerFile extends pulumi.dynamic.Resource {
    declare readonly digest: pulumi.Output<string>;
    constructor(name: string, args: { file: pulumi.Input<string>; content: pulumi.Input<string> }) {
        const provider: pulumi.dynamic.ResourceProvider = {
            async create(inputs: { file: string; content: string }) {
                // eslint-disable-next-line @typescript-eslint/no-require-imports
                const fsm = require("fs") as typeof fs;
                // eslint-disable-next-line @typescript-eslint/no-require-imports
                const crypto = require("crypto") as typeof import("crypto");
                fsm.writeFileSync(inputs.file, inputs.content);
                const digest = crypto.createHash("sha256").update(inputs.content).digest("hex");
                return { id: inputs.file, outs: { ...inputs, digest } };
            },
            async delete(id: string) {
                // eslint-disable-next-line @typescript-eslint/no-require-imports
                (require("fs") as typeof fs).rmSync(id, { force: true });
            },
        };
        super(provider, name, { ...args, digest: undefined }, {});
    }
}

describe("real Pulumi engine (integration)", function () {
    let engine: Engine;
    let stack: Stack;
    let renderDir: string;
    let markerPath: string;

    before(async function () {
        engine = await createEngine();
        renderDir = path.join(engine.dir, "rendered");
        markerPath = path.join(engine.dir, "marker.txt");
        const program = async () => {
            const password = new random.RandomPassword("admin", { length: 24, special: false });
            const render = new k8s.Provider("render", { renderYamlToDirectory: renderDir });
            const cm = new k8s.core.v1.ConfigMap(
                "greeting",
                { metadata: { name: "greeting", namespace: "default" }, data: { message: "hello from gitops-stages" } },
                { provider: render },
            );
            const marker = new MarkerFile("marker", { file: markerPath, content: "promoted" });
            return {
                passwordLength: password.result.apply((r) => r.length),
                password: password.result,
                configMapName: cm.metadata.name,
                markerDigest: marker.digest,
            };
        };
        stack = await LocalWorkspace.createStack(
            { stackName: "engine-test", projectName: "gitops-stages-engine-test", program },
            { workDir: engine.dir, ...engine.workspaceOptions },
        );
        // The dynamic provider host resolves @pulumi/pulumi from the program's folder.
        fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(engine.dir, "node_modules"));
    });

    after(function () {
        if (engine) disposeEngine(engine);
    });

    it("the runner's handle on the toolchain's CLI is what the Automation API's PulumiCommand.get makes, without running the CLI", async function () {
        const made = pulumiCommand(engine.toolchain);
        const got = await PulumiCommand.get({ root: engine.toolchain.root });
        assert.ok(made instanceof PulumiCommand);
        assert.deepEqual(Object.keys(made).sort(), Object.keys(got).sort(), "the fields the constructor sets");
        assert.equal(made.command, got.command);
        assert.equal(made.version?.compare(got.version!), 0, `${made.version} is what the CLI reports (${got.version})`);
        assert.throws(() => pulumiCommand({ ...engine.toolchain, cliVersion: "not-a-version" }), /reports version "not-a-version", which is not a version/);
        // What get refuses, so must this: a CLI of another major version than the SDK's.
        assert.throws(() => pulumiCommand({ ...engine.toolchain, cliVersion: "4.0.1" }, {}), /is version 4\.0\.1, a major version other than @pulumi\/pulumi 3\.248\.0's/);
        assert.equal(pulumiCommand({ ...engine.toolchain, cliVersion: "4.0.1" }, { PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true" }).version?.major, 4);
    });

    it("preview plans to create every resource and writes nothing", async function () {
        const preview = await stack.preview();
        assert.equal(preview.changeSummary.create, 5, JSON.stringify(preview.changeSummary));
        assert.equal(fs.existsSync(markerPath), false, "preview must not run the dynamic provider's create");
        assert.equal(fs.existsSync(renderDir), false, "preview must not render manifests");
    });

    it("up creates the resources: random, rendered Kubernetes YAML and the dynamic provider", async function () {
        const up = await stack.up();
        assert.equal(up.summary.result, "succeeded");
        assert.equal(up.outputs.passwordLength.value, 24);
        assert.equal(up.outputs.password.secret, true, "a generated password must be a secret output");
        assert.match(up.outputs.password.value, /^[A-Za-z0-9]{24}$/);
        assert.equal(up.outputs.configMapName.value, "greeting");
        assert.equal(up.outputs.markerDigest.value, createHash("sha256").update("promoted").digest("hex"));
        assert.equal(fs.readFileSync(markerPath, "utf8"), "promoted");

        const files = walk(renderDir);
        const cmFile = files.find((f) => f.endsWith(".yaml") && fs.readFileSync(f, "utf8").includes("kind: ConfigMap"));
        assert.ok(cmFile, `no ConfigMap manifest rendered under ${renderDir}: ${files.join(", ")}`);
        const yaml = fs.readFileSync(cmFile, "utf8");
        assert.match(yaml, /name: greeting/);
        assert.match(yaml, /message: hello from gitops-stages/);
    });

    it("a second up changes nothing", async function () {
        const up = await stack.up();
        const summary = up.summary.resourceChanges ?? {};
        const changed = Object.entries(summary).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
        assert.deepEqual(changed, [], JSON.stringify(summary));
        assert.equal(summary.same, 5);
    });

    it("the state at rest never holds the password in clear text", async function () {
        const out = await stack.outputs();
        assert.equal(out.password.value.length, 24);
        const files = walk(engine.stateDir).filter((f) => f.endsWith(".json"));
        assert.ok(files.some((f) => f.endsWith("engine-test.json")), `no state file in ${files.join(", ")}`);
        for (const f of files) {
            assert.equal(fs.readFileSync(f, "utf8").includes(out.password.value), false, `password in clear text in ${f}`);
        }
    });

    it("refresh finds no drift", async function () {
        // Render mode has no cluster to read back: the provider fails a refresh as "unreachable"
        // unless told to keep what it rendered. Set for the refresh only; on create it would skip rendering.
        const ws = stack.workspace as LocalWorkspace;
        ws.envVars.PULUMI_K8S_SKIP_UPDATE_UNREACHABLE = "true";
        const refresh = await stack.refresh().finally(() => delete ws.envVars.PULUMI_K8S_SKIP_UPDATE_UNREACHABLE);
        assert.equal(refresh.summary.result, "succeeded");
        const summary = refresh.summary.resourceChanges ?? {};
        assert.equal(summary.update ?? 0, 0, JSON.stringify(summary));
    });

    it("history records each update with its kind and result", async function () {
        const history = await stack.history();
        // Newest first.
        assert.deepEqual(
            history.map((h) => [h.kind, h.result]),
            [
                ["refresh", "succeeded"],
                ["update", "succeeded"],
                ["update", "succeeded"],
            ],
        );
    });

    it("destroy removes everything it made", async function () {
        const destroy = await stack.destroy();
        assert.equal(destroy.summary.result, "succeeded");
        assert.equal(destroy.summary.resourceChanges?.delete, 5);
        assert.equal(fs.existsSync(markerPath), false, "the dynamic provider's delete did not run");
        const leftover = walk(renderDir).filter((f) => f.endsWith(".yaml"));
        assert.deepEqual(leftover, [], "rendered manifests left after destroy");
    });
});

describe("Node.js language host (integration)", function () {
    it("runs a TypeScript program from Pulumi.yaml through `pulumi up` and `pulumi destroy`", async function () {
        const engine = await createEngine();
        try {
            const project = path.join(engine.dir, "project");
            fs.mkdirSync(project);
            fs.writeFileSync(
                path.join(project, "Pulumi.yaml"),
                "name: langhost-test\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: src/\n",
            );
            fs.mkdirSync(path.join(project, "src"));
            fs.writeFileSync(
                path.join(project, "src", "index.ts"),
                [
                    'import * as pulumi from "@pulumi/pulumi";',
                    'import * as random from "@pulumi/random";',
                    "const cfg = new pulumi.Config();",
                    'const id = new random.RandomId("id", { byteLength: 4, prefix: cfg.require("prefix") });',
                    "export const hexId: pulumi.Output<string> = id.hex;",
                    'export const secretEcho = cfg.requireSecret("token");',
                    "",
                ].join("\n"),
            );
            fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "langhost-test", main: "src/index.ts" }));
            fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(project, "node_modules"));
            const stack = await LocalWorkspace.createStack(
                { stackName: "dev", workDir: project },
                engine.workspaceOptions,
            );
            await stack.setConfig("prefix", { value: "rel-" });
            await stack.setConfig("token", { value: "tok-planted-0123456789", secret: true });
            let log = "";
            const up = await stack.up({ onOutput: (s) => (log += s) });
            assert.equal(up.summary.result, "succeeded");
            assert.match(up.outputs.hexId.value, /^rel-[0-9a-f]{8}$/);
            assert.equal(up.outputs.secretEcho.secret, true);
            assert.equal(log.includes("tok-planted-0123456789"), false, "secret config leaked into the engine's output");
            const down = await stack.destroy();
            assert.equal(down.summary.resourceChanges?.delete, 2);
        } finally {
            disposeEngine(engine);
        }
    });
});

