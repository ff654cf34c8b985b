/**
 * The EnginePort on the Pulumi Automation API. Stacks run the project's program inline, in this
 * process, from one workspace (a copy of the project in the data folder). Who updates a stack is
 * decided by the request log (its running request of the stack); Pulumi's own lock in the state
 * backend is waited on with backoff while a live update holds it, and a lock left by an update
 * that no longer runs (backend-locks.ts) is removed and the stack recovered (pending operations
 * cleared by a refresh) before the update, and said so.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";

import {
    ConcurrentUpdateError,
    LocalWorkspace,
    OutputMap,
    type PreviewResult,
    type UpResult,
    type UpdateSummary,
    Stack,
    StackNotFoundError,
} from "@pulumi/pulumi/automation";

import type { PipelineStage } from "../core";
import { RunnerError } from "../errors";
import type { EnginePort, HistoryEntry, UpdateMetadata, UpdateOptions, UpdateResult } from "../ports";
import { describeBackend } from "./backend";
import { sleep } from "./processes";
import { guardEngineDisconnects, stopsHard } from "./engine-process";
import { checkpointExists, checkpointOutputMap, checkpointOutputs, latestUpdateRecord } from "./file-backend";
import { BackendLock, backendLocks, removeLocks, staleBackendLocks } from "./backend-locks";
import { LEASE_MS } from "../lease";
import { METADATA_VARS, metadataEnv } from "./metadata";
import { REMOTES_VAR } from "../../git/engine";

import type { RunnerEnvironment } from "./environment";

const NS = "gitops-stages";

/** Entries per `pulumi stack history` call when reading a stack's whole history. */
const HISTORY_PAGE = 500;

/** Options of {@link AutomationEngine}. */
export interface AutomationOptions {
    /** How long to wait for a stack locked by another update before giving up. */
    readonly lockWaitMs: number;
    readonly log: (line: string) => void;
    /** After how long a lock of another host counts as left by a replica that is gone (default: one lease; see backend-locks.ts). */
    readonly foreignLockMs?: number;
    /** How long an engine run cancelled for a lost lease may take to stop before it is killed (default: a sixteenth of a lease; see `stopsHard`). */
    readonly hardStopMs?: number;
}

/** The Automation API adapter. */
export class AutomationEngine implements EnginePort {
    private workspace: Promise<LocalWorkspace> | undefined;
    private refreshWorkspace: Promise<LocalWorkspace> | undefined;
    /** One workspace per stack for its updates, whose environment carries the update's metadata (see `updating`). */
    private readonly updateWorkspaces = new Map<string, Promise<LocalWorkspace>>();
    private readonly selectedForRefresh = new Map<string, Stack>();
    private readonly selectedForUpdate = new Map<string, Stack>();
    private selecting: Promise<unknown> = Promise.resolve();
    private readonly selected = new Map<string, Stack>();

    constructor(
        private readonly env: RunnerEnvironment,
        private readonly opts: AutomationOptions,
    ) {
        guardEngineDisconnects(opts.log);
        // A run cancelled for a lost lease is killed a sixteenth of a lease after its SIGINT. The
        // watchdog cancels it with between a quarter and three sixteenths of the lease left (it
        // looks every sixteenth, lease.ts), so the engine is gone an eighth of a lease before the
        // lease lapses and another process may take the stack.
        stopsHard(env.command, opts.hardStopMs ?? LEASE_MS / 16);
    }

    private ws(): Promise<LocalWorkspace> {
        this.workspace ??= this.createWorkspace(this.env.envVars);
        return this.workspace;
    }

    /**
     * The workspace refreshes run in: the same folder and Pulumi home, with the Kubernetes
     * provider told to keep what it cannot reach (render-mode stacks have no cluster to read back;
     * see docs/decisions.md). A workspace of its own, because a workspace's environment goes to
     * every command it runs: set on the shared one, an update running meanwhile would inherit it
     * and skip its rendering.
     */
    private refreshWs(): Promise<LocalWorkspace> {
        // Made once the ops repo's mapping is known: its environment is a copy.
        if (!this.refreshWorkspace) {
            const made = this.remotesKnown().then(() => this.createWorkspace({ ...this.env.envVars, PULUMI_K8S_SKIP_UPDATE_UNREACHABLE: "true" }));
            // A platform read that failed (a backend down for a moment) is tried again next time.
            made.catch(() => {
                if (this.refreshWorkspace === made) this.refreshWorkspace = undefined;
            });
            this.refreshWorkspace = made;
        }
        return this.refreshWorkspace;
    }

