/**
 * Everything the platform stack declares on GitHub: teams, the dev and ops repositories with
 * their permissions and protection of `main`, one GitHub Environment per stage on the dev repo
 * holding the runner's URL and that stage's token, the ops repo's read-only deploy key for Argo CD
 * and its webhook to Argo CD.
 */
import * as github from "@pulumi/github";
import * as pulumi from "@pulumi/pulumi";

import type { PlatformConfig } from "../../config/platform";
import { GitFiles } from "../../git/resources";
import { opsCheckWriterArgs } from "../ops/skeleton";
import { branchProtection } from "./protection";
import { tokenRemote } from "./token";

/** Inputs of {@link GithubPipeline}. */
export interface GithubPipelineArgs {
    readonly config: PlatformConfig;
    /** Per stage: the runner token CI uses to promote into that stage. */
    readonly runnerTokens: Record<string, pulumi.Input<string>>;
    /** OpenSSH public key Argo CD uses to read the ops repo. */
    readonly deployPublicKey: pulumi.Input<string>;
    /** Shared secret of the ops repo's webhook to Argo CD. */
    readonly webhookSecret: pulumi.Input<string>;
    /** Files each repository starts with, written as one commit each (seed: never overwritten). */
    readonly skeletons: { readonly dev: Record<string, string>; readonly ops: Record<string, string> };
    /** The compiled `validate` check the ops repo's workflow runs (owned, unlike the seeded skeleton). */
    readonly opsValidator: string;
    /**
     * Token used to push the skeleton commits over HTTPS. Commits after protection exists (a new
     * stage's folder, an upgraded check) pass it as the runner's do, so it must be the runner's.
     */
    readonly pushToken: pulumi.Input<string>;
    /** Commit author of the skeleton commits. */
    readonly author: { name: string; email: string };
}


/**
 * The REST API root for a `gitHost.baseUrl` as the GitHub provider reads it: github.com's API, or
 * `<url>/api/v3/` for GitHub Enterprise Server, whose root URL `baseUrl` is.
 */
export function githubApiRoot(baseUrl: string | undefined): string {
    if (!baseUrl) return "https://api.github.com";
    const u = new URL(baseUrl);
    if (u.host === "api.github.com") return "https://api.github.com";
    const p = u.pathname.replace(/\/+$/, "");
    return `${u.origin}${p.endsWith("/api/v3") ? p : `${p}/api/v3`}`;
}

/** Team slug -> the team's role in the pipeline, for descriptions. */
function teamDescriptions(cfg: PlatformConfig): Record<string, string> {
    const out: Record<string, string> = {
        [cfg.teams.platformAdmins]: "Administers the gitops-stages platform",
        [cfg.teams.developers]: "Develops the applications (dev repository)",
    };
    for (const s of cfg.stages) {
        for (const o of s.owners) out[o] = out[o] ?? `Owns stage ${s.name}`;
    }
    return out;
}

/** GitHub resources of the pipeline. */
export class GithubPipeline extends pulumi.ComponentResource {
    /** HTTPS clone URLs. */
    readonly devRepoUrl: pulumi.Output<string>;
    readonly opsRepoUrl: pulumi.Output<string>;
    /** SSH URL of the ops repo (what Argo CD uses with the deploy key). */
    readonly opsRepoSshUrl: pulumi.Output<string>;
    /** Where the runner reports the ops repo's `validate` status (the platform's `opsChecks` output). */
    readonly opsChecks: pulumi.Output<{ api: string; repository: string }>;
    /** Where the service records GitHub Deployments of the stages (the platform's `devRepository` output). */
    readonly devRepository: pulumi.Output<{ api: string; repository: string }>;
    /** The ops repo resource, for resources that must wait for it. */
    readonly opsRepo: github.Repository;
    readonly devRepo: github.Repository;

