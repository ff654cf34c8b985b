/**
 * The platform stack: repositories, Argo CD, Sealed Secrets and generated secrets, wired from the
 * parsed configuration. Everything that can be decided without resources is decided by pure
 * builders (skeleton files, protection settings, Argo CD specs); this module creates resources.
 */
import { createHash } from "node:crypto";
import * as path from "node:path";

import * as github from "@pulumi/github";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

import type { PlatformConfig } from "../config/platform";
import { pushTokenDigest } from "../git/engine";
import { GitFiles, LocalBareRepository } from "../git/resources";
import { ArgoCd, SealedSecrets } from "./argocd";
import { SEALED_SECRETS_CONTROLLER } from "./argocd/specs";
import { GithubPipeline } from "./github";
import { githubToken } from "./github/token";
import { ChartRef, chartAvailability, chartUnavailableMessage, clusterProvider, describeChart, isRenderMode } from "./kubernetes";
import { devSkeleton, opsCheckWriterArgs, opsSkeleton } from "./ops/skeleton";
import { ciClientScript, opsValidateScript } from "./ops/workflows";
import { userError } from "./errors";
import { PLATFORM_AUTHOR } from "./ops/push-as";

import { SshKeyPair } from "./ssh-key";

/** A capability that the chosen git host does not have, reported instead of silently dropped. */
export interface NotApplicable {
    readonly item: string;
    readonly reason: string;
}

/** What the local git host cannot hold, with the reason. */
export function localHostNotApplicable(): NotApplicable[] {
    // The rest of the protection of main (deletion, force push, linear history, only the runner on
    // ops) is enforced by the local host's pre-receive hook, so it is not in this list.
    const reason = "the local git host is plain bare repositories: it has no accounts, permissions or CI";
    return [
        "pull-request reviews and required status checks of main",
        "teams and repository permissions",
        "GitHub Environments with runner URL and per-stage tokens",
        "read-only deploy key for Argo CD",
        "webhook from the ops repository to Argo CD",
    ].map((item) => ({ item, reason }));
}

/** Where the bare repositories of the local host live. */
export function localRepoPaths(cfg: PlatformConfig): { dev: string; ops: string } {
    if (cfg.gitHost.kind !== "local") throw new Error("local git host only");
    return {
        dev: path.join(cfg.gitHost.path, `${cfg.repositories.dev.name}.git`),
        ops: path.join(cfg.gitHost.path, `${cfg.repositories.ops.name}.git`),
    };
}

/** What the platform stack needs from the outside world (replaced in unit tests). */
export interface PlatformDeps {
    readonly chartAvailability: typeof chartAvailability;
    /** Environment to read GITHUB_TOKEN from. */
    readonly env: NodeJS.ProcessEnv;
}

/** The user name of Argo CD's read-only credentials for an ops repo the local host serves over HTTP(S). */
export const OPS_READ_USER = "argocd";

