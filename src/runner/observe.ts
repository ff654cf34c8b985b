/**
 * What the runner reads of the stages, changing nothing: what runs where (the stacks' outputs) and
 * what Argo CD has deployed of it, waits for a deployment, an owner's sync through Argo CD, the
 * audit trail (the engine's update history linked to the ops repo's commits) and drift.
 */
import { COMMIT, COMMIT_RULE, Checker, DNS_LABEL, DNS_LABEL_RULE, formatProblem } from "../config/validate";
import type { CommitDetails, CommitInfo } from "../git/engine";
import type { StageChange, StageRelease } from "../config/stage";
import { type PipelineStage, findStage } from "./core";
import { ArgoCdApplications, type ArgoCdClient } from "./argocd";
import { type ApplicationStatus, type ApplicationsPort, type Deployment, judge, waitDeployed } from "./deployed";
import { RunnerError } from "./errors";
import type { HistoryEntry } from "./ports";
import type { RunnerDeps } from "./runner";

/**
 * Refuses (not found) a wait for a release the stage's ops folder does not hold: Argo CD could
 * never deploy it there, so waiting would only end at the deadline.
 */
function holdsRelease(stage: string, outputs: Record<string, unknown>, release: { app: string; version: string }): void {
    const held = ((outputs.releases ?? {}) as Record<string, { version?: string }>)[release.app]?.version;
    if (held !== release.version) {
        throw new RunnerError("not-found", `${release.app}@${release.version} is not what stage ${stage} holds (${held ? `its ops folder holds ${release.app}@${held}` : `it holds no release of ${release.app}`}): nothing to wait for`);
    }
}

/** The answer to an owner's sync: where it was started and, when waited for, what it deployed. */
export interface SyncAnswer {
    readonly stage: string;
    /** Argo CD's API server that took the sync. */
    readonly argocd: string;
    readonly deployment?: Deployment;
    readonly message: string;
}

/** What runs in a stage, desired (ops repo) and deployed (Argo CD). */
export interface StatusRow {
    readonly stage: string;
    readonly apps: Record<string, StageRelease & { digest?: string; image?: string }>;
    readonly lastChange: StageChange | null;
    /** What Argo CD has deployed of it (see deployed.ts). */
    readonly deployment: Deployment;
    /** The stage's Application in Argo CD's web UI (its last operation, its resources); absent in render mode. */
    readonly argocdApp?: string;
}

/** One audit entry of a stage. */
export interface AuditEntry {
    readonly version?: number;
    readonly kind: string;
    readonly result: string;
    readonly startTime: string;
    readonly endTime?: string;
    readonly durationMs?: number;
    readonly change?: StageChange;
    readonly message: string;
    /** The ops repo commit the update wrote (found by its Request-Id trailer), when it wrote one. */
    readonly opsCommit?: string;
    /** That commit's web page, when the ops repo's host has one (GitHub). */
    readonly opsCommitUrl?: string;
}

/** How many of a stage's newest ops repo commits the audit trail looks through for its links. */
export const HISTORY_COMMITS = 200;

/** The stages as they are: reads only. */
export class StageView {
    constructor(private readonly deps: Pick<RunnerDeps, "engine" | "ops" | "applications">) {}

    /** What runs where: desired (the stage stacks' outputs) and deployed (Argo CD). */
    async status(stageName?: string): Promise<StatusRow[]> {
        const stages = await this.deps.engine.pipeline();
        const wanted = stageName ? [findStage(stages, stageName).stage] : stages;
        const apps = await this.applications();
        const platform = await this.deps.engine.platformOutputs();
        const ui = apps.port && typeof platform.argocdUrl === "string" ? platform.argocdUrl.replace(/\/+$/, "") : undefined;
        const namespace = (platform.argocdCluster as { namespace?: string } | undefined)?.namespace ?? "argocd";
        try {
            return await Promise.all(
                wanted.map(async (s) => {
                    const outputs = (await this.deps.engine.stackOutputs(s.name)) ?? {};
                    return {
                        stage: s.name,
                        apps: (outputs.releases as StatusRow["apps"]) ?? {},
                        lastChange: (outputs.lastChange as StageChange | null) ?? null,
                        deployment: await this.judgeDeployment(s, await this.stageHead(s.name, outputs), apps),
                        ...(ui ? { argocdApp: `${ui}/applications/${encodeURIComponent(namespace)}/${encodeURIComponent(s.name)}` } : {}),
                    };
                }),
            );
        } finally {
            if (apps.port) apps.close();
        }
    }

    /**
     * What Argo CD has deployed of a stage, against the stage's last ops commit; with `refresh`,
     * Argo CD is asked to compare again first (its answer shows on a later read).
     */
    async deployment(stageName: string, refresh = false, release?: { app: string; version: string }): Promise<Deployment> {
        const { stage } = findStage(await this.deps.engine.pipeline(), stageName);
        const outputs = (await this.deps.engine.stackOutputs(stageName)) ?? {};
        if (release) holdsRelease(stageName, outputs, release);
        const apps = await this.applications();
        try {
            if (refresh && apps.port) await apps.port.refresh(stageName).catch(() => undefined);
            return await this.judgeDeployment(stage, await this.stageHead(stageName, outputs), apps);
        } finally {
            if (apps.port) apps.close();
        }
    }