    constructor(name: string, args: GithubPipelineArgs, opts?: pulumi.ComponentResourceOptions) {
        super("gitops-stages:github:GithubPipeline", name, {}, opts);
        const cfg = args.config;
        const host = cfg.gitHost;
        if (host.kind !== "github") throw new Error("GithubPipeline needs gitHost.kind = github");
        const child = { parent: this };

        const teams: Record<string, github.Team> = {};
        for (const [slug, description] of Object.entries(teamDescriptions(cfg))) {
            teams[slug] = new github.Team(`${name}-team-${slug}`, { name: slug, description, privacy: "closed" }, child);
        }

        const repo = (role: "dev" | "ops") => {
            const s = cfg.repositories[role];
            return new github.Repository(
                `${name}-${role}`,
                {
                    name: s.name,
                    description: s.description,
                    visibility: s.visibility,
                    // The ops repo's first commit is the skeleton written by the platform stack.
                    autoInit: role === "dev",
                    hasIssues: role === "dev",
                    hasWiki: false,
                    hasProjects: false,
                    deleteBranchOnMerge: true,
                    allowMergeCommit: role === "dev",
                    allowRebaseMerge: true,
                    allowSquashMerge: true,
                    vulnerabilityAlerts: true,
                },
                child,
            );
        };
        this.devRepo = repo("dev");
        this.opsRepo = repo("ops");
        this.devRepoUrl = this.devRepo.httpCloneUrl;
        this.opsRepoUrl = this.opsRepo.httpCloneUrl;
        this.opsRepoSshUrl = this.opsRepo.sshCloneUrl;
        const api = githubApiRoot(host.baseUrl);
        this.opsChecks = this.opsRepo.name.apply((n) => ({ api, repository: `${host.owner}/${n}` }));
        this.devRepository = this.devRepo.name.apply((n) => ({ api, repository: `${host.owner}/${n}` }));

        // Repository permissions: admins administer both; developers write code and read the ops
        // repo; stage owners read code and write the ops repo (their folders, via CODEOWNERS review).
        const grant = (team: string, r: github.Repository, role: "dev" | "ops", permission: string) =>
            new github.TeamRepository(`${name}-${role}-${team}`, { teamId: teams[team].id, repository: r.name, permission }, child);
        grant(cfg.teams.platformAdmins, this.devRepo, "dev", "admin");
        grant(cfg.teams.platformAdmins, this.opsRepo, "ops", "admin");
        grant(cfg.teams.developers, this.devRepo, "dev", "push");
        grant(cfg.teams.developers, this.opsRepo, "ops", "pull");
        const owners = [...new Set(cfg.stages.flatMap((s) => s.owners))].filter(
            (t) => t !== cfg.teams.platformAdmins && t !== cfg.teams.developers,
        );
        for (const team of owners) {
            grant(team, this.opsRepo, "ops", "push");
            grant(team, this.devRepo, "dev", "pull");
        }

        // On ops, commits after the first reach a protected main: they report validate, as the runner's do.
        const opsPushAs = pulumi.secret(pulumi.all([this.opsChecks, args.pushToken]).apply(([c, token]) => ({ checks: { ...c, token } })));
        for (const role of ["dev", "ops"] as const) {
            const r = role === "dev" ? this.devRepo : this.opsRepo;
            const remote = pulumi.secret(pulumi.all([r.httpCloneUrl, args.pushToken]).apply(([url, token]) => tokenRemote(url, token)));
            const skeleton = new GitFiles(
                `${name}-${role}-skeleton`,
                {
                    remote,
                    branch: "main",
                    files: args.skeletons[role],
                    mode: "seed",
                    message: `Skeleton of the ${role} repository\n\nWritten by the gitops-stages platform stack.\n`,
                    author: args.author,
                    ...(role === "ops" ? { pushAs: opsPushAs } : {}),
                },
                child,
            );
            if (role === "ops") {
                new GitFiles(`${name}-ops-check`, opsCheckWriterArgs(args.opsValidator, remote, args.author, opsPushAs), { ...child, dependsOn: [skeleton] });
            }
            // Protection needs the branch, which the skeleton commit creates on the ops repo.
            new github.BranchProtection(
                `${name}-${role}-main`,
                { repositoryId: r.nodeId, ...branchProtection(role, cfg.repositories[role], host.runnerActor) },
                { parent: this, dependsOn: [skeleton] },
            );
        }

        for (const s of cfg.stages) {
            const env = new github.RepositoryEnvironment(
                `${name}-env-${s.name}`,
                {
                    repository: this.devRepo.name,
                    environment: s.name,
                    preventSelfReview: s.requireReview,
                    canAdminsBypass: false,
                    // Only workflows running on protected branches (main) may deploy.
                    deploymentBranchPolicy: { protectedBranches: true, customBranchPolicies: false },
                    reviewers: s.requireReview
                        ? [{ teams: s.owners.map((o) => teams[o].id.apply((id) => Number(id))) }]
                        : [],
                },
                child,
            );
            new github.ActionsEnvironmentVariable(
                `${name}-env-${s.name}-url`,
                { repository: this.devRepo.name, environment: env.environment, variableName: "GITOPS_STAGES_RUNNER_URL", value: cfg.runner.url },
                child,
            );
            // Only a job that runs in this Environment (after its review, where required) sees the token.
            new github.ActionsEnvironmentSecret(
                `${name}-env-${s.name}-token`,
                {
                    repository: this.devRepo.name,
                    environment: env.environment,
                    secretName: "GITOPS_STAGES_RUNNER_TOKEN",
                    plaintextValue: pulumi.secret(args.runnerTokens[s.name]),
                },
                child,
            );
        }

        new github.RepositoryDeployKey(
            `${name}-ops-deploy-key`,
            { repository: this.opsRepo.name, title: "argocd (read-only)", key: args.deployPublicKey, readOnly: true },
            child,
        );
        new github.RepositoryWebhook(
            `${name}-ops-webhook`,
            {
                repository: this.opsRepo.name,
                events: ["push"],
                active: true,
                configuration: {
                    url: `${cfg.argocd.url.replace(/\/$/, "")}/api/webhook`,
                    contentType: "json",
                    secret: pulumi.secret(args.webhookSecret),
                    insecureSsl: false,
                },
            },
            child,
        );

        this.registerOutputs({ devRepoUrl: this.devRepoUrl, opsRepoUrl: this.opsRepoUrl });
    }
}