/** Declares the platform stack and returns its outputs. */
export async function platform(cfg: PlatformConfig, deps: PlatformDeps = { chartAvailability, env: process.env }): Promise<Record<string, unknown>> {
    const admin = new random.RandomPassword("argocd-admin", { length: 32, special: false });
    const webhookSecret = new random.RandomPassword("ops-webhook-secret", { length: 40, special: false });
    const tokens: Record<string, random.RandomPassword> = {};
    for (const s of cfg.stages) tokens[s.name] = new random.RandomPassword(`runner-token-${s.name}`, { length: 48, special: false });

    let devRepoUrl: pulumi.Input<string>;
    let opsRepoUrl: pulumi.Input<string>;
    let argocdOpsUrl: pulumi.Input<string>;
    let sshKey: SshKeyPair | undefined;
    let skeletonCommit: pulumi.Output<string>;
    let notApplicable: NotApplicable[] = [];
    let opsPushToken: pulumi.Output<string> | undefined;
    let opsChecks: pulumi.Output<{ api: string; repository: string }> | undefined;
    let opsReadCredentials: pulumi.Output<{ username: string; password: string }> | undefined;
    let devRepository: pulumi.Output<{ api: string; repository: string }> | undefined;

    if (cfg.gitHost.kind === "local") {
        const paths = localRepoPaths(cfg);
        // The runner's push token: the local host's hook lets only its holder push to ops main.
        opsPushToken = new random.RandomPassword("ops-push-token", { length: 48, special: false }).result;
        const runnerPush = opsPushToken.apply((token) => ({ token }));
        const dev = new LocalBareRepository("dev-repo", { path: paths.dev, defaultBranch: "main", protection: { role: "dev" } });
        const ops = new LocalBareRepository("ops-repo", {
            path: paths.ops,
            defaultBranch: "main",
            protection: { role: "ops", runnerTokenSha256: opsPushToken.apply(pushTokenDigest) },
        });
        new GitFiles("dev-skeleton", {
            remote: dev.path,
            branch: "main",
            files: devSkeleton(cfg, ciClientScript()),
            mode: "seed",
            message: "Skeleton of the dev repository\n\nWritten by the gitops-stages platform stack.\n",
            author: PLATFORM_AUTHOR,
        });
        const skeleton = new GitFiles("ops-skeleton", {
            remote: ops.path,
            branch: "main",
            files: opsSkeleton(cfg),
            mode: "seed",
            pushAs: runnerPush,
            message: "Skeleton of the ops repository\n\nWritten by the gitops-stages platform stack.\n",
            author: PLATFORM_AUTHOR,
        });
        new GitFiles("ops-check", opsCheckWriterArgs(opsValidateScript(), ops.path, PLATFORM_AUTHOR, runnerPush), { dependsOn: [skeleton] });
        skeletonCommit = skeleton.commit;
        devRepoUrl = dev.path;
        opsRepoUrl = ops.path;
        argocdOpsUrl = cfg.gitHost.serveUrl ?? pulumi.interpolate`file://${ops.path}`;
        // Served over HTTP(S), Argo CD reads the ops repo with credentials of its own, as from any
        // company git server: generated here, given to Argo CD's repository secret, and handed to
        // the operator (secret output opsReadCredentials) to set on the server.
        if (cfg.gitHost.serveUrl && /^https?:/.test(cfg.gitHost.serveUrl)) {
            const password = new random.RandomPassword("ops-read-password", { length: 40, special: false }).result;
            opsReadCredentials = password.apply((p) => ({ username: OPS_READ_USER, password: p }));
        }
        notApplicable = localHostNotApplicable();
        for (const n of notApplicable) pulumi.log.info(`not applicable with the local git host: ${n.item} (${n.reason})`);
    } else {
        const token = githubToken(deps.env);
        if (!token) {
            throw userError("gitops-stages:gitHost.kind is \"github\" but no token is configured: set the secret config github:token or GITHUB_TOKEN");
        }
        const provider = new github.Provider("github", { owner: cfg.gitHost.owner, baseUrl: cfg.gitHost.baseUrl, token });
        sshKey = new SshKeyPair("argocd-deploy-key", { comment: "argocd@gitops-stages" });
        const gh = new GithubPipeline(
            "github",
            {
                config: cfg,
                runnerTokens: Object.fromEntries(Object.entries(tokens).map(([s, t]) => [s, t.result])),
                deployPublicKey: sshKey.publicKey,
                webhookSecret: webhookSecret.result,
                skeletons: { dev: devSkeleton(cfg, ciClientScript()), ops: opsSkeleton(cfg) },
                opsValidator: opsValidateScript(),
                pushToken: token,
                author: PLATFORM_AUTHOR,
            },
            { providers: { github: provider } },
        );
        devRepoUrl = gh.devRepoUrl;
        opsRepoUrl = gh.opsRepoUrl;
        opsChecks = gh.opsChecks;
        devRepository = gh.devRepository;
        argocdOpsUrl = gh.opsRepoSshUrl;
        skeletonCommit = pulumi.output("");
    }

    const render = isRenderMode(cfg.cluster);
    const provider = clusterProvider("cluster", cfg.cluster);
    const refs: ChartRef[] = [
        { name: "argo-cd", source: cfg.argocd.chart, configKey: "gitops-stages:argocd.chart" },
        { name: "sealed-secrets", source: cfg.sealedSecrets.chart, configKey: "gitops-stages:sealedSecrets.chart" },
    ];
    const charts = await Promise.all(
        refs.map(async (ref) => {
            const availability = await deps.chartAvailability(ref.source);
            if (!availability.ok && !render) throw userError(chartUnavailableMessage(ref, availability.reason));
            if (!availability.ok) {
                pulumi.log.warn(
                    `render mode: would install ${describeChart(ref)}, which cannot be fetched here (${availability.reason}); ` +
                        `everything gitops-stages authors is rendered. To render the chart too, set ${ref.configKey} to a reachable source.`,
                );
            }
            return { ref, installed: availability.ok, reason: availability.ok ? undefined : availability.reason };
        }),
    );

    const argocd = new ArgoCd("argocd", {
        config: cfg,
        provider,
        opsRepoUrl: argocdOpsUrl,
        opsRepoSshPrivateKey: sshKey?.privateKey,
        ...(opsReadCredentials ? { opsRepoHttpCredentials: opsReadCredentials } : {}),
        adminPasswordHash: admin.bcryptHash,
        webhookSecret: webhookSecret.result,
        installChart: charts[0].installed,
    });
    new SealedSecrets("sealed-secrets", { config: cfg, provider, installChart: charts[1].installed });

    const tokenOutputs = Object.fromEntries(Object.entries(tokens).map(([s, t]) => [s, t.result]));
    return {
        gitHost: cfg.gitHost.kind,
        repositories: { dev: devRepoUrl, ops: opsRepoUrl },
        opsRepoUrlForArgoCd: argocdOpsUrl,
        opsSkeletonCommit: skeletonCommit,
        // How the runner pushes to the protected ops main (docs/protection.md): on the local host
        // with this token, which its hook checks; on GitHub by reporting the validate check first.
        opsPushToken: opsPushToken ? pulumi.secret(opsPushToken) : null,
        opsChecks: opsChecks ?? null,
        // GitHub: where the service records Deployments of what the stages' owners synced.
        devRepository: devRepository ?? null,
        // Local host served over HTTP(S): the credentials Argo CD reads the ops repo with, to set on the server.
        opsReadCredentials: opsReadCredentials ? pulumi.secret(opsReadCredentials) : null,
        argocdUrl: cfg.argocd.url,
        argocdAdminPassword: pulumi.secret(admin.result),
        argocdApplications: argocd.applications,
        runnerUrl: cfg.runner.url,
        runnerTokens: pulumi.secret(tokenOutputs),
        // Hashes let the runner service check tokens without holding them in clear.
        runnerTokenHashes: pulumi.unsecret(
            pulumi.all(tokenOutputs).apply((t) =>
                Object.fromEntries(Object.entries(t).map(([s, v]) => [s, createHash("sha256").update(v).digest("hex")])),
            ),
        ),
        // The pipeline as the runner needs it (order, owners, queue policy, freeze windows, approvals).
        stages: cfg.stages.map((s) => ({
            name: s.name,
            sync: s.sync,
            owners: s.owners,
            namespaces: s.namespaces,
            requireReview: s.requireReview,
            requireApproval: s.requireApproval,
            queue: s.queue,
            freezeWindows: s.freezeWindows,
        })),
        charts: charts.map((c) => ({ name: c.ref.name, source: describeChart(c.ref), installed: c.installed, reason: c.reason })),
        renderDir: render ? cfg.cluster.renderDir : undefined,
        // Where the runner reads what Argo CD has deployed (the Applications); no cluster in render mode.
        argocdCluster: {
            namespace: cfg.argocd.namespace,
            ...(render ? {} : { kubeconfig: cfg.cluster.kubeconfig, ...(cfg.cluster.context ? { context: cfg.cluster.context } : {}) }),
        },
        // Where `stages secret` finds the controller's certificate (and its rotate endpoint).
        sealedSecretsController: {
            namespace: cfg.sealedSecrets.namespace,
            name: SEALED_SECRETS_CONTROLLER,
            ...(render ? {} : { kubeconfig: cfg.cluster.kubeconfig, ...(cfg.cluster.context ? { context: cfg.cluster.context } : {}) }),
        },
        notApplicable,
    };
}
