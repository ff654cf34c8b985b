/**
 * The runner's core: request parsing, policy decisions and planning of stack config. Pure: no
 * I/O, no clock (callers pass `now`), no Pulumi. Everything here is table-tested.
 */
import type { SyncWindow } from "../config/platform";
import type { StageChange, StageRelease } from "../config/stage";
import { DNS_LABEL, DNS_LABEL_RULE, REQUESTER, REQUESTER_RULE, SEMVER, SEMVER_RULE } from "../config/validate";
import { HOLD_REQUEST, MR_DEPLOY_REQUEST, PROMOTE_REQUEST, ROLLBACK_REQUEST, parseWith } from "./requests";
import { windowOpenSince } from "./cron";
import { RunnerError } from "./errors";
import type { Principal } from "./rights";

/** A stage as the runner sees it (from the platform stack's `stages` output). */
export interface PipelineStage {
    readonly name: string;
    readonly sync: "automatic" | "manual";
    readonly owners: readonly string[];
    /** The stage's namespaces; the first is where Argo CD deploys the stage's apps. */
    readonly namespaces: readonly string[];
    readonly queue: "fifo" | "coalesce";
    readonly requireApproval: boolean;
    readonly freezeWindows: readonly SyncWindow[];
}

/** What runs in one stage: app -> release. */
export type StageReleases = Readonly<Record<string, StageRelease>>;

/** Who is asking, and what they may do. */
export interface Actor extends Principal {
    readonly name: string;
    /** Teams the actor belongs to (to check stage ownership for approvals). */
    readonly teams: readonly string[];
    /** May skip the stage order (recorded in the commit). */
    readonly canOverrideOrder: boolean;
    /** A person on this machine (the CLI without a token: `--as`, `$GITOPS_STAGES_USER` or the OS user), not a token's holder. */
    readonly local?: boolean;
}

/**
 * Who a request belongs to in the request log (its idempotency keys, its answers, who may read it):
 * a token's name, or `user:<name>` for a person on this machine without a token, so that `--as
 * ci-itg` can never answer, or be answered by, what the token named ci-itg asked (token names
 * cannot hold a ':').
 */
export function logPrincipal(actor: Actor): string {
    return actor.local ? `user:${actor.name}` : actor.name;
}

/** A promotion request, same shape for CLI and HTTP. */
export interface PromoteRequest {
    readonly app: string;
    readonly version: string;
    readonly to: string;
    /** Bundle folder, for the first promotion of a version (publishes it). */
    readonly bundle?: string;
    /** Release metadata that goes with a bundle. */
    readonly image?: string;
    readonly requester: string;
    /** Who the caller says it asks for: its claim, recorded apart from the requester. */
    readonly claimedRequester?: string;
    readonly source: { readonly commit: string; readonly mr?: number; readonly ciRunUrl?: string };
    readonly reason?: string;
    readonly idempotencyKey?: string;
    readonly dryRun: boolean;
    readonly overrideOrder: boolean;
}

/** A rollback request: promote an earlier release and hold the app in the stage. */
export interface RollbackRequest {
    readonly app: string;
    readonly stage: string;
    /** Version to roll back to; default: the previous version in the stage's history. */
    readonly to?: string;
    readonly requester: string;
    /** Who the caller says it asks for: its claim, recorded apart from the requester. */
    readonly claimedRequester?: string;
    readonly reason?: string;
    readonly idempotencyKey?: string;
}

/** A hold or release of a hold. */
export interface HoldRequest {
    readonly app: string;
    readonly stage: string;
    readonly requester: string;
    /** Who the caller says it asks for: its claim, recorded apart from the requester. */
    readonly claimedRequester?: string;
    readonly reason?: string;
}

/** A merge-request deployment. */
export interface MrDeployRequest {
    readonly mr: number;
    readonly app: string;
    /** Folder of the MR build's bundle (chart and values/mr.yaml). */
    readonly bundle: string;
    readonly image: string;
    readonly sourceCommit: string;
    readonly ttlHours: number;
    readonly requester: string;
}

/** Parses a merge-request deployment; unknown fields are refused. */
export function parseMrDeployRequest(raw: unknown): MrDeployRequest {
    const r = parseWith(MR_DEPLOY_REQUEST, raw);
    return { ...r, ttlHours: r.ttlHours ?? 72 };
}

export { REQUESTER, REQUESTER_RULE } from "../config/validate";
export { REASON, REASON_RULE } from "./requests";

/** Refuses a requester that breaks {@link REQUESTER} (it becomes a commit trailer), naming `key`. */
export function checkRequester(value: unknown, key = "requester", hint = ""): void {
    if (typeof value !== "string" || !REQUESTER.test(value)) throw new RunnerError("invalid", `${key} = ${JSON.stringify(value)}: ${REQUESTER_RULE}${hint}`);
}

