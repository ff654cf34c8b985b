/**
 * The GitOps loop closed on real parts: the platform stack on the cluster tier's kube-apiserver,
 * the ops repo served over git:// on loopback, and a real Argo CD (repo server and application
 * controller) syncing what the runner commits. A promotion into itg, made with the `stages` CLI as
 * CI's runner would, is rendered by Argo CD from the ops repo's umbrella chart and applied.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { ArgoCd, startArgoCd } from "../support/argocd";
import { argoCdTestChart } from "../support/argocd-chart";
import { Cluster, startCluster } from "../support/cluster";
import { repoRoot } from "../support/engine";
import { GitDaemon, makeBundleDir, startGitDaemon } from "../support/fixtures";
import { Pipeline, bootstrapPipeline } from "../support/service";

const STAGES_BIN = path.join(repoRoot, "bin", "stages");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

type App = { metadata: { annotations?: Record<string, string> }; status?: { sync?: { status?: string; revision?: string }; health?: { status?: string }; conditions?: { type: string; message: string }[]; operationState?: { phase?: string; message?: string } } };

describe("the GitOps loop: a real Argo CD syncs what the runner commits (cluster tier)", function () {
    let cluster: Cluster;
    let daemon: GitDaemon;
    let argocd: ArgoCd;
    let p: Pipeline;
    let gitDir: string;

    const cli = (args: string[]) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
            const c = spawn(process.execPath, [STAGES_BIN, ...args], { env: { ...p.env, GITOPS_STAGES_TOKEN: p.operatorToken }, stdio: ["ignore", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
            c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
            c.on("exit", (code) => resolve({ code, stdout, stderr }));
        });
    const app = (name: string) => cluster.client.get<App>(`/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/${name}`);
    async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
        const deadline = Date.now() + timeoutMs;
        let failure = "";
        while (Date.now() < deadline) {
            try {
                const value = await check();
                if (value !== undefined) return value;
            } catch (e) {
                failure = ` (last error: ${e instanceof Error ? e.message : String(e)})`;
            }
            await new Promise((r) => setTimeout(r, 500));
        }
        const statuses = await Promise.all(["itg", "tst"].map(async (n) => `${n}: ${JSON.stringify((await app(n))?.status ?? null).slice(0, 1500)}`));
        throw new Error(`${what} did not happen within ${timeoutMs / 1000} s${failure}\n${statuses.join("\n")}\n${argocd?.logs() ?? ""}`);
    }

    before(async function () {
        cluster = await startCluster();
        gitDir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-argocd-git-"));
        daemon = await startGitDaemon(gitDir);
        p = await bootstrapPipeline("gitops-stages-argocd-", [{ name: "itg" }, { name: "tst" }], [], {}, {
            gitHost: { kind: "local", path: gitDir, serveUrl: daemon.url("app-ops.git") },
            cluster: { kubeconfig: cluster.kubeconfig, skipAwait: true },
            argocd: { chart: { path: argoCdTestChart() } },
            sealedSecrets: { chart: { path: path.join(repoRoot, "test/charts/sealed-secrets") } },
        });
        const t0 = Date.now();
        argocd = await startArgoCd(cluster);
        process.stderr.write(`      argo cd up in ${Date.now() - t0} ms\n`);
    });

    after(async function () {
        await argocd?.stop();
        await daemon?.stop();
        p?.dispose();
        if (gitDir) fs.rmSync(gitDir, { recursive: true, force: true });
        cluster?.client.close();
        await cluster?.stop();
    });

    it("Argo CD reads the ops repo the platform wrote and reports itg in sync with its head before any release", async function () {
        const head = p.git("rev-parse", "main");
        const status = await until("the first reconcile of itg", async () => {
            const s = (await app("itg"))?.status;
            return s?.sync?.revision === head && s.sync.status === "Synced" ? s : undefined;
        });
        assert.equal(status.sync?.status, "Synced");
    });

    it("a promotion into itg with the CLI is synced automatically: the Deployment of the release appears in namespace itg at the commit the runner made", async function () {
        const r = await cli(["promote", "web@1.0.0", "--to", "itg", "--bundle", makeBundleDir(p.dir, "web"), "--image", "registry.example/web:1.0.0", "--commit", COMMIT, "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const head = p.git("rev-parse", "main");
        assert.match(p.git("log", "-1", "--format=%s", "main"), /^Promote web 1\.0\.0 to itg/);
        // What the ops repo's push webhook does on GitHub: ask Argo CD to refresh now.
        await cluster.client.request("PATCH", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/itg", { metadata: { annotations: { "argocd.argoproj.io/refresh": "normal" } } }, "application/merge-patch+json");
        await until("itg synced at the promotion's commit", async () => {
            const s = (await app("itg"))?.status;
            return s?.sync?.revision === head && s.sync.status === "Synced" && s.operationState?.phase === "Succeeded" ? s : undefined;
        });
        const deployment = await until("the Deployment web in namespace itg", async () =>
            cluster.client.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/itg/deployments/web"),
        );
        assert.equal(deployment.spec.template.spec.containers[0].image, "registry.example/web:1.0.0");
    });

    it("stages wait returns once Argo CD has synced a new promotion into itg (it asks Argo CD to refresh itself)", async function () {
        const r = await cli(["promote", "web@1.1.0", "--to", "itg", "--bundle", makeBundleDir(p.dir, "web", { replicas: 2 }), "--image", "registry.example/web:1.1.0", "--commit", COMMIT, "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const commit = p.git("rev-parse", "main");
        // No kubelet runs here, so no rollout gets Healthy: wait until the release is applied.
        const w = await cli(["wait", "--stage", "itg", "--timeout", "120", "--for", "synced", "--json"]);
        assert.equal(w.code, 0, w.stderr);
        const d = JSON.parse(w.stdout);
        assert.equal(d.state, "synced");
        assert.equal(d.commit, commit);
        assert.match(d.message, /health Progressing/);
        // Once `wait` returned, the release is what runs: no polling of the cluster needed here.
        const deployment = await cluster.client.get<{ spec: { replicas: number; template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/itg/deployments/web");
        assert.equal(deployment?.spec.template.spec.containers[0].image, "registry.example/web:1.1.0");
        assert.equal(deployment?.spec.replicas, 2);
    });

    it("tst syncs by hand: a promotion into tst is committed, not yet synced, until its owners sync it; then stages wait returns", async function () {
        const r = await cli(["promote", "web@1.1.0", "--to", "tst", "--commit", COMMIT, "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const head = p.git("rev-parse", "main");
        await cluster.client.request("PATCH", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/tst", { metadata: { annotations: { "argocd.argoproj.io/refresh": "normal" } } }, "application/merge-patch+json");
        const status = await until("tst reconciled at the promotion's commit", async () => {
            const s = (await app("tst"))?.status;
            return s?.sync?.revision === head ? s : undefined;
        });
        assert.equal(status.sync?.status, "OutOfSync");
        assert.equal(await cluster.client.get("/apis/apps/v1/namespaces/tst/deployments/web"), undefined);

        // What the runner and CI see: desired in the ops repo, not deployed.
        const st = await cli(["status", "--json"]);
        assert.equal(st.code, 0, st.stderr);
        const rows = JSON.parse(st.stdout) as { stage: string; deployment: { state: string; message: string } }[];
        assert.equal(rows.find((x) => x.stage === "itg")!.deployment.state, "synced");
        assert.equal(rows.find((x) => x.stage === "tst")!.deployment.state, "pending");
        assert.match(rows.find((x) => x.stage === "tst")!.deployment.message, /not yet synced/);
        const human = await cli(["status"]);
        assert.match(human.stdout, /^\(deployed\)\s+synced\s+pending$/m);
        // Waiting without the owners' sync ends as a timeout (exit 5) naming the state.
        const timedOut = await cli(["wait", "--stage", "tst", "--timeout", "3", "--for", "synced"]);
        assert.equal(timedOut.code, 5, timedOut.stderr);
        assert.match(timedOut.stderr, /not synced after 3 s: committed, not yet synced/);
        // And by default (synced and Healthy), itg's rollout that cannot progress here is not enough.
        const unhealthy = await cli(["wait", "--stage", "itg", "--timeout", "3"]);
        assert.equal(unhealthy.code, 5, unhealthy.stderr);
        assert.match(unhealthy.stderr, /not deployed after 3 s: synced at [0-9a-f]{12}, health Progressing/);

        // The owners sync, as Argo CD's API does it: an operation on the Application.
        await cluster.client.request(
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/tst",
            { operation: { initiatedBy: { username: "tst-owner" }, sync: { revision: head, syncOptions: ["CreateNamespace=true"] } } },
            "application/merge-patch+json",
        );
        const w = await cli(["wait", "--stage", "tst", "--timeout", "120", "--for", "synced", "--json"]);
        assert.equal(w.code, 0, w.stderr);
        assert.equal(JSON.parse(w.stdout).state, "synced");
        assert.ok(await cluster.client.get("/apis/apps/v1/namespaces/tst/deployments/web"), "the owners' sync did not apply the release");
    });

    it("CI's path: stages ci promote then stages ci wait through the service, with itg's generated token", async function () {
        const service = spawn(process.execPath, [STAGES_BIN, "serve", "--port", "0", "--replica", "argocd"], { env: p.env, stdio: ["ignore", "pipe", "pipe"] });
        try {
            let out = "";
            service.stdout.on("data", (b: Buffer) => (out += b.toString()));
            const url = await until("the service to listen", async () => /"msg":"listening","url":"([^"]+)"/.exec(out)?.[1], 60_000);
            const ci = (args: string[]) =>
                new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
                    const c = spawn(process.execPath, [STAGES_BIN, "ci", ...args], { env: { ...process.env, GITOPS_STAGES_URL: url, GITOPS_STAGES_TOKEN: p.ciTokens.itg }, stdio: ["ignore", "pipe", "pipe"] });
                    let stdout = "";
                    let stderr = "";
                    c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
                    c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
                    c.on("exit", (code) => resolve({ code, stdout, stderr }));
                });
            const promoted = await ci(["promote", "web@1.2.0", "--to", "itg", "--bundle", makeBundleDir(p.dir, "web"), "--image", "registry.example/web:1.2.0", "--commit", COMMIT]);
            assert.equal(promoted.code, 0, promoted.stderr);
            const waited = await ci(["wait", "--stage", "itg", "--timeout-minutes", "2", "--for", "synced"]);
            assert.equal(waited.code, 0, waited.stderr);
            assert.equal(JSON.parse(waited.stdout).commit, p.git("rev-parse", "main"));
            assert.match(waited.stderr, /stages ci wait: itg synced: synced at [0-9a-f]{12}, health Progressing/);
            const deployment = await cluster.client.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/itg/deployments/web");
            assert.equal(deployment?.spec.template.spec.containers[0].image, "registry.example/web:1.2.0");
            // itg's token reads only itg.
            const other = await ci(["wait", "--stage", "tst", "--timeout-minutes", "1", "--for", "synced"]);
            assert.equal(other.code, 3, other.stderr);
        } finally {
            if (service.exitCode === null && service.signalCode === null) {
                const exited = new Promise((r) => service.once("exit", r));
                service.kill("SIGTERM");
                await exited;
            }
        }
    });

    it("a release whose chart does not render on Argo CD's repo server ends stages wait at once as a conflict, with Argo CD's reason", async function () {
        const broken = makeBundleDir(p.dir, "web", { extra: { "chart/templates/broken.yaml": '{{ fail "this chart refuses to render" }}\n' } });
        const r = await cli(["promote", "web@1.3.0", "--to", "itg", "--bundle", broken, "--image", "registry.example/web:1.3.0", "--commit", COMMIT, "--json"]);
        assert.equal(r.code, 0, r.stderr);
        // A failure is not waited out: the answer is a conflict, not the deadline's timeout.
        const w = await cli(["wait", "--stage", "itg", "--timeout", "120", "--for", "synced", "--json"]);
        assert.equal(w.code, 5, w.stderr);
        const error = JSON.parse(w.stdout).error as { kind: string; reason: string; message: string };
        assert.equal(error.kind, "conflict", error.message);
        assert.equal(error.reason, "sync-failed");
        assert.match(error.message, /ComparisonError: .*this chart refuses to render/);
        // What runs is still the last release that rendered.
        const deployment = await cluster.client.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/itg/deployments/web");
        assert.equal(deployment?.spec.template.spec.containers[0].image, "registry.example/web:1.2.0");
    });

    it("bad input to wait changes nothing and names the field: an unknown stage, a bad timeout", async function () {
        const unknown = await cli(["wait", "--stage", "nope", "--json"]);
        assert.equal(unknown.code, 4, unknown.stderr);
        const bad = await cli(["wait", "--stage", "itg", "--timeout", "soon", "--json"]);
        assert.equal(bad.code, 2);
        assert.match(JSON.parse(bad.stdout).error.message, /--timeout = "soon": must be a whole number of seconds/);
        const badFor = await cli(["wait", "--stage", "itg", "--for", "healthy", "--json"]);
        assert.equal(badFor.code, 2);
        assert.match(JSON.parse(badFor.stdout).error.message, /--for = "healthy": must be "deployed"/);
    });
});
