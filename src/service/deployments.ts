/**
 * What the service sees Argo CD deploy, recorded where CI and people look: a stage's owners may
 * sync hours after the promotion, and no CI job should wait that long, so the service watches the
 * stages and, once a stage's last ops commit is deployed (Synced and Healthy) or its sync failed,
 * records that as a request of its own in the request log (one per stage, commit and outcome, made
 * unique by an idempotency key, so several replicas record it once) and, on the GitHub host, as a
 * GitHub Deployment of each app's release on the dev repo with its status. The dev repo's workflow
 * reacts to that `deployment_status`: the stage's tests, then the next promotion.
 */
import type { StatusRow } from "../runner/runner";
import { GitHubRepo, GitHubRest } from "../github/rest";

/** The principal of the requests the watch records: never a token's name (tokens cannot hold parentheses). */
export const OBSERVER = "(deployment-watch)";

/** The verb of those requests. */
export const REPORT_VERB = "report-deployment";

/** One observation to record: a stage's commit that Argo CD deployed, or whose sync failed. */
export interface Observation {
    readonly stage: string;
    readonly commit: string;
    readonly state: "deployed" | "failed";
    readonly message: string;
    /** Who started the sync that got there (Argo CD's record), when known. */
    readonly by?: string;
    /** The releases the stage's ops folder holds at that commit: app -> version and source commit. */
    readonly apps: Readonly<Record<string, { version: string; sourceCommit?: string }>>;
    /** Whether this is the pipeline's last stage (a production environment on GitHub). */
    readonly last: boolean;
    /** The key that makes the record unique: stage, commit and outcome. */
    readonly key: string;
}

/** The observations in a status: every stage deployed or failed at its last commit. */
export function observations(rows: readonly StatusRow[]): Observation[] {
    const out: Observation[] = [];
    for (const [i, r] of rows.entries()) {
        const d = r.deployment;
        if ((d.state !== "deployed" && d.state !== "failed") || !d.commit) continue;
        out.push({
            stage: r.stage,
            commit: d.commit,
            state: d.state,
            message: d.message,
            ...(d.operationBy ? { by: d.operationBy } : {}),
            apps: Object.fromEntries(Object.entries(r.apps).map(([app, e]) => [app, { version: e.version, ...(e.sourceCommit ? { sourceCommit: e.sourceCommit } : {}) }])),
            last: i === rows.length - 1,
            key: `deployment:${r.stage}:${d.commit}:${d.state}`,
        });
    }
    return out;
}

/** What recording an observation did. */
export interface Reported {
    readonly stage: string;
    readonly commit: string;
    readonly state: "deployed" | "failed";
    /** GitHub Deployments created on the dev repo, per app; empty without GitHub. */
    readonly githubDeployments: readonly { app: string; version: string; ref: string; id: number }[];
    readonly message: string;
}

/**
 * Records an observation: on GitHub (when `dev` and a token are given), one Deployment per app
 * release whose source commit is known, to the stage's environment, with the outcome as its
 * status and the release in its payload (`app`, `version`, `opsCommit`: what the workflow reads).
 */
export async function reportObservation(o: Observation, github?: { dev: GitHubRepo; rest: GitHubRest }): Promise<Reported> {
    const base = { stage: o.stage, commit: o.commit, state: o.state };
    if (!github) return { ...base, githubDeployments: [], message: `${o.stage} ${o.state} at ${o.commit.slice(0, 12)} (recorded in the request log; no GitHub dev repo to tell)` };
    const created: { app: string; version: string; ref: string; id: number }[] = [];
    for (const [app, e] of Object.entries(o.apps)) {
        if (!e.sourceCommit) continue;
        const d = await github.rest.recordDeployment(github.dev, {
            ref: e.sourceCommit,
            environment: o.stage,
            description: `${app} ${e.version} ${o.state === "deployed" ? "deployed" : "failed to deploy"} in ${o.stage}${o.by ? ` (sync by ${o.by})` : ""}`,
            payload: { app, version: e.version, opsCommit: o.commit },
            production: o.last,
            state: o.state === "deployed" ? "success" : "failure",
        });
        created.push({ app, version: e.version, ref: e.sourceCommit, id: d.id });
    }
    return { ...base, githubDeployments: created, message: `${o.stage} ${o.state} at ${o.commit.slice(0, 12)}: ${created.length} GitHub Deployment(s) recorded on ${github.dev.repository}` };
}
