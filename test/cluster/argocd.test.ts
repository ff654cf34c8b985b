/**
 * The GitOps loop closed on real parts: the platform stack on the cluster tier's kube-apiserver,
 * the ops repo served over git's smart HTTP on loopback with the read credentials the platform
 * generated, and a real Argo CD (repo server, application controller and API server, with the
 * platform's RBAC and local accounts) syncing what the runner commits. A promotion into itg, made with the `stages` CLI as
 * CI's runner would, is rendered by Argo CD from the ops repo's umbrella chart and applied.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import YAML from "yaml";

import { ArgoCd, startArgoCd } from "../support/argocd";
import { argoCdTestChart } from "../support/argocd-chart";
import { Cluster, exposeSealedSecretsController, hostAddress, startCluster } from "../support/cluster";
import { repoRoot } from "../support/engine";
import { GitHttpServer, freePort, makeBundleDir, startGitHttp } from "../support/fixtures";
import { plant } from "../support/planted";
import { Pipeline, bootstrapPipeline } from "../support/service";

const STAGES_BIN = path.join(repoRoot, "bin", "stages");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

type App = { metadata: { annotations?: Record<string, string> }; status?: { sync?: { status?: string; revision?: string }; health?: { status?: string }; conditions?: { type: string; message: string }[]; operationState?: { phase?: string; message?: string } } };

/**
 * Size of the suite: `npm test` runs the CI size; `npm run reliability` sets ARGOCD_SCENARIOS=full,
 * which adds the sync-window and rollback scenarios (about 45 s, that keep `npm test` under 20 min).
 */
const FULL = process.env.ARGOCD_SCENARIOS === "full";
/** A scenario of the full size only: not registered at CI size (the suite's title says which size ran). */
const full: Mocha.TestFunction = (FULL ? it : () => undefined) as Mocha.TestFunction;

