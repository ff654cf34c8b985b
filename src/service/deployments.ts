/**
 * What the service sees Argo CD deploy, recorded where CI and people look: a stage's owners may
 * sync hours after the promotion, and no CI job should wait that long, so the service watches the
 * stages and, once a stage's last ops commit is deployed (Synced and Healthy) or its sync failed,
 * records that as a request of its own in the request log (one per stage, commit and outcome, made
 * unique by an idempotency key, so several replicas record it once). A worker then reports it: when
 * that commit is a promotion and the platform is on GitHub, as a GitHub Deployment of the release
 * on the dev repo with its status. The dev repo's workflow reacts to that `deployment_status`: the
 * stage's tests, then the next promotion.
 */
import type { CommitInfo } from "../git/engine";
import type { StatusRow } from "../runner/runner";
import { GitHubRepo, GitHubRest } from "../github/rest";

/** The principal of the requests the watch records: never a token's name (tokens cannot hold parentheses). */
export const OBSERVER = "(deployment-watch)";

/** The verb of those requests. */
export const REPORT_VERB = "report-deployment";

/** One observation to record: a stage's last commit that Argo CD deployed, or whose sync failed. */
export interface Observation {
    readonly stage: string;
    readonly commit: string;
    readonly state: "deployed" | "failed";
    readonly message: string;
    /** Who started the sync that got there (Argo CD's record), when known. */
    readonly by?: string;
    /** Whether this is the pipeline's last stage (a production environment on GitHub). */
    readonly last: boolean;
    /** The key that makes the record unique: stage, commit and outcome (at most 124 characters). */
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
            last: i === rows.length - 1,
            // 40 hex digits name a commit in SHA-1 and SHA-256 repositories alike, and keep the key
            // within the request log's 128 characters (a 63-character stage: 124).
            key: `deployment:${r.stage}:${d.commit.slice(0, 40)}:${d.state}`,
        });
    }
    return out;
}

/** What a stage's commit changed, from its message (see `commitMessage`): a release of one app, or nothing of that kind. */
export interface CommitChange {
    readonly kind: "promote" | "rollback";
    readonly app: string;
    readonly version: string;
    readonly sourceCommit?: string;
    readonly requestId?: string;
}

/**
 * The release a commit brought, read from the commit itself (its subject and trailers), so a record
 * names what that commit deployed and never what the stage's stack says later. Holds, releases of
 * holds, secrets and operators' commits bring no release: undefined.
 */
export function commitChange(c: Pick<CommitInfo, "subject" | "trailers">): CommitChange | undefined {
    const m = /^(Promote|Roll back) ([a-z][a-z0-9-]*) (\S+) to ([a-z][a-z0-9-]*) \(request ([^)\s]+)\)$/.exec(c.subject);
    if (!m) return undefined;
    return {
        kind: m[1] === "Promote" ? "promote" : "rollback",
        app: m[2],
        version: m[3],
        ...(c.trailers["Source-Commit"] ? { sourceCommit: c.trailers["Source-Commit"] } : {}),
        requestId: c.trailers["Request-Id"] ?? m[5],
    };
}

/**
 * The releases a deployed commit holds that promotions brought, one per app: walking the stage's
 * commits from that commit back, each app's newest promotion or rollback is what runs; the
 * promotions among them are what the watch reports (several may reach a manual stage before its
 * owners sync, and a hold, a secret or an operator's commit may come after them).
 */
export function promotionsAt(commits: readonly Pick<CommitInfo, "commit" | "subject" | "trailers">[]): { commit: string; change: CommitChange }[] {
    const seen = new Set<string>();
    const out: { commit: string; change: CommitChange }[] = [];
    for (const c of commits) {
        const change = commitChange(c);
        if (!change || seen.has(change.app)) continue;
        seen.add(change.app);
        if (change.kind === "promote") out.push({ commit: c.commit, change });
    }
    return out;
}

/** What recording an observation did. */
export interface Reported {
    readonly stage: string;
    readonly commit: string;
    readonly state: "deployed" | "failed";
    /** The promotions the deployed commit holds, each with its GitHub Deployment (made, or found made by an earlier attempt) or why there is none. */
    readonly releases: readonly { readonly app: string; readonly version: string; readonly opsCommit: string; readonly githubDeployment: number | null; readonly note?: string }[];
    readonly message: string;
}

/**
 * Records an observation. On GitHub (when `github` is given), for each promotion the deployed
 * commit holds whose source commit is known: one Deployment of the release to the stage's
 * environment, with the outcome as its status and the release in its payload (`app`, `version`,
 * `kind`, `opsCommit`: the promotion's own commit; `stageCommit`: the commit deployed). Idempotent
 * by `opsCommit` (see `GitHubRest.recordDeployment`), so a release reported with an earlier commit
 * is found, not made again, and no workflow runs twice.
 */
export async function reportObservation(o: Observation, promotions: readonly { commit: string; change: CommitChange }[], github?: { dev: GitHubRepo; rest: GitHubRest }): Promise<Reported> {
    const at = `${o.stage} ${o.state} at ${o.commit.slice(0, 12)}`;
    const names = promotions.map((p) => `${p.change.app} ${p.change.version}`).join(", ") || "no promoted release";
    const releases: Reported["releases"][number][] = [];
    for (const p of promotions) {
        const base = { app: p.change.app, version: p.change.version, opsCommit: p.commit };
        if (!github) {
            releases.push({ ...base, githubDeployment: null });
            continue;
        }
        if (!p.change.sourceCommit) {
            releases.push({ ...base, githubDeployment: null, note: "no source commit: no Deployment" });
            continue;
        }
        const d = await github.rest.recordDeployment(github.dev, {
            ref: p.change.sourceCommit,
            environment: o.stage,
            description: `${p.change.app} ${p.change.version} ${o.state === "deployed" ? "deployed" : "failed to deploy"} in ${o.stage}${o.by ? ` (sync by ${o.by})` : ""}`,
            payload: { app: p.change.app, version: p.change.version, kind: p.change.kind, opsCommit: p.commit, stageCommit: o.commit },
            production: o.last,
            state: o.state === "deployed" ? "success" : "failure",
        });
        releases.push({ ...base, githubDeployment: d.id, ...(d.existed ? { note: "found, made by an earlier report" } : {}) });
    }
    const message = github
        ? `${at} (${names}): ${releases.filter((r) => r.githubDeployment !== null).length} GitHub Deployment(s) on ${github.dev.repository}`
        : `${at} (${names}): recorded in the request log; no GitHub dev repo to tell`;
    return { stage: o.stage, commit: o.commit, state: o.state, releases, message };
}
