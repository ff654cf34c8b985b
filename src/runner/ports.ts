/**
 * The two interfaces the runner's orchestration talks through: the Pulumi engine (stacks, their
 * config, updates, history) and its durable records. Adapters implement them with the
 * Automation API and a file or database; tests use fakes.
 */
import type { Approval, PipelineStage } from "./core";

/** Result of a stack update (or preview). */
export interface UpdateResult {
    readonly result: "succeeded" | "failed" | "skipped";
    /** Resource operation counts, e.g. { update: 1, same: 4 }. */
    readonly changes: Record<string, number>;
    readonly outputs: Record<string, unknown>;
    /** Set when the adapter had to recover the stack first (stale lock of a dead process, pending operations). */
    readonly recovered?: string;
    readonly durationMs: number;
}

/** One entry of a stack's update history. */
export interface HistoryEntry {
    readonly version?: number;
    readonly kind: string;
    readonly result: string;
    readonly startTime: string;
    readonly endTime?: string;
    readonly message: string;
    /** The stack's gitops-stages config at that update (JSON-decoded). */
    readonly config: Record<string, unknown>;
    readonly changes: Record<string, number>;
}

/**
 * What an update does, for Pulumi's update metadata (`pulumi stack history`, Pulumi Cloud's update
 * page): the change, who asked (the authenticated principal), and where the release came from.
 */
export interface UpdateMetadata {
    readonly requestId: string;
    /** promote, rollback, hold, release, mr-deploy, mr-destroy. */
    readonly kind: string;
    /** The authenticated principal that asked. */
    readonly requester: string;
    /** The dev repo's commit the release was built from. */
    readonly sourceCommit?: string;
    /** The CI run that asked (its web page). */
    readonly ciRunUrl?: string;
    /** The merge request the change belongs to. */
    readonly mr?: number;
}

/** Options of an update. */
export interface UpdateOptions {
    readonly message: string;
    /** Recorded with the update in the state backend; without it the update's metadata says only what Pulumi finds itself. */
    readonly metadata?: UpdateMetadata;
    readonly dryRun?: boolean;
    /** Refresh the state from the world first, so drift (objects edited behind Pulumi's back) is corrected. */
    readonly refresh?: boolean;
    readonly signal?: AbortSignal;
    readonly onOutput?: (text: string) => void;
}

/** The Pulumi engine as the runner uses it. */
export interface EnginePort {
    /** The pipeline from the platform stack's outputs. */
    pipeline(): Promise<PipelineStage[]>;
    /** Outputs of the platform stack. */
    platformOutputs(): Promise<Record<string, unknown>>;
    /** One secret output of the platform stack in clear (undefined when absent); never logged. */
    platformSecret(key: string): Promise<unknown>;
    /** A stack's outputs (secrets shown as "[secret]"); undefined when the stack does not exist. */
    stackOutputs(stack: string): Promise<Record<string, unknown> | undefined>;
    /**
     * Updates a stack (or previews with dryRun) holding its lock: `plan` gets the stack's current
     * outputs (undefined for a new stack) and returns the config to set (keys without namespace) or
     * undefined to do nothing. Read-decide-write happens under the lock, so concurrent requests
     * from several processes never overwrite each other's changes.
     */
    update(stack: string, plan: (outputs: Record<string, unknown> | undefined) => Promise<Record<string, unknown> | undefined>, opts: UpdateOptions): Promise<UpdateResult | undefined>;
    /** Refresh in preview mode: what differs between the state and the world. */
    drift(stack: string, signal?: AbortSignal): Promise<{ changes: Record<string, number>; details: string[] }>;
    history(stack: string): Promise<HistoryEntry[]>;
    /** Destroys a stack's resources and removes the stack. */
    destroy(stack: string, opts: UpdateOptions): Promise<UpdateResult>;
    listStacks(): Promise<string[]>;
}

/**
 * The runner's durable records, kept in the request log's database (SQLite for the CLI and one
 * replica, PostgreSQL for several), so every process of a deployment sees the same ones.
 */
export interface RunnerStore {
    approvals(): Promise<Approval[]>;
    addApproval(a: Approval): Promise<void>;
    /** Uses up the approval of a release for a stage (after the promotion it allowed). */
    removeApproval(release: Pick<Approval, "app" | "version" | "stage">): Promise<void>;
    /** The stored (successful) answer to a principal's idempotency key. */
    answer(principal: string, key: string): Promise<unknown | undefined>;
    saveAnswer(principal: string, key: string, value: unknown): Promise<void>;
}