describe(`the GitOps loop: a real Argo CD syncs what the runner commits (cluster tier, ${FULL ? "full size" : "CI size: sync windows and rollback run with npm run reliability"})`, function () {
    let cluster: Cluster;
    let gitServer: GitHttpServer;
    /** The read credentials the platform generated for Argo CD, set on the git server once known. */
    let readCredentials: { username: string; password: string } | undefined;
    let argocd: ArgoCd;
    let p: Pipeline;
    let gitDir: string;
    /** Argo CD API tokens of the platform's local accounts, by account. */
    const tokens: Record<string, string> = {};

    const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
            const c = spawn(process.execPath, [STAGES_BIN, ...args], { env: { ...p.env, GITOPS_STAGES_TOKEN: p.operatorToken, ...env }, stdio: ["ignore", "pipe", "pipe"] });
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
        gitServer = await startGitHttp(gitDir, () => readCredentials);
        const serverPort = await freePort();
        // A deny window open at every minute: perf's refuses every sync; prod's lets its owners'
        // manual syncs through (manualSync), as Argo CD documents.
        const always = { kind: "deny", schedule: "* * * * *", duration: "1h" };
        p = await bootstrapPipeline(
            "gitops-stages-argocd-",
            [{ name: "itg" }, { name: "tst" }, { name: "perf", syncWindows: [{ ...always, manualSync: false }] }, { name: "prod", syncWindows: [{ ...always, manualSync: true }] }],
            [],
            // A release manager of the CLI who may skip the stage order (recorded in the commit).
            { "release-manager": { teams: ["prod-owners"], overrideOrder: true } },
            {
                gitHost: { kind: "local", path: gitDir, serveUrl: gitServer.url("app-ops.git") },
                cluster: { kubeconfig: cluster.kubeconfig, skipAwait: true },
                argocd: {
                    chart: { path: argoCdTestChart() },
                    url: `http://127.0.0.1:${serverPort}`,
                    // Local accounts standing in for the owners' and a developer's SSO sessions.
                    accounts: [
                        { name: "tst-owner", teams: ["tst-owners"] },
                        { name: "perf-owner", teams: ["perf-owners"] },
                        { name: "prod-owner", teams: ["prod-owners"] },
                        { name: "dev", teams: ["developers"] },
                    ],
                },
                sealedSecrets: { chart: { path: path.join(repoRoot, "test/charts/sealed-secrets") } },
            },
        );
        // The operator sets the platform's generated read credentials on the git server.
        readCredentials = JSON.parse(p.pulumi("stack", "output", "opsReadCredentials", "--show-secrets", "--json", "--stack", "platform")) as { username: string; password: string };
        plant(readCredentials.password);
        const t0 = Date.now();
        argocd = await startArgoCd(cluster, serverPort);
        process.stderr.write(`      argo cd up in ${Date.now() - t0} ms\n`);
        const adminPassword = (JSON.parse(p.pulumi("stack", "output", "argocdAdminPassword", "--show-secrets", "--json", "--stack", "platform")) as string);
        for (const account of ["tst-owner", "perf-owner", "prod-owner", "dev", "gitops-stages-runner"]) tokens[account] = plant(await argocd.token(account, plant(adminPassword)));
    });

    after(async function () {
        await argocd?.stop();
        await gitServer?.stop();
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
        // Over git's smart HTTP with the credentials of the repository secret the platform made (the
        // server answers anything else with 401, as git's own first, anonymous request gets).
        assert.ok(gitServer.requests.some((r) => r.authorized && r.path === "/app-ops.git/git-upload-pack"), `Argo CD never fetched with the platform's credentials: ${JSON.stringify(gitServer.requests.slice(0, 10))}`);
        const secret = await cluster.client.get<{ data: Record<string, string> }>("/api/v1/namespaces/argocd/secrets/gitops-stages-ops-repo");
        assert.equal(Buffer.from(secret!.data.username, "base64").toString(), "argocd");
        assert.equal(Buffer.from(secret!.data.url, "base64").toString(), gitServer.url("app-ops.git"));
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

    it("the runner reads Argo CD through its API with its read-only account, which may not sync", async function () {
        const tokenFile = path.join(p.dataDir, "argocd-runner.token");
        fs.writeFileSync(tokenFile, tokens["gitops-stages-runner"], { mode: 0o600 });
        const settings = JSON.parse(fs.readFileSync(path.join(p.dataDir, "runner.json"), "utf8")) as Record<string, unknown>;
        fs.writeFileSync(path.join(p.dataDir, "runner.json"), JSON.stringify({ ...settings, argocd: { tokenFile } }));
        const st = await cli(["status", "--stage", "itg", "--json"]);
        assert.equal(st.code, 0, st.stderr);
        const row = (JSON.parse(st.stdout) as { deployment: { state: string; operationBy?: string } }[])[0];
        assert.equal(row.deployment.state, "synced");
        // itg's last sync was Argo CD's automated one.
        assert.equal(row.deployment.operationBy, "automated");
        // Read-only: Argo CD refuses the runner's account a sync, by its own RBAC.
        const sync = await cli(["sync", "--stage", "itg", "--json"], { ARGOCD_AUTH_TOKEN: tokens["gitops-stages-runner"] });
        assert.equal(sync.code, 3, sync.stderr);
        const error = JSON.parse(sync.stdout).error as { kind: string; message: string };
        assert.equal(error.kind, "forbidden");
        assert.match(error.message, /permission denied: applications, sync, itg\/itg, sub: gitops-stages-runner/);
        assert.ok(!sync.stdout.includes(tokens["gitops-stages-runner"]) && !sync.stderr.includes(tokens["gitops-stages-runner"]), "the token leaked into the answer");
        // A wrong token file is a clear error naming the setting, and nothing is read.
        fs.writeFileSync(path.join(p.dataDir, "runner.json"), JSON.stringify({ ...settings, argocd: { tokenFile: path.join(p.dir, "no-such.token") } }));
        const missing = await cli(["status", "--stage", "itg", "--json"]);
        fs.writeFileSync(path.join(p.dataDir, "runner.json"), JSON.stringify({ ...settings, argocd: { tokenFile } }));
        assert.equal(missing.code, 0, missing.stderr);
        assert.match((JSON.parse(missing.stdout) as { deployment: { message: string } }[])[0].deployment.message, /runner\.json argocd\.tokenFile \(.*no-such\.token\): cannot read the file \(ENOENT\)/);
    });

    it("tst syncs by hand: a promotion into tst waits for a sync by tst-owners, whose owner syncs it with stages sync as themselves", async function () {
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

        // What the runner and CI see: desired in the ops repo, not deployed, and whose sync it waits for.
        const st = await cli(["status", "--json"]);
        assert.equal(st.code, 0, st.stderr);
        const rows = JSON.parse(st.stdout) as { stage: string; deployment: { state: string; message: string; waitingFor?: string[] } }[];
        assert.equal(rows.find((x) => x.stage === "itg")!.deployment.state, "synced");
        assert.equal((rows.find((x) => x.stage === "tst") as unknown as { argocdApp: string }).argocdApp, `${argocd.url}/applications/argocd/tst`);
        const tst = rows.find((x) => x.stage === "tst")!.deployment;
        assert.equal(tst.state, "pending");
        assert.deepEqual(tst.waitingFor, ["tst-owners"]);
        assert.match(tst.message, /^waiting for a sync by tst-owners: committed, not yet synced: Argo CD reports OutOfSync at [0-9a-f]{12}$/);
        const human = await cli(["status"]);
        assert.match(human.stdout, /^\(deployed\)\s+synced\s+pending\s+\S+\s+\S+$/m);
        assert.match(human.stdout, /^ {2}tst: pending: waiting for a sync by tst-owners/m);
        // Waiting without the owners' sync ends as a timeout (exit 5) naming the state.
        const timedOut = await cli(["wait", "web@1.1.0", "--stage", "tst", "--timeout", "3", "--for", "synced"]);
        assert.equal(timedOut.code, 5, timedOut.stderr);
        assert.match(timedOut.stderr, /not synced after 3 s: waiting for a sync by tst-owners: committed/);
        // Waiting for a release the stage does not hold could never end: refused at once (exit 4).
        const notThere = await cli(["wait", "web@9.9.9", "--stage", "tst", "--timeout", "3", "--json"]);
        assert.equal(notThere.code, 4, notThere.stderr);
        assert.match(JSON.parse(notThere.stdout).error.message, /web@9\.9\.9 is not what stage tst holds \(its ops folder holds web@1\.1\.0\)/);
        // And by default (synced and Healthy), itg's rollout that cannot progress here is not enough.
        const unhealthy = await cli(["wait", "--stage", "itg", "--timeout", "3"]);
        assert.equal(unhealthy.code, 5, unhealthy.stderr);
        assert.match(unhealthy.stderr, /not deployed after 3 s: synced at [0-9a-f]{12}, health Progressing/);

        // A developer may read tst in Argo CD but not sync it: Argo CD itself refuses.
        const dev = await cli(["sync", "--stage", "tst", "--json"], { ARGOCD_AUTH_TOKEN: tokens.dev });
        assert.equal(dev.code, 3, dev.stderr);
        assert.match(JSON.parse(dev.stdout).error.message, /answered 403: permission denied: applications, sync, tst\/tst, sub: dev/);
        // A tst owner may not even see prod.
        const other = await cli(["sync", "--stage", "prod", "--json"], { ARGOCD_AUTH_TOKEN: tokens["tst-owner"] });
        assert.equal(other.code, 3, other.stderr);
        assert.match(JSON.parse(other.stdout).error.message, /answered 403: permission denied/);
        assert.equal(await cluster.client.get("/apis/apps/v1/namespaces/tst/deployments/web"), undefined, "a refused sync changed tst");

        // The owner syncs through the tool with their own token, from a file.
        const tokenFile = path.join(p.dir, "tst-owner.token");
        fs.writeFileSync(tokenFile, tokens["tst-owner"], { mode: 0o600 });
        const synced = await cli(["sync", "--stage", "tst", "--argocd-token-file", tokenFile, "--wait", "--timeout", "120", "--for", "synced", "--json"]);
        assert.equal(synced.code, 0, synced.stderr);
        const answer = JSON.parse(synced.stdout) as { deployment: { state: string; commit: string; operationBy?: string } };
        assert.equal(answer.deployment.state, "synced");
        assert.equal(answer.deployment.commit, head);
        assert.ok(await cluster.client.get("/apis/apps/v1/namespaces/tst/deployments/web"), "the owner's sync did not apply the release");
        // Argo CD recorded the owner as the one who started it, and the runner shows it.
        const live = (await app("tst")) as App & { status: { operationState?: { operation?: { initiatedBy?: { username?: string } } } } };
        assert.equal(live.status.operationState?.operation?.initiatedBy?.username, "tst-owner");
        const after = await cli(["status", "--stage", "tst"]);
        assert.match(after.stdout, /^ {2}tst: synced: synced at [0-9a-f]{12}, health Progressing \(last operation Succeeded by tst-owner at \S+\)$/m);
    });

    it("a sealed secret committed with stages secret set reaches tst through the umbrella chart when its owner syncs, and the real controller unseals it there", async function () {
        const host = hostAddress();
        const controller = await cluster.startSealedSecretsController(host);
        await exposeSealedSecretsController(cluster, controller, host);
        const value = plant(`tst-db-${Math.random().toString(36).slice(2)}`);
        const file = path.join(p.dir, "db-password");
        fs.writeFileSync(file, value, { mode: 0o600 });
        const set = await cli(["secret", "set", "web", "--stage", "tst", `PASSWORD=@${file}`, "--reason", "database credentials", "--json"]);
        assert.equal(set.code, 0, set.stderr);
        const sealed = YAML.parse(p.git("show", "main:environments/tst/secrets/web.yaml")) as { metadata: { name: string; namespace: string } };
        assert.equal(sealed.metadata.namespace, "tst");
        // Committed, not deployed: tst waits for its owners again.
        const st = await cli(["status", "--stage", "tst", "--json"]);
        assert.deepEqual((JSON.parse(st.stdout) as { deployment: { waitingFor?: string[] } }[])[0].deployment.waitingFor, ["tst-owners"]);
        const synced = await cli(["sync", "--stage", "tst", "--wait", "--timeout", "120", "--for", "synced", "--json"], { ARGOCD_AUTH_TOKEN: tokens["tst-owner"] });
        assert.equal(synced.code, 0, synced.stderr);
        // Argo CD applied the SealedSecret from the umbrella chart; the controller made the Secret.
        assert.ok(await cluster.client.get(`/apis/bitnami.com/v1alpha1/namespaces/tst/sealedsecrets/${sealed.metadata.name}`), "Argo CD did not apply the SealedSecret");
        const secret = await until("the controller unsealing the secret in tst", async () => {
            const s = await cluster.client.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/tst/secrets/${sealed.metadata.name}`);
            return s?.data?.PASSWORD ? s : undefined;
        });
        assert.equal(Buffer.from(secret.data!.PASSWORD, "base64").toString("utf8"), value);
        // The value is nowhere in the ops repo.
        assert.ok(!p.git("log", "-p", "main").includes(value), "the secret's value reached the ops repo");
    });

    full("a deny sync window blocks the perf owner's sync; prod's window allows its owners' manual syncs", async function () {
        const perf = await cli(["promote", "web@1.1.0", "--to", "perf", "--commit", COMMIT, "--json"]);
        assert.equal(perf.code, 0, perf.stderr);
        const blocked = await cli(["sync", "--stage", "perf", "--json"], { ARGOCD_AUTH_TOKEN: tokens["perf-owner"] });
        assert.equal(blocked.code, 3, blocked.stderr);
        const error = JSON.parse(blocked.stdout).error as { kind: string; reason: string; message: string };
        assert.equal(error.kind, "refused");
        assert.equal(error.reason, "sync-window");
        assert.match(error.message, /cannot sync: blocked by sync window/);
        assert.equal(await cluster.client.get("/apis/apps/v1/namespaces/perf/deployments/web"), undefined, "a blocked sync changed perf");

        const prod = await cli(["promote", "web@1.1.0", "--to", "prod", "--commit", COMMIT, "--json"]);
        assert.equal(prod.code, 0, prod.stderr);
        const synced = await cli(["sync", "--stage", "prod", "--wait", "--timeout", "120", "--for", "synced", "--json"], { ARGOCD_AUTH_TOKEN: tokens["prod-owner"] });
        assert.equal(synced.code, 0, synced.stderr);
        const deployment = await cluster.client.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/prod/deployments/web");
        assert.equal(deployment?.spec.template.spec.containers[0].image, "registry.example/web:1.1.0");
    });

    it("CI's path: stages ci promote then stages ci wait through the service, with itg's generated token", async function () {
        const service = spawn(process.execPath, [STAGES_BIN, "serve", "--port", "0", "--replica", "argocd", "--watch-seconds", "1"], { env: p.env, stdio: ["ignore", "pipe", "pipe"] });
        try {
            let out = "";
            service.stdout.on("data", (b: Buffer) => (out += b.toString()));
            const url = await until("the service to listen", async () => /"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(out)?.[1], 60_000);
            const ci = (args: string[]) =>
                new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
                    const c = spawn(process.execPath, [STAGES_BIN, "ci", ...args], { env: { ...process.env, GITOPS_STAGES_URL: url, GITOPS_STAGES_TOKEN: p.ciTokens.itg }, stdio: ["ignore", "pipe", "pipe"] });
                    let stdout = "";
                    let stderr = "";
                    c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
                    c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
                    c.on("exit", (code) => resolve({ code, stdout, stderr }));
                });
            // replicas: 0, so that without a kubelet the Deployment still gets Healthy (the
            // controller manager completes a rollout of no pods) and CI waits for the real thing.
            const promoted = await ci(["promote", "web@1.2.0", "--to", "itg", "--bundle", makeBundleDir(p.dir, "web", { replicas: 0 }), "--image", "registry.example/web:1.2.0", "--commit", COMMIT]);
            assert.equal(promoted.code, 0, promoted.stderr);
            const waited = await ci(["wait", "--stage", "itg", "--timeout-minutes", "2"]);
            assert.equal(waited.code, 0, waited.stderr);
            assert.equal(JSON.parse(waited.stdout).commit, p.git("rev-parse", "main"));
            assert.match(waited.stderr, /stages ci wait: itg deployed: synced at [0-9a-f]{12}, Healthy/);
            // The service's watch saw it too, and recorded it once (the local host has no GitHub to tell).
            const head = p.git("rev-parse", "main");
            const records = await until("the watch's record of itg at the promotion's commit", async () => {
                const res = await fetch(`${url}/v1/deployments/itg/records`, { headers: { authorization: `Bearer ${p.operatorToken}` } });
                const list = (await res.json()) as { commit: string; outcome: string; state: string; by: string | null; result?: { message: string } }[];
                return list.some((r) => r.commit === head && r.state === "done") ? list : undefined;
            }, 60_000);
            const mine = records.filter((r) => r.commit === head);
            assert.equal(mine.length, 1, JSON.stringify(records));
            assert.equal(mine[0].outcome, "deployed");
            assert.equal(mine[0].by, "automated");
            // What that commit brought, read from the commit: the promotion CI just made.
            assert.match(mine[0].result!.message, /^itg deployed at [0-9a-f]{12} \(web 1\.2\.0\): recorded in the request log; no GitHub dev repo to tell$/);
            const deployment = await cluster.client.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>("/apis/apps/v1/namespaces/itg/deployments/web");
            assert.equal(deployment?.spec.template.spec.containers[0].image, "registry.example/web:1.2.0");
            // itg's token reads only itg.
            const other = await ci(["wait", "--stage", "tst", "--timeout-minutes", "1", "--for", "synced"]);
            assert.equal(other.code, 3, other.stderr);

            // The status page, as a person sees it: each stage's live state as a colour, whose sync
            // a manual stage waits for, a link to Argo CD (screenshot kept in test-artifacts/).
            const executablePath = "/usr/bin/chromium";
            assert.ok(fs.existsSync(executablePath), "Chromium is not installed (Debian package chromium): `npm test` installs it");
            const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
            try {
                const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
                await page.goto(url + "/");
                await page.fill("#token", p.operatorToken);
                await page.click("button[type=submit]");
                await page.waitForSelector("#pipeline tr.deployed td");
                const cells = await page.$$eval("#pipeline tr.deployed td", (tds) => tds.map((td) => ({ cls: td.className, text: td.textContent ?? "", href: td.querySelector("a")?.getAttribute("href") ?? "" })));
                // The page shows what the service answers, stage by stage.
                const rows = (await (await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${p.operatorToken}` } })).json()) as { stage: string; deployment: { state: string; waitingFor?: string[] } }[];
                assert.deepEqual(cells.map((c) => c.cls), rows.map((r) => `state-${r.deployment.state}`), JSON.stringify(cells));
                for (const [i, r] of rows.entries()) {
                    if (r.deployment.waitingFor) assert.ok(cells[i].text.includes(`waiting for a sync by ${r.deployment.waitingFor.join(", ")}`), JSON.stringify(cells[i]));
                    assert.equal(cells[i].href, `${argocd.url}/applications/argocd/${r.stage}`);
                }
                assert.deepEqual(cells.slice(0, 2).map((c) => c.cls), ["state-deployed", "state-synced"]);
                assert.match(cells[0].text, /last operation Succeeded by automated at /);
                assert.match(cells[1].text, /last operation Succeeded by tst-owner at /);
                const artifacts = path.join(repoRoot, "test-artifacts");
                fs.mkdirSync(artifacts, { recursive: true });
                await page.screenshot({ path: path.join(artifacts, "status-page-live.png"), fullPage: true });
                assert.ok(fs.statSync(path.join(artifacts, "status-page-live.png")).size > 1000);
            } finally {
                await browser.close();
            }
        } finally {
            if (service.exitCode === null && service.signalCode === null) {
                const exited = new Promise((r) => service.once("exit", r));
                service.kill("SIGTERM");
                await exited;
            }
        }
    });

    it("self-heal: a hand edit of a live object in itg is reverted by Argo CD", async function () {
        const route = "/apis/apps/v1/namespaces/itg/deployments/web";
        type D = { spec: { template: { spec: { containers: { name: string; image: string }[] } } } };
        await cluster.client.request("PATCH", route, { spec: { template: { spec: { containers: [{ name: "app", image: "registry.example/web:hand-edit" }] } } } }, "application/strategic-merge-patch+json");
        assert.equal((await cluster.client.get<D>(route))?.spec.template.spec.containers[0].image, "registry.example/web:hand-edit");
        await until("self-heal of the hand-edited Deployment", async () => {
            const image = (await cluster.client.get<D>(route))?.spec.template.spec.containers[0].image;
            return image === "registry.example/web:1.2.0" ? image : undefined;
        });
    });

    full("a rollback of prod, once its owner syncs, brings back the previous release's objects", async function () {
        // Straight from itg to prod, as a release manager may (the commit records the override).
        const r = await cli(["promote", "web@1.2.0", "--to", "prod", "--override-order", "--commit", COMMIT, "--as", "release-manager", "--json"], { GITOPS_STAGES_TOKEN: "" });
        assert.equal(r.code, 0, r.stderr);
        assert.match(p.git("log", "-1", "--format=%B", "main"), /^Override: stage order overridden by the requester$/m);
        type D = { spec: { replicas: number; template: { spec: { containers: { image: string }[] } } } };
        const asOwner = { ARGOCD_AUTH_TOKEN: tokens["prod-owner"] };
        // 1.2.0 runs no pods: synced and Healthy, the default of --wait.
        const up = await cli(["sync", "--stage", "prod", "--wait", "--timeout", "120", "--json"], asOwner);
        assert.equal(up.code, 0, up.stderr);
        assert.equal(JSON.parse(up.stdout).deployment.state, "deployed");
        assert.equal((await cluster.client.get<D>("/apis/apps/v1/namespaces/prod/deployments/web"))?.spec.template.spec.containers[0].image, "registry.example/web:1.2.0");

        const back = await cli(["rollback", "web", "--stage", "prod", "--reason", "smoke test failed", "--json"]);
        assert.equal(back.code, 0, back.stderr);
        const pending = await cli(["status", "--stage", "prod", "--json"]);
        assert.equal((JSON.parse(pending.stdout) as { deployment: { state: string } }[])[0].deployment.state, "pending");
        const down = await cli(["sync", "--stage", "prod", "--wait", "--timeout", "120", "--for", "synced", "--json"], asOwner);
        assert.equal(down.code, 0, down.stderr);
        const d = await cluster.client.get<D>("/apis/apps/v1/namespaces/prod/deployments/web");
        assert.equal(d?.spec.template.spec.containers[0].image, "registry.example/web:1.1.0");
        assert.equal(d?.spec.replicas, 2);
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
