/**
 * The runner: turns requests the command layer admitted into stack updates. check policy -> queue
 * for the target stack -> set stack config -> update with a message -> report -> record. It talks
 * to the engine, the ops repo and its records only through ports, so the same orchestration
 * serves the CLI and the service. What it reads of the stages is in observe.ts, merge-request
 * environments in merge-requests.ts; the Runner answers for both.
 */
import { Checker, DNS_LABEL, DNS_LABEL_RULE, SEMVER, SEMVER_RULE, formatProblem } from "../config/validate";
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
    parseHoldRequest,
    parsePromoteRequest,
    parseRollbackRequest,
    planHold,
    planPromotion,
    rollbackTarget,
} from "./core";
import type { ArgoCdClient } from "./argocd";
import type { ApplicationsPort, Deployment } from "./deployed";
import { MergeRequests } from "./merge-requests";
import { type AuditEntry, StageView, type StatusRow, type SyncAnswer } from "./observe";
import { RunnerError } from "./errors";
import type { EnginePort, RunnerStore, UpdateMetadata } from "./ports";
import { StackQueues } from "./queue";
import { anyOf } from "./adapters/processes";

export { type AuditEntry, HISTORY_COMMITS, type StatusRow, type SyncAnswer } from "./observe";

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

/** Options of long operations. */
export interface RunOptions {
    /** The request's id when a caller (the service) has already assigned one. */
    readonly requestId?: string;
    /** Only check the policy on the current state (refusals throw); change nothing. */
    readonly checkOnly?: boolean;
    readonly onOutput?: (text: string) => void;
    /** Who the request belongs to in the request log ({@link logPrincipal}): its idempotency keys and answers are this principal's; default the requester. */
    readonly principal?: string;
    /** Cancels the update (the request's lease in the request log was lost, the process is stopping). */
    readonly signal?: AbortSignal;
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
    private readonly view: StageView;
    private readonly mrs: MergeRequests;

    constructor(private readonly deps: RunnerDeps) {
        this.view = new StageView(deps);
        this.mrs = new MergeRequests(deps, (stack, id, signal, run) => this.queued(stack, id, signal, run));
    }

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
    private async queued<T>(stack: string, id: string, signal: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
        // The caller's signal (its lease in the request log, a SIGINT) cancels the job as the queue's own does.
        const outcome = await this.queues.submit({
            stack,
            id,
            run: async (own) => {
                if (signal?.aborted) throw signal.reason;
                if (!signal) return run(own);
                const both = anyOf([own, signal]);
                try {
                    return await run(both.signal);
                } finally {
                    both.dispose();
                }
            },
        });
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
            const r = await this.deps.engine.update(req.to, async () => ({ stage: { releases, change } }), { message: commitMessage(req.to, change), dryRun: true, onOutput: opts.onOutput, signal: opts.signal, metadata: promoteMetadata(req, requestId) });
            return { ...base, state: "dry-run", message: `preview of ${req.app} ${req.version} to ${req.to}: nothing written`, changes: r?.changes ?? {}, files };
        }
        const result = await this.queued(req.to, requestId, opts.signal, async (signal): Promise<ChangeResult> => {
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
        const result = await this.queued(req.stage, requestId, opts.signal, async (signal): Promise<ChangeResult> => {
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
        const apps = await this.view.applications();
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
        const result = await this.queued(req.stage, requestId, opts.signal, async (signal): Promise<ChangeResult> => {
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

    /** What runs where: desired (the stage stacks' outputs) and deployed (Argo CD). See {@link StageView}. */
    status(stageName?: string): Promise<StatusRow[]> {
        return this.view.status(stageName);
    }

    /** What Argo CD has deployed of a stage (see {@link StageView.deployment}). */
    deployment(stageName: string, refresh = false, release?: { app: string; version: string }): Promise<Deployment> {
        return this.view.deployment(stageName, refresh, release);
    }

    /** Waits until Argo CD has deployed the stage's last ops commit (see {@link StageView.wait}). */
    wait(stageName: string, timeoutMs: number, opts: Parameters<StageView["wait"]>[2] = {}): Promise<Deployment> {
        return this.view.wait(stageName, timeoutMs, opts);
    }

    /** An owner's sync of a stage through Argo CD with the owner's own client (see {@link StageView.sync}). */
    sync(stageName: string, client: ArgoCdClient, opts: Parameters<StageView["sync"]>[2] = {}): Promise<SyncAnswer> {
        return this.view.sync(stageName, client, opts);
    }

    /** The audit trail of a stage (see {@link StageView.history}). */
    history(stageName: string): Promise<AuditEntry[]> {
        return this.view.history(stageName);
    }

    /** A stage's commits from `commit` back (see {@link StageView.stageCommitsUpTo}). */
    stageCommitsUpTo(stageName: string, commit: string): Promise<CommitInfo[]> {
        return this.view.stageCommitsUpTo(stageName, commit);
    }

    /** One ops repo commit of a stage's folder (see {@link StageView.stageCommit}). */
    stageCommit(stageName: string, commit: string): Promise<CommitDetails> {
        return this.view.stageCommit(stageName, commit);
    }

    /** What differs between the stacks and what they manage (see {@link StageView.drift}). */
    drift(stageName?: string, signal?: AbortSignal): ReturnType<StageView["drift"]> {
        return this.view.drift(stageName, signal);
    }

    /** Deploys (or updates) a merge-request environment (see {@link MergeRequests.mrDeploy}). */
    mrDeploy(raw: unknown, opts: RunOptions = {}): ReturnType<MergeRequests["mrDeploy"]> {
        return this.mrs.mrDeploy(raw, opts);
    }

    /** Destroys a merge-request environment (see {@link MergeRequests.mrDestroy}). */
    mrDestroy(mr: number, requester: string, opts: Parameters<MergeRequests["mrDestroy"]>[2] = {}): Promise<ChangeResult> {
        return this.mrs.mrDestroy(mr, requester, opts);
    }

    /** Destroys every expired merge-request environment (see {@link MergeRequests.mrReap}). */
    mrReap(requester: string, opts: Parameters<MergeRequests["mrReap"]>[1] = {}): ReturnType<MergeRequests["mrReap"]> {
        return this.mrs.mrReap(requester, opts);
    }
}
