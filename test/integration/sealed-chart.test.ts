/**
 * A stage's umbrella chart deploys the operator-owned SealedSecrets of its secrets/ folder:
 * rendered through the real engine (the kubernetes provider's Helm), from files written exactly
 * as the stage stack and an operator write them.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import * as k8s from "@pulumi/kubernetes";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import * as YAML from "yaml";

import { stageFiles } from "../../src/program/stage/files";
import { sealedSecret } from "../../src/secrets/seal";
import { walk } from "../support/files";
import { createEngine, disposeEngine, repoRoot } from "../support/engine";

describe("a stage's umbrella chart and its sealed secrets (real engine)", function () {
    it("renders every secrets/*.yaml of the stage, as written, and nothing in clear", async function () {
        const engine = await createEngine();
        try {
            const repo = path.join(engine.dir, "ops");
            for (const [p, content] of Object.entries(stageFiles("prod", {}, {}))) {
                fs.mkdirSync(path.dirname(path.join(repo, p)), { recursive: true });
                fs.writeFileSync(path.join(repo, p), content);
            }
            const stageDir = path.join(repo, "environments", "prod");
            fs.mkdirSync(path.join(stageDir, "secrets"), { recursive: true });
            fs.writeFileSync(path.join(stageDir, "secrets", ".gitkeep"), "");
            execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path.join(engine.dir, "key.pem"), "-out", path.join(engine.dir, "cert.pem"), "-days", "1", "-subj", "/CN=sealed-secret"], { stdio: "ignore" });
            const cert = fs.readFileSync(path.join(engine.dir, "cert.pem"), "utf8");
            const planted = "planted-db-password-91c2";
            for (const app of ["web", "api"]) {
                fs.writeFileSync(path.join(stageDir, "secrets", `${app}.yaml`), YAML.stringify(sealedSecret(cert, "prod", app, { DB_PASSWORD: Buffer.from(planted) })));
            }
            const renderDir = path.join(engine.dir, "rendered");
            const stack = await LocalWorkspace.createStack(
                {
                    stackName: "chart",
                    projectName: "gitops-stages-chart-test",
                    program: async () => {
                        const render = new k8s.Provider("render", { renderYamlToDirectory: renderDir });
                        // The SealedSecret CRD, as the platform installs it with the controller's chart.
                        const crd = new k8s.helm.v4.Chart("sealed-secrets", { chart: path.join(repoRoot, "test/charts/sealed-secrets"), namespace: "kube-system" }, { provider: render });
                        new k8s.helm.v4.Chart("prod", { chart: stageDir, namespace: "prod" }, { provider: render, dependsOn: [crd] });
                    },
                },
                { workDir: engine.dir, ...engine.workspaceOptions },
            );
            fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(engine.dir, "node_modules"));
            await stack.up();
            const docs = walk(renderDir)
                .filter((f) => f.endsWith(".yaml"))
                .map((f) => fs.readFileSync(f, "utf8"));
            const sealed = docs.map((d) => YAML.parse(d)).filter((d) => d?.kind === "SealedSecret");
            assert.deepEqual(sealed.map((d) => d.metadata.name).sort(), ["api", "web"]);
            assert.equal(sealed[0].metadata.namespace, "prod");
            assert.match(sealed[0].spec.encryptedData.DB_PASSWORD, /^[A-Za-z0-9+/=]{300,}$/);
            assert.equal(docs.some((d) => d.includes(planted)), false, "a secret value was rendered in clear");
        } finally {
            disposeEngine(engine);
        }
    });
});