    private createWorkspace(envVars: Record<string, string>): Promise<LocalWorkspace> {
        return LocalWorkspace.create({
            workDir: this.env.workDir,
            envVars,
            pulumiCommand: this.env.command,
            pulumiHome: this.env.pulumiHome,
            // The project's own program, run in this process.
            program: async () => {
                // eslint-disable-next-line @typescript-eslint/no-require-imports
                const { runStack } = require("../../program/run") as typeof import("../../program/run");
                return runStack();
            },
        });
    }

    /**
     * The workspace a stack's updates run in. A workspace's environment goes to every command it
     * runs, and each update carries its own metadata there (`metadataEnv`): with one workspace for
     * all stacks, an update of one stage would be recorded with another's metadata when both run at
     * once. Updates of one stack never overlap (the stack's lock), so its workspace's environment
     * is set just before each, under that lock.
     */
    private updateWs(name: string): Promise<LocalWorkspace> {
        let ws = this.updateWorkspaces.get(name);
        if (!ws) {
            ws = this.createWorkspace(this.env.envVars).then((w) => this.readsFromFiles(w));
            this.updateWorkspaces.set(name, ws);
        }
        return ws;
    }

    /**
     * On a `file://` backend, answers from the backend's files what the Automation API would start
     * the CLI for around an update: `stack.up()` runs `pulumi stack output` twice (masked, then
     * with secrets) and `pulumi stack history` once after every update, and selecting a stack runs
     * `pulumi stack select` (once per stack and process); a few hundred milliseconds each. The
     * outputs come back with secrets masked (an update's answer never carries secret values;
     * `platformSecret` reads through a workspace of its own), and a stack not found on disk (or
     * kept in a form Node does not read, zstd) is left to the CLI. Other backends keep the CLI.
     */
    private readsFromFiles(ws: LocalWorkspace): LocalWorkspace {
        const url = this.env.backendUrl;
        if (!url.startsWith("file://")) return ws;
        const outputs = ws.stackOutputs.bind(ws);
        const select = ws.selectStack.bind(ws);
        ws.stackOutputs = async (name) => checkpointOutputMap(url, name) ?? outputs(name);
        // Every command names its stack (--stack), so selecting only has to say the stack exists.
        ws.selectStack = async (name) => (checkpointExists(url, name) ? undefined : select(name));
        return ws;
    }

    /** A stack of an update workspace answers `info()` (what `up` returns as its summary) from the backend's newest update record. */
    private infoFromFiles(stack: Stack): void {
        const url = this.env.backendUrl;
        if (!url.startsWith("file://")) return;
        const info = stack.info.bind(stack);
        stack.info = async (showSecrets?: boolean) => {
            const r = latestUpdateRecord(url, stack.name);
            if (!r) return info(showSecrets);
            const summary: UpdateSummary = {
                kind: r.kind as UpdateSummary["kind"],
                startTime: new Date(r.startTime * 1000),
                endTime: new Date((r.endTime ?? r.startTime) * 1000),
                message: r.message,
                environment: r.environment ?? {},
                config: {},
                result: r.result as UpdateSummary["result"],
                version: 0,
                ...(r.resourceChanges ? { resourceChanges: r.resourceChanges } : {}),
            };
            return summary;
        };
    }

    /** The stack `name` for an update, its workspace's environment set to `metadata`'s (and nothing of an earlier update's). */
    private async updating(name: string, create: boolean, metadata: UpdateMetadata | undefined): Promise<Stack | undefined> {
        const stack = await this.stack(name, create, "update");
        if (!stack) return undefined;
        await this.remotesKnown();
        const ws = stack.workspace as LocalWorkspace;
        const base = Object.fromEntries(Object.entries(this.env.envVars).filter(([k]) => !(METADATA_VARS as readonly string[]).includes(k)));
        ws.envVars = { ...base, ...(metadata ? metadataEnv(metadata, await this.devRepoUrl()) : {}) };
        return stack;
    }

    /** The dev repo's URL from the platform's outputs, for update metadata (undefined when unknown). */
    private async devRepoUrl(): Promise<string | undefined> {
        try {
            const dev = ((await this.platformOutputs()).repositories as { dev?: unknown } | undefined)?.dev;
            return typeof dev === "string" ? dev : undefined;
        } catch {
            return undefined;
        }
    }

