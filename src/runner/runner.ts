/**
 * The runner: turns requests into stack updates. validate -> authorise -> check policy -> queue
 * for the target stack -> set stack config -> update with a message -> report -> record. It talks
 * to the engine, the ops repo and its records only through ports, so the same orchestration
 * serves the CLI and the service.
 */
import { COMMIT, COMMIT_RULE, Checker, DNS_LABEL, DNS_LABEL_RULE, SEMVER, SEMVER_RULE, formatProblem } from "../config/validate";
import type { CommitDetails, CommitInfo } from "../git/engine";
import type { StageChange, StageRelease } from "../config/stage";
import { diffArrays } from "diff";

import { commitMessage } from "../program/stage/files";
import {
    Actor,
    Approval,
    PipelineStage,
    StageReleases,
    checkApprover,
    decidePromotion,
    adoptLanded,
    findStage,
    parseMrDeployRequest,
    parseHoldRequest,
    parsePromoteRequest,
    parseRollbackRequest,
    checkRequester,
    planHold,
    planPromotion,
    rollbackTarget,
} from "./core";
import { ArgoCdApplications, type ArgoCdClient } from "./argocd";
import { ApplicationStatus, ApplicationsPort, Deployment, judge, waitDeployed } from "./deployed";
import { RunnerError } from "./errors";
import type { EnginePort, HistoryEntry, RunnerStore, UpdateMetadata } from "./ports";
import { StackQueues } from "./queue";

/** The ops repository as the runner uses it. */
export interface OpsRepoPort {
    isPublished(app: string, version: string): Promise<boolean>;
    /** The generated files of a stage for these releases next to what the ops repo holds now: path -> [before, after]. */
    stageFiles(stage: string, releases: StageReleases): Promise<Record<string, [string | undefined, string]>>;
    /** Checks what the stage program will check (published bundles, values, referenced secrets); throws a refusal. */
    check(stage: string, releases: StageReleases): Promise<void>;
    /** The stage's ledger at the head of main: app -> entry. */
    ledger(stage: string): Promise<Record<string, Record<string, unknown>>>;
    /** The stage's newest commits on main (newest first), for the audit trail's links. */
    stageCommits(stage: string, limit: number): Promise<(CommitInfo & { url?: string })[]>;
    /** One commit that touched the stage's folder, with its changes limited to that folder; undefined otherwise. */
    stageCommit(stage: string, commit: string): Promise<CommitDetails | undefined>;
    /** Whether `revision` of main is `commit` or holds it (an ancestor check). */
    contains(commit: string, revision: string): Promise<boolean>;
    /** Validates and publishes a bundle folder; returns the publish commit (undefined when already there). */
    publish(dir: string, meta: { app: string; version: string; image: string; source: { commit: string; ciRunUrl?: string } }, requestId: string): Promise<{ commit?: string; digest: string }>;
}

/** What the runner needs around it. */
export interface RunnerDeps {
    readonly engine: EnginePort;
    readonly store: RunnerStore;
    readonly ops: OpsRepoPort;
    readonly now: () => Date;
    readonly newId: () => string;
    readonly log: (line: string) => void;
    /** Cluster settings of merge-request environments (render folder when no kubeconfig). */
    readonly mrCluster: (n: number) => { kubeconfig?: string; context?: string; renderDir: string; skipAwait: boolean };
    /** Argo CD's Applications, or undefined when the platform has no cluster (render mode). */
    readonly applications?: () => Promise<ApplicationsPort | undefined>;
}

/** The answer to a promotion, rollback, hold or release. */
export interface ChangeResult {
    readonly requestId: string;
    /** done: the stack was updated; noop: nothing to do; superseded: a newer request for the app replaced it; dry-run: previewed only. */
    readonly state: "done" | "noop" | "superseded" | "dry-run";
    readonly kind: StageChange["kind"];
    readonly stage: string;
    readonly app: string;
    readonly version?: string;
    readonly message: string;
    readonly opsCommit?: string;
    readonly publishCommit?: string;
    readonly changes?: Record<string, number>;
    readonly durationMs?: number;
    readonly recovered?: string;
    readonly supersededBy?: string;
    readonly overrideOrder?: boolean;
    /** For previews: the exact change of each ops repo file, as removed and added lines. */
    readonly files?: Record<string, { removed: string[]; added: string[] }>;
}

