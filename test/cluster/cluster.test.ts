/**
 * The cluster tier: the platform and merge-request stacks applied to a real kube-apiserver backed
 * by a real etcd (test/support/cluster.ts), read back with a Kubernetes client rather than from
 * Pulumi's outputs. No kubelet runs, so the stacks are configured with skipAwait.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";

import type { KubeClient } from "../../src/kube/client";
import { AutomationEngine } from "../../src/runner/adapters/automation";
import { AssembledRunner, createRunner } from "../../src/runner/index";
import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { Cluster, exposeSealedSecretsController, hostAddress, startCluster } from "../support/cluster";
import { repoRoot, testToolchain } from "../support/engine";
import { argoCdTestChart } from "../support/argocd-chart";
import { makeBundleDir } from "../support/fixtures";

type Obj = { metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; deletionTimestamp?: string }; spec?: Record<string, unknown> };

describe("the cluster tier: a real kube-apiserver and etcd", function () {
    let cluster: Cluster;
    let client: KubeClient;
    let dir: string;
    let dataDir: string;
    let assembled: AssembledRunner;
    let engine: AutomationEngine;

    const platformConfig = (stages: unknown[]) => ({
        gitHost: { kind: "local", path: path.join(dir, "git") },
        cluster: { kubeconfig: cluster.kubeconfig, skipAwait: true },
        argocd: { chart: { path: argoCdTestChart() } },
        sealedSecrets: { chart: { path: path.join(repoRoot, "test/charts/sealed-secrets") } },
        stages,
    });
    const stages = [{ name: "itg" }, { name: "tst", annotations: { "notifications.argoproj.io/subscribe.on-sync-failed.slack": "tst-alerts" } }];
    const list = async (p: string) => ((await client.request("GET", p)) as { items: Obj[] }).items;
    async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
            if (await check()) return;
            await new Promise((r) => setTimeout(r, 250));
        }
        throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`);
    }

    before(async function () {
        cluster = await startCluster();
        client = cluster.client;
        process.stderr.write(`      cluster up: ${JSON.stringify(cluster.timings)} (ms)\n`);
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-cluster-test-"));
        dataDir = path.join(dir, "data");
        fs.mkdirSync(dataDir, { recursive: true });
        fs.writeFileSync(path.join(dataDir, "runner.json"), JSON.stringify({ mrCluster: { kubeconfig: cluster.kubeconfig, skipAwait: true } }));
        const env = selfContainedEnv(dataDir);
        assembled = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined });
        engine = new AutomationEngine(assembled.environment, { lockWaitMs: 60_000, log: () => undefined });
    });

    after(async function () {
        client?.close();
        await cluster?.stop();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("pulumi up of platform installs the charts' CRDs, one AppProject and one Application per stage with their sync policies; a second up changes nothing", async function () {
        const up = await engine.update("platform", async () => platformConfig(stages), { message: "bootstrap on a real API server" });
        assert.equal(up?.result, "succeeded");
        const crds = (await list("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")).map((c) => c.metadata.name).sort();
        for (const crd of ["applications.argoproj.io", "appprojects.argoproj.io", "sealedsecrets.bitnami.com"]) assert.ok(crds.includes(crd), `${crd} missing: ${crds.join(", ")}`);
        const projects = await list("/apis/argoproj.io/v1alpha1/namespaces/argocd/appprojects");
        assert.deepEqual(projects.map((p) => p.metadata.name).sort(), ["itg", "tst"]);
        const tstProject = projects.find((p) => p.metadata.name === "tst")!;
        assert.deepEqual((tstProject.spec as { destinations: unknown[] }).destinations, [{ server: "https://kubernetes.default.svc", namespace: "tst" }]);
        const apps = await list("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications");
        assert.deepEqual(apps.map((a) => a.metadata.name).sort(), ["itg", "tst"]);
        const policy = (name: string) => (apps.find((a) => a.metadata.name === name)!.spec as { syncPolicy: { automated?: unknown; syncOptions: string[] } }).syncPolicy;
        assert.deepEqual(policy("itg").automated, { prune: true, selfHeal: true });
        assert.equal(policy("tst").automated, undefined, "tst syncs by hand");
        assert.ok(policy("tst").syncOptions.includes("CreateNamespace=true"));
        assert.equal(apps.find((a) => a.metadata.name === "tst")!.metadata.annotations?.["notifications.argoproj.io/subscribe.on-sync-failed.slack"], "tst-alerts");
        const controller = await client.get("/api/v1/namespaces/kube-system/services/sealed-secrets-controller");
        assert.ok(controller, "the Sealed Secrets controller's Service is missing");

        const again = await engine.update("platform", async () => platformConfig(stages), { message: "again" });
        assert.equal(again?.result, "succeeded");
        const changed = Object.entries(again!.changes).filter(([op, n]) => op !== "same" && n > 0);
        assert.deepEqual(changed, [], `a second up changed: ${JSON.stringify(again!.changes)}`);
    });

    it("the real Sealed Secrets controller: stages secret gets its certificate through the API server's proxy, the controller unseals what we sealed, and reseals online after a key rotation", async function () {
        // No kubelet runs Pods here, so the controller runs as a process on this host's address,
        // and a Pod object whose status carries that address backs the Service's endpoints: the API
        // server's proxy, our client, our sealing and the controller are all the real ones.
        const host = hostAddress();
        const controller = await cluster.startSealedSecretsController(host);
        process.stderr.write(`      sealed-secrets-controller up in ${cluster.timings.sealedSecretsController} ms\n`);
        await exposeSealedSecretsController(cluster, controller, host);

        const operator = { name: "olivia", grants: [{ stages: ["tst"], verbs: ["secrets" as const] }] };
        const r = await assembled.secrets.set({ app: "web", stage: "tst", scope: "strict", replace: false, values: { PASSWORD: Buffer.from("through-the-proxy") } }, operator);
        assert.ok(r.opsCommit, "nothing was committed");
        const ops = path.join(dir, "git", "app-ops.git");
        const committed = () => YAML.parseAllDocuments(execFileSync("git", ["--git-dir", ops, "show", "main:environments/tst/secrets/web.yaml"], { encoding: "utf8" })).map((d) => d.toJS() as { metadata: { name: string; namespace: string }; spec: { encryptedData: Record<string, string> } })[0];
        const sealed = committed();
        // The controller is the only holder of the sealing key: its unsealing below proves the certificate came from it.

        // What Argo CD would do: apply the committed SealedSecret. The controller unseals it into a Secret.
        const target = sealed.metadata.namespace;
        if (!(await client.get(`/api/v1/namespaces/${target}`))) await client.request("POST", "/api/v1/namespaces", { metadata: { name: target } });
        const apply = async (doc: typeof sealed) => {
            const at = `/apis/bitnami.com/v1alpha1/namespaces/${target}/sealedsecrets`;
            const existing = await client.get<{ metadata: { resourceVersion: string } }>(`${at}/${doc.metadata.name}`);
            if (existing) await client.request("PUT", `${at}/${doc.metadata.name}`, { apiVersion: "bitnami.com/v1alpha1", kind: "SealedSecret", ...doc, metadata: { ...doc.metadata, resourceVersion: existing.metadata.resourceVersion } });
            else await client.request("POST", at, { apiVersion: "bitnami.com/v1alpha1", kind: "SealedSecret", ...doc });
        };
        // The controller reports each generation it processed; Synced=True means it unsealed that one.
        const synced = async () => {
            let last = "";
            await until(`the controller syncing ${sealed.metadata.name} (last status: ${last})`, async () => {
                const o = await client.get<{ metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] } }>(`/apis/bitnami.com/v1alpha1/namespaces/${target}/sealedsecrets/${sealed.metadata.name}`);
                last = JSON.stringify(o?.status ?? {});
                return o?.status?.observedGeneration === o?.metadata.generation && !!o?.status?.conditions?.some((c) => c.type === "Synced" && c.status === "True");
            });
        };
        const unsealed = async (value: string) => {
            let seen = "";
            await until(`the controller unsealing ${sealed.metadata.name} (last: ${seen})`, async () => {
                const secret = await client.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${target}/secrets/${sealed.metadata.name}`);
                seen = secret?.data?.PASSWORD ? Buffer.from(secret.data.PASSWORD, "base64").toString("utf8") : "";
                return seen === value;
            });
        };
        await apply(sealed);
        await synced();
        await unsealed("through-the-proxy");

        // Key rotation, then an online reseal through the controller's /v1/rotate: one commit, new
        // ciphertext that only the new key opens, and the controller still unseals it.
        const [oldKey] = await controller.privateKeys();
        await controller.newKey();
        const newKey = (await controller.privateKeys()).find((k) => k !== oldKey)!;
        const before = execFileSync("git", ["--git-dir", ops, "rev-list", "--count", "main"], { encoding: "utf8" }).trim();
        const resealed = await assembled.secrets.reseal({ stage: "tst" }, operator);
        assert.ok(resealed.opsCommit, "the reseal committed nothing");
        assert.equal(execFileSync("git", ["--git-dir", ops, "rev-list", "--count", "main"], { encoding: "utf8" }).trim(), String(Number(before) + 1));
        assert.match(execFileSync("git", ["--git-dir", ops, "log", "-1", "--format=%B", "main"], { encoding: "utf8" }), /Method: the controller's rotate endpoint/);
        const after = committed();
        assert.notEqual(after.spec.encryptedData.PASSWORD, sealed.spec.encryptedData.PASSWORD);
        const kubeseal = (await testToolchain()).components.find((c) => c.component.name === "kubeseal")!.path;
        const recover = (keyPem: string) => {
            const keyFile = path.join(dir, `key-${Math.random().toString(36).slice(2)}.pem`);
            fs.writeFileSync(keyFile, keyPem, { mode: 0o600 });
            return execFileSync(kubeseal, ["--recovery-unseal", "--recovery-private-key", keyFile, "--format", "json"], { input: JSON.stringify({ apiVersion: "bitnami.com/v1alpha1", kind: "SealedSecret", ...after }), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
        };
        assert.equal(Buffer.from(JSON.parse(recover(newKey)).data.PASSWORD, "base64").toString("utf8"), "through-the-proxy");
        assert.throws(() => recover(oldKey), "the old key still opens the resealed value");
        // The Secret goes, the resealed SealedSecret comes: the controller must open the new ciphertext to bring it back.
        await client.request("DELETE", `/api/v1/namespaces/${target}/secrets/${sealed.metadata.name}`);
        await apply(after);
        await synced();
        await unsealed("through-the-proxy");
    });

    it("the API server rejects a malformed Application, and the error names the resource and the field", async function () {
        const bad = [{ name: "itg" }, { name: "tst", annotations: { "not a valid key!": "x" } }];
        let message = "";
        try {
            await engine.update("platform", async () => platformConfig(bad), { message: "malformed" });
        } catch (e) {
            message = String((e as { stderr?: string }).stderr ?? e);
        }
        assert.ok(message, "the update was not refused");
        assert.match(message, /Application/);
        assert.match(message, /tst/);
        assert.match(message, /metadata\.annotations/);
        assert.match(message, /not a valid key!/);
        // The live Application kept its valid annotations.
        const tst = (await client.get<Obj>("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/tst"))!;
        assert.equal(tst.metadata.annotations?.["not a valid key!"], undefined);
        // Back to the good configuration.
        const fixed = await engine.update("platform", async () => platformConfig(stages), { message: "fixed" });
        assert.equal(fixed?.result, "succeeded");
    });

    it("stages mr deploy creates namespace mr-<n> and the release's objects; drift is reported and corrected; destroy removes them", async function () {
        const bundle = makeBundleDir(dir, "web");
        const deploy = () => assembled.runner.mrDeploy({ mr: 5, app: "web", bundle, image: "registry.example/web:mr-5", sourceCommit: "abcdef0", requester: "ci", ttlHours: 72 });
        const r = await deploy();
        assert.equal(r.state, "done");
        const ns = await client.get<Obj>("/api/v1/namespaces/mr-5");
        assert.equal(ns?.metadata.labels?.["gitops-stages.dev/mr"], "5");
        const deployment = await client.get<Obj>("/apis/apps/v1/namespaces/mr-5/deployments/web");
        assert.ok(deployment, "the release's Deployment is missing");
        assert.equal(deployment.metadata.labels?.["gitops-stages.dev/app"], "web");

        // Someone edits a label behind Pulumi's back.
        await client.request("PATCH", "/apis/apps/v1/namespaces/mr-5/deployments/web", { metadata: { labels: { "gitops-stages.dev/app": "hand-edited" } } }, "application/merge-patch+json");
        const drift = await assembled.runner.drift("mr-5");
        assert.equal(drift.length, 1);
        assert.ok(drift[0].details.some((d) => /web/.test(d) && /update/.test(d)), `drift not reported: ${JSON.stringify(drift)}`);
        await deploy();
        const corrected = await client.get<Obj>("/apis/apps/v1/namespaces/mr-5/deployments/web");
        assert.equal(corrected?.metadata.labels?.["gitops-stages.dev/app"], "web", "the next update did not correct the drift");

        const destroyed = await assembled.runner.mrDestroy(5, "ci");
        assert.equal(destroyed.state, "done");
        assert.equal(await client.get("/apis/apps/v1/namespaces/mr-5/deployments/web"), undefined);
        await until("namespace mr-5 removed", async () => (await client.get("/api/v1/namespaces/mr-5")) === undefined);
    });

    it("stages mr reap destroys an expired environment and leaves an unexpired one", async function () {
        const bundle = makeBundleDir(dir, "web");
        await assembled.runner.mrDeploy({ mr: 6, app: "web", bundle, image: "registry.example/web:mr-6", sourceCommit: "abcdef1", requester: "ci", ttlHours: 1 });
        await assembled.runner.mrDeploy({ mr: 7, app: "web", bundle, image: "registry.example/web:mr-7", sourceCommit: "abcdef2", requester: "ci", ttlHours: 72 });
        const env = selfContainedEnv(dataDir);
        const later = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined, now: () => new Date(Date.now() + 2 * 3600_000) });
        const reaped = await later.runner.mrReap("reaper");
        assert.deepEqual(reaped.destroyed, ["mr-6"]);
        assert.deepEqual(reaped.kept.map((k) => k.stack), ["mr-7"]);
        await until("namespace mr-6 removed", async () => (await client.get("/api/v1/namespaces/mr-6")) === undefined);
        assert.ok(await client.get("/apis/apps/v1/namespaces/mr-7/deployments/web"), "the unexpired environment was touched");
        await assembled.runner.mrDestroy(7, "ci");
    });
});