    /** Selects (or creates) a stack; selection rewrites shared workspace files, so it is serialised. */
    private async stack(name: string, create: boolean, purpose: "read" | "refresh" | "update" = "read"): Promise<Stack | undefined> {
        // Selecting costs a CLI run; every command names its stack (--stack), so one selection per
        // process and workspace is enough.
        const cache = purpose === "refresh" ? this.selectedForRefresh : purpose === "update" ? this.selectedForUpdate : this.selected;
        const known = cache.get(name);
        if (known) return known;
        const ws = await (purpose === "refresh" ? this.refreshWs() : purpose === "update" ? this.updateWs(name) : this.ws());
        const run = this.selecting.then(async () => {
            try {
                return create ? await Stack.createOrSelect(name, ws) : await Stack.select(name, ws);
            } catch (e) {
                if (e instanceof StackNotFoundError || /no stack named/i.test(String(e))) return undefined;
                throw e;
            }
        });
        this.selecting = run.catch(() => undefined);
        const stack = await run;
        if (stack && purpose === "update") this.infoFromFiles(stack);
        if (stack) cache.set(name, stack);
        return stack;
    }

    /** A stack's outputs (secrets as "[secret]"), from the backend's checkpoint when it is a folder, else from the CLI. */
    private async outputsOf(name: string, stack?: Stack): Promise<Record<string, unknown> | undefined> {
        const fromFile = checkpointOutputs(this.env.backendUrl, name);
        if (fromFile !== undefined) return fromFile;
        const s = stack ?? (await this.stack(name, false));
        return s ? plain(await s.outputs()) : undefined;
    }

    /**
     * Writes the stack's config into its settings file (stacks/Pulumi.<stack>.yaml) directly: the
     * values are plain JSON strings, and the CLI's `config set-all` would cost a process start.
     */
    private writeConfig(name: string, config: Record<string, unknown>): void {
        const file = path.join(this.env.workDir, "stacks", `Pulumi.${name}.yaml`);
        const doc = fs.existsSync(file) ? YAML.parseDocument(fs.readFileSync(file, "utf8")) : new YAML.Document({});
        for (const [k, v] of Object.entries(config)) doc.setIn(["config", `${NS}:${k}`], JSON.stringify(v));
        const partial = `${file}.partial-${process.pid}`;
        fs.writeFileSync(partial, doc.toString({ lineWidth: 0 }));
        fs.renameSync(partial, file);
    }

    async listStacks(): Promise<string[]> {
        const ws = await this.ws();
        return (await ws.listStacks()).map((s) => s.name);
    }

    async platformOutputs(): Promise<Record<string, unknown>> {
        const outputs = await this.outputsOf("platform");
        if (!outputs) throw this.noPlatform();
        this.installRemotes(outputs);
        return outputs;
    }

    /**
     * With `$GITOPS_STAGES_OPS_URL`, maps the platform's name of the ops repo (a folder of the
     * local git host, which stage states keep) to that URL, for this process (the stage program's
     * reads, the runner's) and for the engine's (the ops repo writer runs in the provider's
     * process): see `reachable` in git/engine.ts. Once per process: the platform's name for it
     * never changes.
     */
    private installRemotes(outputs: Record<string, unknown>): void {
        if (!this.env.opsUrl || this.remotesInstalled) return;
        const ops = (outputs.repositories as { ops?: unknown } | undefined)?.ops;
        // A platform without the output yet (being set up): looked at again, at most every 30 s.
        if (typeof ops !== "string" || !ops) {
            this.remotesLookedAt = Date.now();
            return;
        }
        this.remotesInstalled = true;
        const value = JSON.stringify({ [ops]: this.env.opsUrl });
        process.env[REMOTES_VAR] = value;
        (this.env.envVars as Record<string, string>)[REMOTES_VAR] = value;
    }

    private remotesInstalled = false;
    private remotesLookedAt = 0;

    /** Before a program runs (update, refresh): the ops repo's mapping is known, when there is one. */
    private async remotesKnown(): Promise<void> {
        // No platform yet (its own first update): nothing to map.
        if (this.env.opsUrl && !this.remotesInstalled && Date.now() - this.remotesLookedAt > 30_000) await this.platformOutputs().catch((e: unknown) => {
            if (!(e instanceof RunnerError && e.kind === "not-found")) throw e;
        });
    }