/** Parses a promotion request; unknown fields are refused. Throws RunnerError(invalid) listing every problem. */
export function parsePromoteRequest(raw: unknown): PromoteRequest {
    const r = parseWith(PROMOTE_REQUEST, raw, (v) => (v.bundle !== undefined && v.image === undefined ? [{ key: "image", rule: "is required with bundle (the release's image reference)" }] : []));
    return { ...r, dryRun: r.dryRun ?? false, overrideOrder: r.overrideOrder ?? false };
}

/** Parses a rollback request. */
export function parseRollbackRequest(raw: unknown): RollbackRequest {
    return parseWith(ROLLBACK_REQUEST, raw);
}

/** Parses a hold or release request. */
export function parseHoldRequest(raw: unknown): HoldRequest {
    return parseWith(HOLD_REQUEST, raw);
}

/** The stage named, or a not-found error listing the stages that exist. */
export function findStage(stages: readonly PipelineStage[], name: string): { stage: PipelineStage; index: number } {
    const index = stages.findIndex((s) => s.name === name);
    if (index < 0) throw new RunnerError("not-found", `unknown stage "${name}" (stages: ${stages.map((s) => s.name).join(", ")})`);
    return { stage: stages[index], index };
}

/**
 * `<app>@<version>` as the CLI's `wait` and the service's `release` parameter take it, checked as a
 * promotion's app and version are; `field` names the argument in errors.
 */
export function parseReleaseRef(value: string, field: string): { app: string; version: string } {
    const at = value.lastIndexOf("@");
    const app = at > 0 ? value.slice(0, at) : "";
    const version = at > 0 ? value.slice(at + 1) : "";
    if (!DNS_LABEL.test(app) || !SEMVER.test(version)) {
        throw new RunnerError("invalid", `${field} = ${JSON.stringify(value)}: must be <app>@<version>, the app ${DNS_LABEL_RULE.replace(/^must be /, "")} and the version ${SEMVER_RULE.replace(/^must be /, "")}`);
    }
    return { app, version };
}

/** Whether the stage is frozen for promotions at `now`, and which window says so. */
export function freezeAt(stage: PipelineStage, now: Date): string | undefined {
    const open = (w: SyncWindow) => windowOpenSince(w.schedule, w.duration, w.timeZone, now) !== undefined;
    const deny = stage.freezeWindows.find((w) => w.kind === "deny" && open(w));
    if (deny) return `stage ${stage.name} is frozen: deny window "${deny.schedule}" (${deny.duration}, ${deny.timeZone}) is open`;
    const allows = stage.freezeWindows.filter((w) => w.kind === "allow");
    if (allows.length > 0 && !allows.some(open)) {
        return `stage ${stage.name} is frozen: promotions are allowed only inside its allow windows (${allows.map((w) => `"${w.schedule}" for ${w.duration} ${w.timeZone}`).join(", ")})`;
    }
    return undefined;
}

/**
 * An approval recorded by a stage owner: of a release (app and version) going into a stage. Keyed
 * by the release, not by a request id, because a retried CI job asks with a new request id and the
 * owner approves what will run, whichever request brings it.
 */
export interface Approval {
    readonly app: string;
    readonly version: string;
    readonly stage: string;
    readonly by: string;
    readonly at: string;
}

/** Inputs of a promotion decision. */
export interface PromoteDecisionInput {
    readonly stages: readonly PipelineStage[];
    /** What runs in every stage now. */
    readonly running: Readonly<Record<string, StageReleases>>;
    readonly request: PromoteRequest;
    readonly actor: Actor;
    readonly now: Date;
    readonly approvals: readonly Approval[];
    /** Whether the release is already published in the ops repo. */
    readonly published: boolean;
}

/** The outcome of a policy check. */
export type Decision = { readonly action: "update"; readonly overrideOrder: boolean } | { readonly action: "noop"; readonly message: string };

/**
 * Decides whether a promotion may run. Refusals are RunnerError("refused") with a reason code and
 * a message naming the rule: stage order, hold, freeze window, approval. Already running that
 * version is a no-op, not an error.
 */