/**
 * Lines removed from and added to a file, from a real line diff (jsdiff's Myers diff), so a line
 * added where an equal line already exists elsewhere in the file still shows as added.
 */
export function lineChanges(before: string | undefined, after: string): { removed: string[]; added: string[] } {
    const parts = diffArrays((before ?? "").split("\n"), after.split("\n"));
    return { removed: parts.filter((p) => p.removed).flatMap((p) => p.value), added: parts.filter((p) => p.added).flatMap((p) => p.value) };
}

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

/** A promotion's update metadata: the release's source commit, CI run and merge request, and who asked. */
function promoteMetadata(req: ReturnType<typeof parsePromoteRequest>, requestId: string): UpdateMetadata {
    return {
        requestId,
        kind: req.dryRun ? "preview" : "promote",
        requester: req.requester,
        sourceCommit: req.source.commit,
        ...(req.source.ciRunUrl ? { ciRunUrl: req.source.ciRunUrl } : {}),
        ...(req.source.mr !== undefined ? { mr: req.source.mr } : {}),
    };
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

/** Options of long operations. */
export interface RunOptions {
    /** The request's id when a caller (the service) has already assigned one. */
    readonly requestId?: string;
    /** Only check the policy on the current state (refusals throw); change nothing. */
    readonly checkOnly?: boolean;
    readonly onOutput?: (text: string) => void;
    /** Who the request belongs to in the request log ({@link logPrincipal}): its idempotency keys and answers are this principal's; default the requester. */
    readonly principal?: string;
}

/** A stage's releases from its stack's outputs; outputs carry derived facts (digest, image) that are not config. */
export function releasesFrom(outputs: Record<string, unknown> | undefined): StageReleases {
    const found = (outputs?.releases as Record<string, Record<string, unknown>> | undefined) ?? {};
    return Object.fromEntries(
        Object.entries(found).map(([app, r]) => [
            app,
            Object.fromEntries(
                ["version", "requestId", "requester", "promotedAt", "sourceCommit", "ciRunUrl", "hold"]
                    .filter((k) => r[k] !== undefined && r[k] !== null)
                    .map((k) => [k, r[k]]),
            ) as unknown as StageRelease,
        ]),
    );
}

/** The runner. */
export class Runner {
    private readonly queues = new StackQueues();

    constructor(private readonly deps: RunnerDeps) {}

    /** Aborts running updates (they cancel cleanly and release their locks) and fails waiting ones. */
    cancel(reason: string): void {
        this.queues.cancelAll(new RunnerError("conflict", reason));
    }

    /** Whether a request for this stack is running now. */
    active(stack: string): boolean {
        return this.queues.busy().includes(stack);
    }

    /** Requests waiting (not running) for a stack. */
    pending(stack: string): number {
        return this.queues.depth(stack);
    }

    /** Resolves when nothing runs or waits. */
    idle(): Promise<void> {
        return this.queues.idle();
    }

    /** The pipeline's stages (order, queue policy, owners), from the platform stack. */
    pipelineStages(): Promise<PipelineStage[]> {
        return this.pipeline();
    }

    private async pipeline(): Promise<PipelineStage[]> {
        return this.deps.engine.pipeline();
    }

    /** What runs in a stage, from its stack's outputs (the backend is the source of truth). */
    private async releasesOf(stage: string): Promise<StageReleases> {
        return releasesFrom(await this.deps.engine.stackOutputs(stage));
    }

    private async running(stages: readonly PipelineStage[]): Promise<Record<string, StageReleases>> {
        const entries = await Promise.all(stages.map(async (s) => [s.name, await this.releasesOf(s.name)] as const));
        return Object.fromEntries(entries);
    }


    /** Runs a job on a stack's queue (this process's jobs of a stack never overlap) and turns its outcome into a result or an error. */
    private async queued<T>(stack: string, id: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
        const outcome = await this.queues.submit({ stack, id, run });
        if (outcome.state === "done") return outcome.result;
        throw outcome.error;
    }

    /**
     * Idempotency keys are per principal (the requester, who is the authenticated principal): two
     * callers using the same key are two requests. Only successful answers are remembered: a failed
     * request throws before `remember`, and its retry runs again.
     */
    private async remembered(requester: string, key: string | undefined): Promise<ChangeResult | undefined> {
        return key ? ((await this.deps.store.answer(requester, key)) as ChangeResult | undefined) : undefined;
    }

    private async remember(requester: string, key: string | undefined, result: ChangeResult): Promise<ChangeResult> {
        if (key) await this.deps.store.saveAnswer(requester, key, result);
        return result;
    }

    /** Promotes (or with dryRun, previews) a release into a stage. */
    async promote(raw: unknown, actor: Actor, opts: RunOptions = {}): Promise<ChangeResult> {
        const req = parsePromoteRequest(raw);
        const key = req.idempotencyKey;
        const previous = await this.remembered(opts.principal ?? req.requester, key);
        if (previous) return previous;
        const requestId = opts.requestId ?? req.idempotencyKey ?? this.deps.newId();
        const stages = await this.pipeline();
        if (req.bundle && findStage(stages, req.to).index !== 0) {
            throw new RunnerError("invalid", `bundle: a release is published with its first promotion, to ${stages[0].name}, not to ${req.to}`);
        }
        const { index: targetIndex } = findStage(stages, req.to);
        // Only the target stage and the one before it matter to the decision.
        const relevant = stages.slice(Math.max(0, targetIndex - 1), targetIndex + 1);
        const decide = async (target?: StageReleases) => {
            const running = await this.running(relevant.filter((s) => target === undefined || s.name !== req.to));
            if (target !== undefined) running[req.to] = target;
            return decidePromotion({
                stages,
                running,
                request: req,
                actor,
                now: this.deps.now(),
                approvals: await this.deps.store.approvals(),
                published: await this.deps.ops.isPublished(req.app, req.version),
            });
        };
        // A first decision outside the queue answers refusals at once; the update decides again
        // under the stack's lock, on the state it finds there.
        const first = await decide();
        const base = { requestId, kind: "promote" as const, stage: req.to, app: req.app, version: req.version };
        if (opts.checkOnly) return { ...base, state: first.action === "noop" ? "noop" : "dry-run", message: first.action === "noop" ? first.message : "the policy allows it now" };
        if (first.action === "noop") return this.remember(opts.principal ?? req.requester, key, { ...base, state: "noop", message: first.message });
        const changeFor = (overrideOrder: boolean): StageChange => ({
            kind: "promote",
            app: req.app,
            version: req.version,
            requestId,
            requester: req.requester,
            ...(req.claimedRequester ? { claimedRequester: req.claimedRequester } : {}),
            ...(req.reason ? { reason: req.reason } : {}),
            sourceCommit: req.source.commit,
            ...(req.source.ciRunUrl ? { ciRunUrl: req.source.ciRunUrl } : {}),
            ...(overrideOrder ? { overrideOrder: true } : {}),
        });
        if (req.dryRun) {
            const change = changeFor(first.overrideOrder);
            const releases = planPromotion(await this.releasesOf(req.to), change, this.deps.now().toISOString());
            const files: Record<string, { removed: string[]; added: string[] }> = {};
            if (await this.deps.ops.isPublished(req.app, req.version)) {
                for (const [p, [before, after]] of Object.entries(await this.deps.ops.stageFiles(req.to, releases))) {
                    const d = lineChanges(before, after);
                    if (d.removed.length || d.added.length) files[p] = d;
                }
            }
            const r = await this.deps.engine.update(req.to, async () => ({ stage: { releases, change } }), { message: commitMessage(req.to, change), dryRun: true, onOutput: opts.onOutput, metadata: promoteMetadata(req, requestId) });
            return { ...base, state: "dry-run", message: `preview of ${req.app} ${req.version} to ${req.to}: nothing written`, changes: r?.changes ?? {}, files };
        }
        const result = await this.queued(req.to, requestId, async (signal): Promise<ChangeResult> => {
            let publishCommit: string | undefined;
            if (req.bundle) {
                const published = await this.deps.ops.publish(req.bundle, { app: req.app, version: req.version, image: req.image!, source: { commit: req.source.commit, ...(req.source.ciRunUrl ? { ciRunUrl: req.source.ciRunUrl } : {}) } }, requestId);
                publishCommit = published.commit;
            }
            let noop: string | undefined;
            let change = changeFor(first.overrideOrder);
            const r = await this.deps.engine.update(
                req.to,
                async (outputs) => {
                    const current = releasesFrom(outputs);
                    const decision = await decide(current);
                    if (decision.action === "noop") {
                        noop = decision.message;
                        return undefined;
                    }
                    change = changeFor(decision.overrideOrder);
                    const releases = adoptLanded(planPromotion(current, change, this.deps.now().toISOString()), await this.deps.ops.ledger(req.to), req.app);
                    // Refuse before the engine runs, so the caller gets the reason rather than an engine failure.
                    await this.deps.ops.check(req.to, releases);
                    return { stage: { releases, change } };
                },
                { message: commitMessage(req.to, change), signal, onOutput: opts.onOutput, metadata: promoteMetadata(req, requestId) },
            );
            if (!r) return { ...base, state: "noop", message: noop ?? "nothing to do", ...(publishCommit ? { publishCommit } : {}) };
            if (r.result !== "succeeded") throw new RunnerError("internal", `the update of ${req.to} did not succeed`);
            // An approval is of one promotion of the release: used up here, so bringing the release
            // back after a rollback needs an owner's decision again.
            if (findStage(stages, req.to).stage.requireApproval) await this.deps.store.removeApproval({ app: req.app, version: req.version, stage: req.to });
            return {
                ...base,
                state: "done",
                message: `${req.app} ${req.version} promoted to ${req.to}`,
                opsCommit: r.outputs.opsCommit as string | undefined,
                ...(publishCommit ? { publishCommit } : {}),
                changes: r.changes,
                durationMs: r.durationMs,
                ...(r.recovered ? { recovered: r.recovered } : {}),
                ...(change.overrideOrder ? { overrideOrder: true } : {}),
            };
        });
        if (result.state === "done") await this.nudge(req.to);
        return this.remember(opts.principal ?? req.requester, key, result);
    }

    /** Rolls an app back in a stage and holds it there so automation does not roll it forward again. */
    async rollback(raw: unknown, opts: RunOptions = {}): Promise<ChangeResult> {
        const req = parseRollbackRequest(raw);
        const key = req.idempotencyKey;
        const previous = await this.remembered(opts.principal ?? req.requester, key);
        if (previous) return previous;
        const stages = await this.pipeline();
        findStage(stages, req.stage);
        const requestId = opts.requestId ?? req.idempotencyKey ?? this.deps.newId();
        const result = await this.queued(req.stage, requestId, async (signal): Promise<ChangeResult> => {
            const history = (await this.deps.engine.history(req.stage)).filter((h) => h.kind === "update" && h.result === "succeeded");
            const versions = history.flatMap((h) => {
                const v = (h.config.stage as { releases?: Record<string, { version: string }> } | undefined)?.releases?.[req.app]?.version;
                return v ? [v] : [];
            });
            let change: StageChange | undefined;
            const r = await this.deps.engine.update(
                req.stage,
                async (outputs) => {
                    const current = releasesFrom(outputs);
                    const to = rollbackTarget(req.app, req.stage, current[req.app]?.version, versions, req.to);
                    if (!(await this.deps.ops.isPublished(req.app, to))) throw new RunnerError("not-found", `release ${req.app}@${to} is not published`);
                    const at = this.deps.now().toISOString();
                    change = { kind: "rollback", app: req.app, version: to, requestId, requester: req.requester, ...(req.claimedRequester ? { claimedRequester: req.claimedRequester } : {}), reason: req.reason ?? `roll back ${req.app} from ${current[req.app]?.version ?? "nothing"}` };
                    return { stage: { releases: adoptLanded(planPromotion(current, change, at, { by: req.requester, reason: change.reason!, at }), await this.deps.ops.ledger(req.stage), req.app), change } };
                },
                { message: `Roll back ${req.app} in ${req.stage} (request ${requestId})`, signal, onOutput: opts.onOutput, metadata: { requestId, kind: "rollback", requester: req.requester } },
            );
            if (!r || r.result !== "succeeded" || !change) throw new RunnerError("internal", `the update of ${req.stage} did not succeed`);
            return {
                requestId,
                state: "done",
                kind: "rollback",
                stage: req.stage,
                app: req.app,
                version: change.version,
                message: `${req.app} rolled back to ${change.version} in ${req.stage} and held there (stages release ${req.app} --stage ${req.stage} lifts the hold)`,
                opsCommit: r.outputs.opsCommit as string | undefined,
                changes: r.changes,
                durationMs: r.durationMs,
                ...(r.recovered ? { recovered: r.recovered } : {}),
            };
        });
        if (result.state === "done") await this.nudge(req.stage);
        return this.remember(opts.principal ?? req.requester, key, result);
    }

    /**
     * After a commit, asks Argo CD to compare the stage's Application again now, as the ops repo's
     * push webhook does on GitHub: an automatic stage then syncs in seconds instead of at Argo CD's
     * next poll (3 minutes by default), and a manual one shows OutOfSync at once. Best effort: a
     * refresh that fails changes nothing of the promotion, which has landed; it is logged.
     */
    private async nudge(stage: string): Promise<void> {
        const apps = await this.applications();
        try {
            await apps.port?.refresh(stage);
        } catch (e) {
            this.deps.log(`could not ask Argo CD to refresh ${stage} (it will see the commit at its next poll): ${e instanceof Error ? e.message : String(e)}`);
        } finally {
            apps.close();
        }
    }

    /** Sets (hold) or clears (release) a hold on an app in a stage. */
    async hold(raw: unknown, set: boolean, opts: RunOptions = {}): Promise<ChangeResult> {
        const req = parseHoldRequest(raw);
        findStage(await this.pipeline(), req.stage);
        const requestId = opts.requestId ?? this.deps.newId();
        const result = await this.queued(req.stage, requestId, async (signal): Promise<ChangeResult> => {
            const change: StageChange = { kind: set ? "hold" : "release", app: req.app, requestId, requester: req.requester, ...(req.claimedRequester ? { claimedRequester: req.claimedRequester } : {}), ...(req.reason ? { reason: req.reason } : {}) };
            const r = await this.deps.engine.update(
                req.stage,
                async (outputs) => {
                    const current = releasesFrom(outputs);
                    if (!set && current[req.app] && !current[req.app].hold) return undefined;
                    const at = this.deps.now().toISOString();
                    return { stage: { releases: adoptLanded(planHold(current, req.app, req.stage, set ? { by: req.requester, reason: req.reason ?? "", at } : undefined), await this.deps.ops.ledger(req.stage), req.app), change } };
                },
                { message: commitMessage(req.stage, change), signal, onOutput: opts.onOutput, metadata: { requestId, kind: change.kind, requester: req.requester } },
            );
            if (!r) return { requestId, state: "noop", kind: change.kind, stage: req.stage, app: req.app, message: `${req.app} has no hold in ${req.stage}` };
            return {
                requestId,
                state: "done",
                kind: change.kind,
                stage: req.stage,
                app: req.app,
                message: set ? `${req.app} is on hold in ${req.stage}` : `hold on ${req.app} in ${req.stage} released`,
                opsCommit: r.outputs.opsCommit as string | undefined,
                changes: r.changes,
                durationMs: r.durationMs,
            };
        });
        if (result.state === "done") await this.nudge(req.stage);
        return result;
    }

    /** Records an owner's approval of a release (app and version) going into a stage that requires one. */
    async approve(raw: { app?: unknown; version?: unknown; stage?: unknown }, actor: Actor): Promise<Approval> {
        const c = new Checker();
        const app = c.string("app", raw.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
        const version = c.string("version", raw.version, undefined, SEMVER, SEMVER_RULE);
        const stageName = c.string("stage", raw.stage, undefined, DNS_LABEL, DNS_LABEL_RULE);
        if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("\n"));
        const { stage } = findStage(await this.pipeline(), stageName);
        // An approval nobody will ever consult would only mislead the audit trail.
        if (!stage.requireApproval) throw new RunnerError("refused", `stage ${stage.name} needs no approval (its requireApproval is not set)`, "no-approval");
        checkApprover(stage, actor);
        if (!(await this.deps.ops.isPublished(app, version))) throw new RunnerError("not-found", `release ${app}@${version} is not published: there is nothing to approve`);
        const approval: Approval = { app, version, stage: stage.name, by: actor.name, at: this.deps.now().toISOString() };
        await this.deps.store.addApproval(approval);
        return approval;
    }

    /** What runs where: desired (the stage stacks' outputs) and deployed (Argo CD). */
    async status(stageName?: string): Promise<StatusRow[]> {
        const stages = await this.pipeline();
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
        const { stage } = findStage(await this.pipeline(), stageName);
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
        const { stage } = findStage(await this.pipeline(), stageName);
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
        findStage(await this.pipeline(), stageName);
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
    private async applications(): Promise<{ port?: ApplicationsPort; missing: string; failure?: RunnerError; close: () => void }> {
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
        findStage(await this.pipeline(), stageName);
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
        findStage(await this.pipeline(), stageName);
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
        findStage(await this.pipeline(), stageName);
        const found = await this.deps.ops.stageCommit(stageName, commit);
        if (!found) throw new RunnerError("not-found", `no commit ${commit} of stage ${stageName} in the ops repo's recent history`);
        return found;
    }

    /**
     * Refreshes in preview mode and reports what differs: one stack (a stage, `platform` or `mr-<n>`),
     * or the platform, every stage and every merge-request environment.
     */
    async drift(stageName?: string): Promise<{ stack: string; changes: Record<string, number>; details: string[] }[]> {
        const stages = await this.pipeline();
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
            const d = await this.deps.engine.drift(name);
            out.push({ stack: name, ...d });
        }
        return out;
    }

    /** Deploys (or updates) a merge-request environment. */
    async mrDeploy(raw: unknown, opts: RunOptions = {}): Promise<ChangeResult & { expiresAt?: string; namespace?: string }> {
        const { mr, app, bundle, image, sourceCommit, ttlHours, requester } = parseMrDeployRequest(raw);
        const stack = `mr-${mr}`;
        const requestId = opts.requestId ?? this.deps.newId();
        return this.queued(stack, requestId, async (signal): Promise<ChangeResult & { expiresAt?: string; namespace?: string }> => {
            const createdAt = this.deps.now().toISOString().replace(/\.\d{3}Z$/, "Z");
            const r = await this.deps.engine.update(
                stack,
                async () => ({ mr: { number: mr, app, bundle, image, sourceCommit, createdAt, ttlHours }, cluster: this.deps.mrCluster(mr) }),
                {
                    message: `Deploy ${app} for merge request ${mr} at ${sourceCommit} (request ${requestId})\n\nRequester: ${requester}\nRequest-Id: ${requestId}\n`,
                    signal,
                    onOutput: opts.onOutput,
                    metadata: { requestId, kind: "mr-deploy", requester, sourceCommit, mr },
                    // On a live cluster, read the objects back first so a redeploy also undoes hand edits.
                    refresh: this.deps.mrCluster(mr).kubeconfig !== undefined,
                },
            );
            if (!r) throw new RunnerError("internal", `the update of ${stack} did not run`);
            return {
                requestId,
                state: "done",
                kind: "promote",
                stage: stack,
                app,
                message: `merge request ${mr} deployed to namespace ${stack} until ${r.outputs.expiresAt}`,
                changes: r.changes,
                durationMs: r.durationMs,
                expiresAt: r.outputs.expiresAt as string,
                namespace: r.outputs.namespace as string,
            };
        });
    }

    /** Destroys a merge-request environment and its stack. */
    async mrDestroy(mr: number, requester: string, opts: RunOptions = {}): Promise<ChangeResult> {
        if (!Number.isInteger(mr) || mr < 1) throw new RunnerError("invalid", `mr = ${JSON.stringify(mr)}: must be a whole number from 1`);
        checkRequester(requester);
        const stack = `mr-${mr}`;
        const requestId = opts.requestId ?? this.deps.newId();
        return this.queued(stack, requestId, async (signal): Promise<ChangeResult> => {
            const r = await this.deps.engine.destroy(stack, { message: `Destroy merge request ${mr} (request ${requestId})\n\nRequester: ${requester}\n`, signal, onOutput: opts.onOutput, metadata: { requestId, kind: "mr-destroy", requester, mr } });
            return { requestId, state: "done", kind: "remove", stage: stack, app: "", message: `merge request ${mr} destroyed`, changes: r.changes, durationMs: r.durationMs };
        });
    }

    /** Destroys every merge-request environment whose expiry has passed. */
    async mrReap(requester: string, opts: RunOptions = {}): Promise<{ destroyed: string[]; kept: { stack: string; expiresAt: string }[] }> {
        checkRequester(requester);
        const now = this.deps.now().getTime();
        const destroyed: string[] = [];
        const kept: { stack: string; expiresAt: string }[] = [];
        for (const stack of (await this.deps.engine.listStacks()).filter((s) => /^mr-\d+$/.test(s))) {
            const outputs = await this.deps.engine.stackOutputs(stack);
            const expiresAt = outputs?.expiresAt as string | undefined;
            if (expiresAt && Date.parse(expiresAt) <= now) {
                await this.mrDestroy(Number(stack.slice(3)), requester, opts);
                destroyed.push(stack);
            } else kept.push({ stack, expiresAt: expiresAt ?? "unknown" });
        }
        return { destroyed, kept };
    }
}