    private noPlatform(): RunnerError {
        return new RunnerError(
            "not-found",
            `the platform stack "platform" does not exist in the state backend ${describeBackend(this.env.backend)}: ` +
                "bootstrap it first (pulumi stack init platform; pulumi up), or point PULUMI_BACKEND_URL (or pulumi login) at the backend that holds it",
        );
    }

    async platformSecret(key: string): Promise<unknown> {
        // Secret outputs live encrypted in the checkpoint, so only the CLI can read them: one
        // process per key and minute at most (the ops push token changes only with the platform).
        const hit = this.secrets.get(key);
        if (hit && hit.until > Date.now()) return hit.value;
        const stack = await this.stack("platform", false);
        if (!stack) throw this.noPlatform();
        const value = (await stack.outputs())[key]?.value;
        this.secrets.set(key, { value, until: Date.now() + 60_000 });
        return value;
    }

    private readonly secrets = new Map<string, { value: unknown; until: number }>();

    async pipeline(): Promise<PipelineStage[]> {
        const outputs = await this.platformOutputs();
        const stages = outputs.stages as PipelineStage[] | undefined;
        if (!stages?.length) throw new RunnerError("not-found", "the platform stack has no stages output: run pulumi up on stack platform");
        return stages.map((s) => ({ ...s, namespaces: s.namespaces ?? [s.name], freezeWindows: s.freezeWindows ?? [], requireApproval: s.requireApproval ?? false }));
    }

    async stackOutputs(name: string): Promise<Record<string, unknown> | undefined> {
        return this.outputsOf(name);
    }

    /**
     * Runs an engine operation; waits while the stack is locked by a live update elsewhere, and
     * recovers it when the lock belongs to a dead process. Returns what recovery did, if anything.
     */
    private async withRecovery<T>(stack: Stack, signal: AbortSignal | undefined, fn: () => Promise<T>, opts: { recover?: boolean } = {}): Promise<{ value: T; recovered?: string }> {
        const deadline = Date.now() + this.opts.lockWaitMs;
        let delay = 200;
        let recovered: string | undefined;
        for (;;) {
            try {
                return { value: await fn(), recovered };
            } catch (e) {
                if (!isLocked(e)) throw e;
                // Only a process that holds the stack's request in the log recovers it (a read does not).
                if (opts.recover === false) {
                    // Without the stack's request, another host's lock may be a live update (the age
                    // rule holds only for whoever holds the stack in the log): only this host's are judged.
                    const stale = await this.staleLocks(stack.name, Number.POSITIVE_INFINITY);
                    if (stale.length) throw new RunnerError("conflict", `stack ${stack.name} holds the lock of ${owners(stale)}, which is no longer running; the stack's next update recovers it`, "stale-lock");
                }
                const message = opts.recover === false ? undefined : await this.recoverIfStale(stack, signal);
                if (message) {
                    recovered = message;
                    continue;
                }
                // Where the locks can be read, they are watched until they go (or turn stale) before
                // the next attempt: an attempt plans and starts the engine, seconds of work each time.
                for (;;) {
                    if (Date.now() > deadline) {
                        throw new RunnerError("timeout", `stack ${stack.name} stayed locked by another update for ${Math.round(this.opts.lockWaitMs / 1000)}s; try again later`);
                    }
                    await sleep(delay, signal);
                    delay = Math.min(delay * 2, 5000);
                    if (!(await this.lockedStill(stack.name, opts.recover === false ? Number.POSITIVE_INFINITY : undefined))) break;
                }
            }
        }
    }