export function decidePromotion(input: PromoteDecisionInput): Decision {
    const { stages, running, request: r, actor, now } = input;
    const { stage, index } = findStage(stages, r.to);
    const current = running[stage.name]?.[r.app];
    if (current && current.version === r.version) {
        return { action: "noop", message: `${r.app} ${r.version} already runs in ${stage.name}` };
    }
    if (!input.published && !r.bundle) {
        throw new RunnerError("not-found", `release ${r.app}@${r.version} is not published: promote it to the first stage with its bundle first`);
    }
    let overrideOrder = false;
    if (index > 0) {
        const prev = stages[index - 1];
        const prevVersion = running[prev.name]?.[r.app]?.version;
        if (prevVersion !== r.version) {
            if (!r.overrideOrder) {
                throw new RunnerError(
                    "refused",
                    `${r.app} ${r.version} cannot go to ${stage.name}: ${prev.name} runs ${prevVersion ? `${r.app} ${prevVersion}` : `no ${r.app}`} (a release moves one stage at a time)`,
                    "stage-order",
                );
            }
            if (!actor.canOverrideOrder) {
                throw new RunnerError("forbidden", `${actor.name} may not override the stage order`, "override-not-allowed");
            }
            overrideOrder = true;
        }
    } else if (r.overrideOrder) {
        overrideOrder = false;
    }
    if (current?.hold) {
        throw new RunnerError(
            "refused",
            `${r.app} is on hold in ${stage.name} since ${current.hold.at} by ${current.hold.by}${current.hold.reason ? ` (${current.hold.reason})` : ""}: release the hold first (stages release)`,
            "hold",
        );
    }
    const frozen = freezeAt(stage, now);
    if (frozen) throw new RunnerError("refused", frozen, "freeze");
    if (stage.requireApproval) {
        const ok = input.approvals.find((a) => a.app === r.app && a.version === r.version && a.stage === stage.name);
        if (!ok) {
            throw new RunnerError(
                "refused",
                `promotion of ${r.app} ${r.version} to ${stage.name} needs an approval by one of ${stage.owners.join(", ")}: stages approve ${r.app}@${r.version} --stage ${stage.name}`,
                "approval",
            );
        }
    }
    return { action: "update", overrideOrder };
}

/** Who may approve a request for a stage: one of its owners. */
export function checkApprover(stage: PipelineStage, actor: Actor): void {
    if (!actor.teams.some((t) => stage.owners.includes(t))) {
        throw new RunnerError("forbidden", `${actor.name} is not an owner of ${stage.name} (owners: ${stage.owners.join(", ")})`, "not-owner");
    }
}

/** The stage config after a promotion (or rollback): only the app's entry changes. */
export function planPromotion(current: StageReleases, change: StageChange, promotedAt: string, hold?: StageRelease["hold"]): Record<string, StageRelease> {
    if (!change.version) throw new Error("a promotion needs a version");
    return {
        ...current,
        [change.app]: {
            version: change.version,
            requestId: change.requestId,
            requester: change.requester,
            promotedAt,
            ...(change.sourceCommit ? { sourceCommit: change.sourceCommit } : {}),
            ...(change.ciRunUrl ? { ciRunUrl: change.ciRunUrl } : {}),
            ...(hold ? { hold } : {}),
        },
    };
}

/**
 * A re-run of a request whose commit already landed (the process was killed after the push,
 * before the engine saved its state) must compute the same files, or it would commit the same
 * promotion twice with new timestamps. Takes the landed timestamps from the ops repo's ledger
 * where the ledger shows this very change: the same request and version, or the same hold.
 */
export function adoptLanded(planned: Record<string, StageRelease>, landed: Readonly<Record<string, Record<string, unknown>>>, app: string): Record<string, StageRelease> {
    const mine = planned[app];
    const theirs = landed[app] as (Partial<StageRelease> & { hold?: StageRelease["hold"] }) | undefined;
    if (!mine || !theirs) return planned;
    let next: StageRelease = mine;
    if (theirs.requestId === mine.requestId && theirs.version === mine.version && typeof theirs.promotedAt === "string") next = { ...next, promotedAt: theirs.promotedAt };
    if (mine.hold && theirs.hold && theirs.hold.by === mine.hold.by && theirs.hold.reason === mine.hold.reason && theirs.version === mine.version) next = { ...next, hold: { ...mine.hold, at: theirs.hold.at } };
    return next === mine ? planned : { ...planned, [app]: next };
}

/** The stage config with a hold set or cleared on an app. */
export function planHold(current: StageReleases, app: string, stage: string, hold: StageRelease["hold"] | undefined): Record<string, StageRelease> {
    const entry = current[app];
    if (!entry) throw new RunnerError("not-found", `${app} does not run in ${stage}`);
    const { hold: _old, ...rest } = entry;
    return { ...current, [app]: { ...rest, ...(hold ? { hold } : {}) } };
}

/** Picks the version to roll back to: the given one, or the one before the current in the stage's history. */
export function rollbackTarget(app: string, stage: string, currentVersion: string | undefined, history: readonly string[], to?: string): string {
    if (to) {
        if (to === currentVersion) throw new RunnerError("refused", `${app} ${to} already runs in ${stage}`, "noop");
        return to;
    }
    // History is newest first: the first version that differs from the current one.
    const previous = history.find((v) => v !== currentVersion);
    if (!previous) throw new RunnerError("not-found", `${stage} has no earlier release of ${app} to roll back to`);
    return previous;
}
