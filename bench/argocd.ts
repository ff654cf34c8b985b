/**
 * The GitOps loop's latency on the cluster tier: from `stages promote` (the CLI, one process, as
 * CI runs it) to itg's Application Synced and Healthy at the promotion's ops commit, on a real
 * Argo CD with its default reconciliation interval (180 s), which is the baseline a user without
 * the ops repo's webhook or the runner's refresh waits for. The chart deploys a Deployment of no
 * pods, which the controller manager completes, so "Healthy" is Argo CD's own verdict.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { startArgoCd } from "../test/support/argocd";
import { argoCdTestChart } from "../test/support/argocd-chart";
import { startCluster } from "../test/support/cluster";
import { repoRoot } from "../test/support/engine";
import { freePort, makeBundleDir, startGitHttp } from "../test/support/fixtures";
import { bootstrapPipeline } from "../test/support/service";
import { median } from "./stats";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
/** Argo CD's default `timeout.reconciliation` (and the controller's default --app-resync). */
const DEFAULT_POLL_S = 180;

type App = { status?: { sync?: { status?: string; revision?: string }; health?: { status?: string }; operationState?: { phase?: string; syncResult?: { revision?: string } } } };

/** Promotion to Synced+Healthy in itg, `runs` times; prints medians and the ratio to the 180 s baseline. */
export async function argocdLoop(runs: number): Promise<{ promoteMs: number[]; syncedMs: number[] }> {
    const cluster = await startCluster();
    const gitDir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-bench-argocd-git-"));
    // Set on the git server once the platform generated them, as an operator would.
    const read: { credentials?: { username: string; password: string } } = {};
    const git = await startGitHttp(gitDir, () => read.credentials);
    const serverPort = await freePort();
    const p = await bootstrapPipeline("gitops-stages-bench-argocd-", [{ name: "itg" }, { name: "tst" }], [], {}, {
        gitHost: { kind: "local", path: gitDir, serveUrl: git.url("app-ops.git") },
        cluster: { kubeconfig: cluster.kubeconfig, skipAwait: true },
        argocd: { chart: { path: argoCdTestChart() }, url: `http://127.0.0.1:${serverPort}` },
        sealedSecrets: { chart: { path: path.join(repoRoot, "test/charts/sealed-secrets") } },
    });
    read.credentials = JSON.parse(p.pulumi("stack", "output", "opsReadCredentials", "--show-secrets", "--json", "--stack", "platform")) as { username: string; password: string };
    const argocd = await startArgoCd(cluster, serverPort, { appResyncSeconds: DEFAULT_POLL_S });
    const cli = (args: string[]) =>
        new Promise<void>((resolve, reject) => {
            const c = spawn(process.execPath, [path.join(repoRoot, "bin", "stages"), ...args], { env: { ...p.env, GITOPS_STAGES_TOKEN: p.operatorToken }, stdio: ["ignore", "ignore", "pipe"] });
            let err = "";
            c.stderr.on("data", (b: Buffer) => (err += b.toString()));
            c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`stages ${args.join(" ")}: exit ${code}: ${err}`))));
        });
    const synced = async (commit: string, deadline: number) => {
        for (;;) {
            const s = (await cluster.client.get<App>("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/itg"))?.status;
            if (s?.sync?.revision === commit && s.sync.status === "Synced" && s.health?.status === "Healthy" && s.operationState?.phase === "Succeeded" && s.operationState.syncResult?.revision === commit) return;
            if (Date.now() > deadline) throw new Error(`itg not Synced and Healthy at ${commit} in time: ${JSON.stringify(s)}`);
            await new Promise((r) => setTimeout(r, 100));
        }
    };
    const promoteMs: number[] = [];
    const syncedMs: number[] = [];
    try {
        // One warm-up promotion publishes the chart path Argo CD's repo server caches from then on.
        for (let i = 0; i <= runs; i++) {
            const t0 = Date.now();
            await cli(["promote", `web@1.0.${i}`, "--to", "itg", "--bundle", makeBundleDir(p.dir, "web", { replicas: 0 }), "--image", `registry.example/web:1.0.${i}`, "--commit", COMMIT, "--quiet"]);
            const t1 = Date.now();
            await synced(p.git("rev-parse", "main"), t0 + 4 * DEFAULT_POLL_S * 1000);
            const t2 = Date.now();
            if (i === 0) continue;
            promoteMs.push(t1 - t0);
            syncedMs.push(t2 - t0);
        }
    } finally {
        await argocd.stop();
        await git.stop();
        p.dispose();
        fs.rmSync(gitDir, { recursive: true, force: true });
        cluster.client.close();
        await cluster.stop();
    }
    const total = median(syncedMs) / 1000;
    console.log(`argo cd loop: promote -> itg Synced+Healthy at the commit: median ${total.toFixed(2)} s over ${runs} runs (min ${(Math.min(...syncedMs) / 1000).toFixed(2)}, max ${(Math.max(...syncedMs) / 1000).toFixed(2)}); of which the CLI promotion ${(median(promoteMs) / 1000).toFixed(2)} s`);
    console.log(`baseline: Argo CD's default reconciliation interval ${DEFAULT_POLL_S} s (what a commit waits for without webhook or refresh; up to that, ${DEFAULT_POLL_S / 2} s on average); ratio ${(total / DEFAULT_POLL_S).toFixed(3)} (goal: median under 10 s)`);
    return { promoteMs, syncedMs };
}