    /**
     * Waits until Argo CD has synced the stage's last ops commit (for a manual stage: until its
     * owners sync it) and the stage is Healthy (`until: "synced"`: synced, whatever the health); a
     * failed sync ends the wait as a conflict, the deadline as a timeout. The commit is the one
     * that was last when the wait began. With `release`, the stage's ops folder must hold that
     * release of the app (else not-found: waiting could never see it).
     */
    async wait(
        stageName: string,
        timeoutMs: number,
        opts: { until?: "deployed" | "synced"; signal?: AbortSignal; release?: { app: string; version: string }; applications?: ApplicationsPort; requested?: { previous: { startedAt?: string; finishedAt?: string } | null } } = {},
    ): Promise<Deployment> {
        const { stage } = findStage(await this.deps.engine.pipeline(), stageName);
        const outputs = (await this.deps.engine.stackOutputs(stageName)) ?? {};
        if (opts.release) holdsRelease(stageName, outputs, opts.release);
        const apps = opts.applications ? { port: opts.applications, missing: "", close: () => undefined } : await this.applications();
        if (!apps.port) throw apps.failure ? new RunnerError(apps.failure.kind, apps.missing, apps.failure.reason) : new RunnerError("not-found", apps.missing);
        try {
            const port = apps.port;
            const commit = await this.stageHead(stageName, outputs);
            return await waitDeployed(() => this.judgeDeployment(stage, commit, apps, opts.requested), () => port.refresh(stageName), { timeoutMs, until: opts.until, signal: opts.signal });
        } finally {
            apps.close();
        }
    }

    /**
     * An owner's sync of a stage through Argo CD's API with the owner's own client (token): Argo CD
     * checks its RBAC and sync windows and records the owner as the operation's initiator; the
     * runner's rights play no part. With `waitMs`, waits as {@link wait} does, reading with the
     * same client.
     */
    async sync(stageName: string, client: ArgoCdClient, opts: { waitMs?: number; until?: "deployed" | "synced"; signal?: AbortSignal } = {}): Promise<SyncAnswer> {
        findStage(await this.deps.engine.pipeline(), stageName);
        const app = await client.sync(stageName);
        // The answer carries the operation just requested; its status still shows the previous one.
        const by = app.operation?.initiatedBy?.username;
        const started: SyncAnswer = { stage: stageName, argocd: client.url, message: `Argo CD started a sync of ${stageName}${by ? ` for ${by}` : ""}` };
        if (opts.waitMs === undefined) return started;
        const before = app.status?.operationState;
        const requested = { previous: before ? { ...(before.startedAt ? { startedAt: before.startedAt } : {}), ...(before.finishedAt ? { finishedAt: before.finishedAt } : {}) } : null };
        const deployment = await this.wait(stageName, opts.waitMs, { until: opts.until, signal: opts.signal, applications: new ArgoCdApplications(client), requested });
        return { ...started, deployment, message: `${stageName} ${deployment.state}: ${deployment.message}` };
    }

    /** Argo CD's Applications, once per call (or why there are none). */
    async applications(): Promise<{ port?: ApplicationsPort; missing: string; failure?: RunnerError; close: () => void }> {
        try {
            const port = await this.deps.applications?.();
            return { port, missing: "no Argo CD configured (the platform renders Kubernetes to files)", close: () => port?.close?.() };
        } catch (e) {
            // Configured but not usable (a token file that cannot be read, no platform output): not
            // render mode, and the failure keeps its kind (a bad setting is invalid, not unavailable).
            const failure = e instanceof RunnerError ? e : new RunnerError("unavailable", e instanceof Error ? e.message : String(e));
            return { missing: `cannot reach Argo CD's Applications: ${failure.message}`, failure, close: () => undefined };
        }
    }

    /**
     * The stage's last ops commit: the newest commit that touched its folder (promotions, and
     * secrets and operators' changes too, which the Application renders as well); the stack's own
     * commit when the ops repo cannot be read.
     */
    private async stageHead(stage: string, outputs: Record<string, unknown>): Promise<string | undefined> {
        const own = typeof outputs.opsCommit === "string" && outputs.opsCommit ? outputs.opsCommit : undefined;
        try {
            return (await this.deps.ops.stageCommits(stage, 1))[0]?.commit ?? own;
        } catch {
            return own;
        }
    }