    /** Whether the stack still holds a lock that is not stale; unknown (backends not read here) counts as free. */
    private async lockedStill(name: string, foreignAfterMs?: number): Promise<boolean> {
        if (!/^(file|postgres(ql)?):\/\//.test(this.env.backendUrl)) return false;
        const locks = await backendLocks(this.env.backendUrl, name).catch(() => []);
        const stale = await this.staleLocks(name, foreignAfterMs).catch(() => []);
        return locks.length > stale.length;
    }

    /** Removes locks of dead processes and clears pending operations; returns what it did, if anything. */
    private async recoverIfStale(stack: Stack, signal?: AbortSignal): Promise<string | undefined> {
        const stale = await this.staleLocks(stack.name);
        if (stale.length === 0) return undefined;
        await removeLocks(this.env.backendUrl, stale);
        await this.refreshForRecovery(stack, signal);
        const message =
            `recovered stack ${stack.name}: removed the lock of ${owners(stale)} ` +
            "(no longer running) and cleared pending operations with a refresh";
        this.opts.log(message);
        return message;
    }

    /** The stack's locks left by updates that no longer run (backend-locks.ts: another host's after one lease). */
    private staleLocks(name: string, foreignAfterMs = this.opts.foreignLockMs ?? LEASE_MS): Promise<BackendLock[]> {
        return staleBackendLocks(this.env.backendUrl, name, foreignAfterMs);
    }

    private async refreshForRecovery(stack: Stack, signal?: AbortSignal): Promise<void> {
        const refreshing = await this.stack(stack.name, false, "refresh");
        // Cancelled (and killed, see stopsHard) with the update it prepares: a runner that lost the stack writes nothing more.
        await (refreshing ?? stack).refresh({ clearPendingCreates: true, ...(signal ? { signal } : {}) });
    }

    async update(
        name: string,
        plan: (outputs: Record<string, unknown> | undefined) => Promise<Record<string, unknown> | undefined>,
        opts: UpdateOptions,
    ): Promise<UpdateResult | undefined> {
        const started = Date.now();
        // Who may update the stack is decided before this is called: the request log's running
        // request of the stack is its one lock (commands.ts, lease.ts); Pulumi's own lock of the
        // backend, recovered below when its process died, guards the engine's state itself.
        let stack = await this.updating(name, false, opts.metadata);
        // One attempt plans on the stack's outputs, writes the config and runs the engine. When a
        // live update of another process held the stack (one whose lease ran out while it was
        // still stopping), the attempt is made again, planned on what that update left.
        const attempt = async (): Promise<{ config?: Record<string, unknown>; preview?: PreviewResult; up?: UpResult; recovered?: string }> => {
            const config = await plan(stack ? await this.outputsOf(name, stack) : undefined);
            if (config === undefined) return {};
            stack ??= (await this.updating(name, true, opts.metadata))!;
            this.writeConfig(name, config);
            // A stack left inconsistent by a killed update is recovered before anything else.
            const recovered = await this.recoverIfStale(stack, opts.signal);
            // The Automation API only listens for an abort that comes while the engine runs: a lease
            // lost while planning must stop the update before it starts.
            opts.signal?.throwIfAborted();
            if (opts.dryRun) return { config, preview: await stack.preview({ message: opts.message, onOutput: opts.onOutput, signal: opts.signal, diff: true }), ...(recovered ? { recovered } : {}) };
            return { config, up: await stack.up({ message: opts.message, onOutput: opts.onOutput, signal: opts.signal, ...(opts.refresh ? { refresh: true } : {}) }), ...(recovered ? { recovered } : {}) };
        };
        const { value: done, recovered: recoveredLater } = stack ? await this.withRecovery(stack, opts.signal, attempt) : await this.firstUpdate(attempt, () => stack, opts.signal);
        if (done.config === undefined) return undefined;
        const recovered = done.recovered ?? recoveredLater;
        if (done.preview) {
            return { result: "succeeded", changes: numbers(done.preview.changeSummary), outputs: {}, durationMs: Date.now() - started, ...(recovered ? { recovered } : {}) };
        }
        const up = done.up!;
        return {
            result: up.summary.result === "succeeded" ? "succeeded" : "failed",
            changes: numbers(up.summary.resourceChanges ?? {}),
            outputs: plain(up.outputs),
            durationMs: Date.now() - started,
            ...(recovered ? { recovered } : {}),
        };
    }

    /**
     * The attempt on a stack that did not exist: it is created only once the plan has something to
     * do (a refusal creates nothing). Should another process hold it once it exists (a run that
     * lost its lease), the attempt waits and is planned again as on any stack.
     */
    private async firstUpdate<T>(attempt: () => Promise<T>, created: () => Stack | undefined, signal: AbortSignal | undefined): Promise<{ value: T; recovered?: string }> {
        try {
            return { value: await attempt() };
        } catch (e) {
            const stack = created();
            if (!stack || !isLocked(e)) throw e;
            return this.withRecovery(stack, signal, attempt);
        }
    }

    async drift(name: string, signal?: AbortSignal): Promise<{ changes: Record<string, number>; details: string[] }> {
        const stack = await this.stack(name, false);
        if (!stack) throw new RunnerError("not-found", `stack ${name} does not exist`);
        const details: string[] = [];
        const refreshing = (await this.stack(name, false, "refresh")) ?? stack;
        const { value } = await this.withRecovery(stack, signal, () =>
            refreshing.refresh({
                previewOnly: true,
                signal,
                onEvent: (ev) => {
                    const md = ev.resOutputsEvent?.metadata;
                    if (!md || md.op === "same") return;
                    const drifted = (md.new?.outputs as { drifted?: string[] } | undefined)?.drifted;
                    details.push(`${md.urn.split("::").pop()}: ${md.op}${drifted?.length ? ` (${drifted.join(", ")})` : ""}`);
                },
            }),
            { recover: false },
        );
        const changes = numbers(value.summary.resourceChanges ?? {});
        return { changes, details };
    }

    async history(name: string): Promise<HistoryEntry[]> {
        const stack = await this.stack(name, false);
        if (!stack) throw new RunnerError("not-found", `stack ${name} does not exist`);
        // `pulumi stack history` shows 10 entries unless given a page size: page through all of
        // them (the audit trail is every update; a rollback looks past holds and refreshes). Secret
        // config stays encrypted: the entries keep only plain config.
        // An update that lands between two pages shifts the list by one: an entry seen on both
        // pages is kept once; a page with nothing new ends the reading.
        const entries: UpdateSummary[] = [];
        const seen = new Set<string>();
        for (let page = 1; ; page++) {
            const got = await stack.history(HISTORY_PAGE, page, false);
            const fresh = got.filter((h) => {
                const key = JSON.stringify(h);
                return !seen.has(key) && seen.add(key);
            });
            entries.push(...fresh);
            if (got.length < HISTORY_PAGE || fresh.length === 0) break;
        }
        return entries.map((h) => ({
            version: h.version,
            kind: h.kind,
            result: h.result,
            startTime: new Date(h.startTime).toISOString(),
            endTime: h.endTime ? new Date(h.endTime).toISOString() : undefined,
            message: h.message,
            config: Object.fromEntries(
                Object.entries(h.config ?? {})
                    .filter(([k, v]) => k.startsWith(`${NS}:`) && !v.secret)
                    .map(([k, v]) => [k.slice(NS.length + 1), decode(v.value)]),
            ),
            changes: numbers(h.resourceChanges ?? {}),
        }));
    }

    async destroy(name: string, opts: UpdateOptions): Promise<UpdateResult> {
        const started = Date.now();
        const stack = await this.updating(name, false, opts.metadata);
        if (!stack) throw new RunnerError("not-found", `stack ${name} does not exist`);
        const { value, recovered } = await this.withRecovery(stack, opts.signal, () => {
            opts.signal?.throwIfAborted();
            return stack.destroy({ message: opts.message, onOutput: opts.onOutput, signal: opts.signal });
        });
        await (await this.ws()).removeStack(name);
        this.selected.delete(name);
        this.selectedForUpdate.delete(name);
        this.selectedForRefresh.delete(name);
        this.updateWorkspaces.delete(name);
        return { result: value.summary.result === "succeeded" ? "succeeded" : "failed", changes: numbers(value.summary.resourceChanges ?? {}), outputs: {}, durationMs: Date.now() - started, ...(recovered ? { recovered } : {}) };
    }
}

/** Who held stale locks, for messages: "process 123" on this machine, "process 123 on host b" elsewhere. */
function owners(locks: readonly BackendLock[]): string {
    const here = os.hostname();
    return locks.map((l) => `process ${l.owner.pid}${l.owner.hostname === here ? "" : ` on host ${l.owner.hostname}`}`).join(", ");
}

/** Whether an engine failure is another update holding the stack's lock. */
function isLocked(e: unknown): boolean {
    return e instanceof ConcurrentUpdateError || /currently locked by \d+ lock/i.test(String(e));
}

function decode(v: string): unknown {
    try {
        return JSON.parse(v);
    } catch {
        return v;
    }
}

function numbers(o: Record<string, number | undefined>): Record<string, number> {
    return Object.fromEntries(Object.entries(o).filter((e): e is [string, number] => typeof e[1] === "number"));
}

/** Output values without secrets: a secret output is replaced by "[secret]". */
function plain(outputs: OutputMap): Record<string, unknown> {
    return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.secret ? "[secret]" : v.value]));
}

