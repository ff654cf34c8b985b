/**
 * Merge-request environments: one stack `mr-<n>` each, deployed from a merge request's bundle,
 * destroyed on request or by the reaper once expired.
 */
import { checkRequester, parseMrDeployRequest } from "./core";
import { RunnerError } from "./errors";
import type { ChangeResult, RunOptions, RunnerDeps } from "./runner";

/** Runs a job on a stack's queue of this process (see Runner). */
export type Queued = <T>(stack: string, id: string, signal: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>) => Promise<T>;

/** Merge-request environments. */
export class MergeRequests {
    constructor(
        private readonly deps: Pick<RunnerDeps, "engine" | "now" | "newId" | "mrCluster">,
        private readonly queued: Queued,
    ) {}

    /** Deploys (or updates) a merge-request environment. */
    async mrDeploy(raw: unknown, opts: RunOptions = {}): Promise<ChangeResult & { expiresAt?: string; namespace?: string }> {
        const { mr, app, bundle, image, sourceCommit, ttlHours, requester } = parseMrDeployRequest(raw);
        const stack = `mr-${mr}`;
        const requestId = opts.requestId ?? this.deps.newId();
        return this.queued(stack, requestId, opts.signal, async (signal): Promise<ChangeResult & { expiresAt?: string; namespace?: string }> => {
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

    /**
     * Destroys a merge-request environment and its stack. With `ifExpired` (the reaper's), only if
     * it is still expired when its turn comes: a redeploy that ran meanwhile keeps it (noop).
     */
    async mrDestroy(mr: number, requester: string, opts: RunOptions & { ifExpired?: boolean } = {}): Promise<ChangeResult> {
        if (!Number.isInteger(mr) || mr < 1) throw new RunnerError("invalid", `mr = ${JSON.stringify(mr)}: must be a whole number from 1`);
        checkRequester(requester);
        const stack = `mr-${mr}`;
        const requestId = opts.requestId ?? this.deps.newId();
        return this.queued(stack, requestId, opts.signal, async (signal): Promise<ChangeResult> => {
            if (opts.ifExpired) {
                const expiresAt = (await this.deps.engine.stackOutputs(stack))?.expiresAt as string | undefined;
                if (expiresAt === undefined || Date.parse(expiresAt) > this.deps.now().getTime()) {
                    return { requestId, state: "noop", kind: "remove", stage: stack, app: "", message: `merge request ${mr} kept: ${expiresAt ? `it was redeployed and expires at ${expiresAt}` : "its stack is gone or has no expiry"}` };
                }
            }
            const r = await this.deps.engine.destroy(stack, { message: `Destroy merge request ${mr} (request ${requestId})\n\nRequester: ${requester}\n`, signal, onOutput: opts.onOutput, metadata: { requestId, kind: "mr-destroy", requester, mr } });
            return { requestId, state: "done", kind: "remove", stage: stack, app: "", message: `merge request ${mr} destroyed`, changes: r.changes, durationMs: r.durationMs };
        });
    }

    /**
     * Destroys every merge-request environment whose expiry has passed, each by `destroy` (default:
     * {@link mrDestroy} with `ifExpired`; the command layer passes one that first takes the
     * environment's stack in the request log, so a reap never runs alongside that stack's deploy).
     */
    async mrReap(
        requester: string,
        opts: RunOptions & { destroy?: (mr: number) => Promise<ChangeResult> } = {},
    ): Promise<{ destroyed: string[]; kept: { stack: string; expiresAt: string }[] }> {
        checkRequester(requester);
        const destroy = opts.destroy ?? ((mr: number) => this.mrDestroy(mr, requester, { ...opts, requestId: undefined, ifExpired: true }));
        const now = this.deps.now().getTime();
        const destroyed: string[] = [];
        const kept: { stack: string; expiresAt: string }[] = [];
        for (const stack of (await this.deps.engine.listStacks()).filter((s) => /^mr-\d+$/.test(s))) {
            if (opts.signal?.aborted) throw opts.signal.reason;
            const expiresAt = (await this.deps.engine.stackOutputs(stack))?.expiresAt as string | undefined;
            if (expiresAt && Date.parse(expiresAt) <= now) {
                const r = await destroy(Number(stack.slice(3)));
                if (r.state === "done") destroyed.push(stack);
                else kept.push({ stack, expiresAt: ((await this.deps.engine.stackOutputs(stack))?.expiresAt as string | undefined) ?? "unknown" });
            } else kept.push({ stack, expiresAt: expiresAt ?? "unknown" });
        }
        return { destroyed, kept };
    }
}