    private async judgeDeployment(
        stage: PipelineStage,
        commit: string | undefined,
        apps: { port?: ApplicationsPort; missing: string; failure?: RunnerError },
        requested?: { previous: { startedAt?: string; finishedAt?: string } | null },
    ): Promise<Deployment> {
        const c = commit ? { commit } : {};
        if (!apps.port) return { state: "unknown", reason: apps.failure ? "unreadable" : "render", ...c, message: `live state unknown: ${apps.missing}` };
        let status: ApplicationStatus | undefined;
        try {
            status = await apps.port.application(stage.name);
        } catch (e) {
            const denied = e instanceof RunnerError && (e.kind === "unauthorized" || e.kind === "forbidden");
            return { state: "unknown", reason: denied ? "denied" : "unreadable", ...c, message: `cannot read Argo CD's Application ${stage.name}: ${e instanceof Error ? e.message : String(e)}` };
        }
        // An ancestry check that fails (the ops repo unreachable) counts as "not contained": pending, read again.
        const d = await judge(status, commit, (a, b) => this.deps.ops.contains(a, b).catch(() => false), requested);
        // A manual stage's commit waits for its owners: say whose sync it is, as people ask "who do I ping?".
        if (d.state === "pending" && stage.sync === "manual" && stage.owners.length > 0) {
            return { ...d, waitingFor: [...stage.owners], message: `waiting for a sync by ${stage.owners.join(", ")}: ${d.message}` };
        }
        return d;
    }

    /** The audit trail of a stage: each update with who, what, when, from which commit, and the result. */
    async history(stageName: string): Promise<AuditEntry[]> {
        findStage(await this.deps.engine.pipeline(), stageName);
        const [entries, commits] = await Promise.all([this.deps.engine.history(stageName), this.deps.ops.stageCommits(stageName, HISTORY_COMMITS)]);
        // Each update's commit carries its request id as a trailer: the link from the audit trail to the ops repo.
        const byRequest = new Map<string, CommitInfo & { url?: string }>();
        for (const c of [...commits].reverse()) if (c.trailers["Request-Id"]) byRequest.set(c.trailers["Request-Id"], c);
        return entries.map((h: HistoryEntry) => {
            const change = (h.config.stage as { change?: StageChange } | undefined)?.change;
            const opsCommit = change && h.kind === "update" ? byRequest.get(change.requestId) : undefined;
            return {
                version: h.version,
                kind: h.kind,
                result: h.result,
                startTime: h.startTime,
                endTime: h.endTime,
                durationMs: h.endTime ? Date.parse(h.endTime) - Date.parse(h.startTime) : undefined,
                change,
                message: h.message,
                ...(opsCommit ? { opsCommit: opsCommit.commit, ...(opsCommit.url ? { opsCommitUrl: opsCommit.url } : {}) } : {}),
            };
        });
    }

    /**
     * The stage's commits from `commit` back (newest first), among its last {@link HISTORY_COMMITS}:
     * what the watch reads to tell which promotions a deployed commit holds. Not found when
     * `commit` is not among them.
     */
    async stageCommitsUpTo(stageName: string, commit: string): Promise<CommitInfo[]> {
        findStage(await this.deps.engine.pipeline(), stageName);
        const commits = await this.deps.ops.stageCommits(stageName, HISTORY_COMMITS);
        const at = commits.findIndex((c) => c.commit === commit || c.commit.startsWith(commit));
        if (at < 0) throw new RunnerError("not-found", `no commit ${commit} of stage ${stageName} among its last ${HISTORY_COMMITS}`);
        return commits.slice(at);
    }

    /** One ops repo commit of a stage's folder: message, changed files and patch. */
    async stageCommit(stageName: string, commit: string): Promise<CommitDetails> {
        const c = new Checker();
        c.string("stage", stageName, undefined, DNS_LABEL, DNS_LABEL_RULE);
        c.string("commit", commit, undefined, COMMIT, COMMIT_RULE);
        if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("\n"));
        findStage(await this.deps.engine.pipeline(), stageName);
        const found = await this.deps.ops.stageCommit(stageName, commit);
        if (!found) throw new RunnerError("not-found", `no commit ${commit} of stage ${stageName} in the ops repo's recent history`);
        return found;
    }

    /**
     * Refreshes in preview mode and reports what differs: one stack (a stage, `platform` or `mr-<n>`),
     * or the platform, every stage and every merge-request environment.
     */
    async drift(stageName?: string, signal?: AbortSignal): Promise<{ stack: string; changes: Record<string, number>; details: string[] }[]> {
        const stages = await this.deps.engine.pipeline();
        const all = await this.deps.engine.listStacks();
        const existing = new Set(all);
        let names: string[];
        if (stageName === "platform" || (stageName !== undefined && /^mr-\d+$/.test(stageName))) {
            if (!existing.has(stageName)) throw new RunnerError("not-found", `stack ${stageName} does not exist`);
            names = [stageName];
        } else if (stageName !== undefined) names = [findStage(stages, stageName).stage.name];
        else names = ["platform", ...stages.map((s) => s.name), ...all.filter((n) => /^mr-\d+$/.test(n)).sort()];
        const out = [];
        for (const name of names.filter((n) => existing.has(n))) {
            const d = await this.deps.engine.drift(name, signal);
            out.push({ stack: name, ...d });
        }
        return out;
    }
}
