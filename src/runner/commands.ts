/**
 * The one command layer. Every request, whether it comes from the `stages` CLI, the service's HTTP
 * routes or the CI client (which calls those routes), is a {@link Command}: the verb and the
 * request as the HTTP API spells it. Here, and only here, a command is parsed (bad input is
 * `invalid` whoever asks), given the authenticated principal as its requester, checked against
 * the principal's rights, checked against policy, and run on the runner. The CLI and the routes
 * only translate flags or bodies into commands and results into output; the request log and its
 * workers (the service) or the CLI process run what {@link Commands.admit} admitted through
 * {@link Commands.run}.
 */
import { ValidationError } from "../config/validate";
import type { SealingScope } from "../secrets/seal";
import { checkBundleFiles } from "../service/bundle-upload";
import { type Actor, logPrincipal, parseHoldRequest, parseMrDeployRequest, parsePromoteRequest, parseReleaseRef, parseRollbackRequest } from "./core";
import * as os from "node:os";

import { CLI_OWNER, endedError } from "../service/sqlite-store";
import type { RequestStore } from "../service/store";
import { alive, anyOf, sleep } from "./adapters/processes";
import { LEASE_MS, Leases } from "./lease";
import { RunnerError, publicError } from "./errors";
import { type Verb, requireRight } from "./rights";
import { newRequestId } from "./ids";
import { parseInput } from "./requests";
import type { ChangeResult, Runner } from "./runner";
import type { SecretValues, Secrets } from "./secrets";

/** Every command. */
export const COMMAND_VERBS = [
    "promote",
    "preview",
    "rollback",
    "hold",
    "release",
    "approve",
    "status",
    "deployment",
    "wait",
    "history",
    "drift",
    "mr-deploy",
    "mr-destroy",
    "mr-reap",
    "secret-set",
    "secret-list",
    "secret-rm",
    "secret-reseal",
] as const;

/** A command's verb. */
export type CommandVerb = (typeof COMMAND_VERBS)[number];

/** Commands that change a stack: queued in the request log, one at a time per stack. */
export const LONG: ReadonlySet<CommandVerb> = new Set(["promote", "preview", "rollback", "hold", "release", "drift", "mr-deploy", "mr-destroy", "mr-reap"]);

/** Changes answered at once (approvals, secrets): recorded in the request log with their outcome, never queued. */
export const RECORDED_AT_ONCE: ReadonlySet<CommandVerb> = new Set(["approve", "secret-set", "secret-rm", "secret-reseal"]);

/** Commands whose requester is recorded (the ops commit's `Requester` trailer, the update's metadata). */
const WITH_REQUESTER: ReadonlySet<CommandVerb> = new Set(["promote", "preview", "rollback", "hold", "release", "mr-deploy", "mr-destroy", "mr-reap"]);

/** The right each command needs (secrets: on the stage named; mr: on no stage). */
export const RIGHT: Readonly<Record<CommandVerb, Verb>> = {
    promote: "promote",
    preview: "preview",
    rollback: "rollback",
    hold: "hold",
    release: "hold",
    approve: "approve",
    status: "status",
    deployment: "status",
    wait: "status",
    history: "history",
    drift: "drift",
    "mr-deploy": "mr",
    "mr-destroy": "mr",
    "mr-reap": "mr",
    "secret-set": "secrets",
    "secret-list": "secrets",
    "secret-rm": "secrets",
    "secret-reseal": "secrets",
};

/** A request to the runner, as a transport received it. */
export interface Command {
    readonly verb: CommandVerb;
    /** The request's fields as the HTTP API spells them (body, or query for reads). */
    readonly input: Readonly<Record<string, unknown>>;
    /**
     * A release bundle: a folder on this machine (the CLI) or files uploaded with the request
     * (the service; checked here before anything touches the disk).
     */
    readonly bundle?: { readonly dir: string } | { readonly files: unknown };
    /** Secret values of `secret-set`, read by the transport (files, stdin, base64 in the body); never recorded. */
    readonly values?: SecretValues;
}

/** A command that passed parsing, rights and policy. */
export interface Admitted {
    readonly verb: CommandVerb;
    /** What it locks and is queued on: a stack (`tst`, `mr-12`), or a label of its own for reads. */
    readonly stack: string;
    /** The request the runner gets: requester = the principal; a bundle as a folder (or "(uploaded)" until it is written). */
    readonly request: Record<string, unknown>;
    /** Runs as a queued update (true) or is answered at once. */
    readonly long: boolean;
    /** Requests of one stack with the same key may be superseded by a newer one (promotions: the app). */
    readonly coalesceKey?: string;
    readonly idempotencyKey?: string;
    /** An uploaded bundle, checked, to be written to a folder before the request runs. */
    readonly files?: Readonly<Record<string, string>>;
    /** What the request log keeps of the request: no secret values, no key material. */
    readonly recorded: unknown;
    readonly values?: SecretValues;
}

/**
 * The request log as a process that runs its own requests (the CLI) uses it: each change is
 * recorded there, runs only while no other request of its stack runs (the log's one lock per
 * stack, which a service sharing the database honours too), and ends with its outcome recorded.
 */
export interface ProcessLog {
    readonly store: RequestStore;
    /** This process as the owner of what it runs: `cli:<host>:<pid>`. */
    readonly owner: string;
    /** How long to wait for a stack another request runs. */
    readonly lockWaitMs: number;
    /** How long a claim lasts unless renewed (default {@link LEASE_MS}; tests shorten it). */
    readonly leaseMs?: number;
    readonly now?: () => Date;
    /** Told when a request of a process that ended is failed so this one can run. */
    readonly notice?: (line: string) => void;
}

/** Whether the owner of a running request is a CLI process of this machine that no longer runs. */
export function ownerEnded(owner: string | undefined): boolean {
    const m = owner ? /^cli:(.+):(\d+)$/.exec(owner) : null;
    return m !== null && m[1] === os.hostname() && !alive(Number(m[2]));
}

/** This process as a request's owner in the log. */
export function cliOwner(): string {
    return `${CLI_OWNER}${os.hostname()}:${process.pid}`;
}

/** Options of a run. */
export interface RunOptions {
    /** The request log's id of the request. */
    readonly requestId?: string;
    readonly onOutput?: (text: string) => void;
    /** Cancels the run (SIGINT; the request's lease lost). */
    readonly signal?: AbortSignal;
    /**
     * The request log of the process that runs the command: a command that changes other stacks
     * than its own (the reaper, each merge request it destroys) takes each of them there first.
     */
    readonly log?: ProcessLog;
}

/** The runner's commands. */
export class Commands {
    constructor(private readonly deps: { readonly runner: Runner; readonly secrets: Secrets }) {}

    /**
     * Parses a command, sets the principal as its requester, checks the principal's right and,
     * with `policyNow`, the policy on the current state (the service answers a refusal before it
     * queues; the runner decides again under the stack's lock when the update runs, so the CLI,
     * which runs at once, leaves it to that). Throws the typed error of the first check that fails.
     */
    async admit(cmd: Command, actor: Actor, opts: { policyNow?: boolean } = {}): Promise<Admitted> {
        if (!(COMMAND_VERBS as readonly string[]).includes(cmd.verb)) throw new RunnerError("invalid", `verb = ${JSON.stringify(cmd.verb)}: must be one of ${COMMAND_VERBS.join(", ")}`);
        const verb = cmd.verb;
        // Bad input is `invalid` whoever asks: the input is checked against its schema first, every
        // problem listed (a bundle as the folder it is or will be written to).
        const bundle = this.bundle(cmd);
        parseInput(verb, { ...cmd.input, ...(bundle ? { bundle: bundle.dir } : {}) });
        let input: Record<string, unknown> = { ...cmd.input };
        if (WITH_REQUESTER.has(verb)) {
            // Who asked is the authenticated principal. A requester the caller wrote was checked
            // like any field above (a malformed one is `invalid`, not silently dropped); it is replaced.
            input = { ...input, requester: actor.name };
        }
        const long = LONG.has(verb);
        const base = { verb, long, recorded: input };
        switch (verb) {
            case "promote":
            case "preview": {
                // The route or verb says whether it previews: `dryRun` is not a field of either (the schema refused it).
                const request = { ...input, ...(bundle ? { bundle: bundle.dir } : {}), dryRun: verb === "preview" };
                const req = parsePromoteRequest(request);
                requireRight(actor, RIGHT[verb], req.to);
                // Refusals by policy are answered now; the update decides again on the state it finds.
                if (opts.policyNow) await this.deps.runner.promote(request, actor, { checkOnly: true });
                return { ...base, stack: req.to, request, ...(verb === "promote" ? { coalesceKey: req.app } : {}), ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}), ...(bundle?.files ? { files: bundle.files } : {}) };
            }
            case "rollback": {
                const req = parseRollbackRequest(input);
                requireRight(actor, "rollback", req.stage);
                return { ...base, stack: req.stage, request: input, ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}) };
            }
            case "hold":
            case "release": {
                const req = parseHoldRequest(input);
                requireRight(actor, "hold", req.stage);
                return { ...base, stack: req.stage, request: input };
            }
            case "mr-deploy": {
                const request = { ...input, ...(bundle ? { bundle: bundle.dir } : {}) };
                const req = parseMrDeployRequest(request);
                requireRight(actor, "mr");
                return { ...base, stack: `mr-${req.mr}`, request, ...(bundle?.files ? { files: bundle.files } : {}) };
            }
            case "mr-destroy": {
                const { mr } = parseInput(verb, input);
                requireRight(actor, "mr");
                return { ...base, stack: `mr-${mr}`, request: { mr, requester: actor.name } };
            }
            case "mr-reap": {
                parseInput(verb, input);
                requireRight(actor, "mr");
                return { ...base, stack: "mr-reap", request: { requester: actor.name } };
            }
            case "drift": {
                // A stage, `platform` or `mr-<n>`: all DNS labels.
                const { stage } = parseInput(verb, input);
                requireRight(actor, "drift", stage);
                return { ...base, stack: `drift:${stage ?? "*"}`, request: stage === undefined ? {} : { stage } };
            }
            case "approve": {
                const { app, version, stage } = parseInput(verb, input);
                requireRight(actor, "approve", stage);
                return { ...base, stack: `approve:${stage}`, request: { app, version, stage } };
            }
            case "status": {
                const { stage } = parseInput(verb, input);
                requireRight(actor, "status", stage);
                return { ...base, stack: `status:${stage ?? "*"}`, request: stage === undefined ? {} : { stage } };
            }
            case "deployment": {
                const { stage, refresh, release } = parseInput(verb, input);
                const ref = release === undefined ? undefined : parseReleaseRef(release, "release");
                requireRight(actor, "status", stage);
                return { ...base, stack: `deployment:${stage}`, request: { stage, refresh: refresh ?? false, ...(ref ? { release: ref } : {}) } };
            }
            case "wait": {
                const { stage, timeoutSeconds, until, release } = parseInput(verb, input);
                const ref = release === undefined ? undefined : parseReleaseRef(release, "release");
                requireRight(actor, "status", stage);
                return { ...base, stack: `wait:${stage}`, request: { stage, timeoutSeconds: timeoutSeconds ?? 600, until: until ?? "deployed", ...(ref ? { release: ref } : {}) } };
            }
            case "history": {
                const { stage, commit } = parseInput(verb, input);
                requireRight(actor, "history", stage);
                return { ...base, stack: `history:${stage}`, request: { stage, ...(commit !== undefined ? { commit } : {}) } };
            }
            case "secret-set": {
                const o = parseInput(verb, input);
                if (!cmd.values || Object.keys(cmd.values).length === 0) throw new RunnerError("invalid", new ValidationError("secret request", [{ key: "values", rule: "must hold at least one KEY" }]).message);
                requireRight(actor, "secrets", o.stage);
                const request = { ...o, scope: (o.scope ?? "strict") as SealingScope, replace: o.replace ?? false };
                // Recorded without the values: the log keeps key names only.
                return { ...base, stack: `secrets:${o.stage}`, request, values: cmd.values, recorded: { ...request, ...(o.certificate !== undefined ? { certificate: true } : {}), values: Object.keys(cmd.values) } };
            }
            case "secret-list": {
                const { stage, app } = parseInput(verb, input);
                requireRight(actor, "secrets", stage);
                return { ...base, stack: `secrets:${stage}`, request: { stage, ...(app !== undefined ? { app } : {}) } };
            }
            case "secret-rm": {
                const o = parseInput(verb, input);
                requireRight(actor, "secrets", o.stage);
                return { ...base, stack: `secrets:${o.stage}`, request: { ...o, keys: o.keys ?? [] } };
            }
            case "secret-reseal": {
                const o = parseInput(verb, input);
                requireRight(actor, "secrets", o.stage);
                const request = { ...o, privateKeys: o.privateKeys ?? [] };
                return { ...base, stack: `secrets:${o.stage}`, request, recorded: { stage: o.stage, certificate: o.certificate !== undefined, privateKeys: request.privateKeys.length, ...(o.reason !== undefined ? { reason: o.reason } : {}) } };
            }
        }
    }

    /** The bundle of a command, checked: a folder as given (the CLI), or uploaded files to be written later. */
    private bundle(cmd: Command): { dir: string; files?: Record<string, string> } | undefined {
        if (cmd.bundle === undefined) return undefined;
        if ("dir" in cmd.bundle) return { dir: cmd.bundle.dir };
        return { dir: "(uploaded)", files: checkBundleFiles(cmd.bundle.files) };
    }

    /** Runs an admitted command (in the CLI's process, or on a worker that claimed it from the request log). */
    async run(admitted: Pick<Admitted, "verb" | "request"> & { readonly values?: SecretValues }, actor: Actor, opts: RunOptions = {}): Promise<unknown> {
        const { runner, secrets } = this.deps;
        const r = admitted.request;
        const o = { principal: logPrincipal(actor), ...(opts.requestId ? { requestId: opts.requestId } : {}), ...(opts.onOutput ? { onOutput: opts.onOutput } : {}), ...(opts.signal ? { signal: opts.signal } : {}) };
        switch (admitted.verb) {
            case "promote":
            case "preview":
                return runner.promote(r, actor, o);
            case "rollback":
                return runner.rollback(r, o);
            case "hold":
            case "release":
                return runner.hold(r, admitted.verb === "hold", o);
            case "mr-deploy":
                return runner.mrDeploy(r, o);
            case "mr-destroy":
                return runner.mrDestroy(r.mr as number, r.requester as string, { ...o, ifExpired: r.ifExpired === true });
            case "mr-reap": {
                const log = opts.log;
                if (!log) return runner.mrReap(r.requester as string, o);
                // Each environment is destroyed as a request of its own stack (`mr-<n>`), so never
                // while a deploy of it runs; `ifExpired` looks at its expiry again once it has the stack.
                const destroy = (mr: number) => {
                    const request = { mr, requester: r.requester, ifExpired: true };
                    const child: Admitted = { verb: "mr-destroy", stack: `mr-${mr}`, long: true, request, recorded: request };
                    return this.logged(child, actor, log, { ...(opts.onOutput ? { onOutput: opts.onOutput } : {}), ...(opts.signal ? { signal: opts.signal } : {}) }) as Promise<ChangeResult>;
                };
                return runner.mrReap(r.requester as string, { ...o, destroy });
            }
            case "drift":
                return runner.drift(r.stage as string | undefined, opts.signal);
            case "approve":
                return runner.approve(r, actor);
            case "status":
                return runner.status(r.stage as string | undefined);
            case "deployment":
                return runner.deployment(r.stage as string, r.refresh === true, r.release as { app: string; version: string } | undefined);
            case "wait":
                return runner.wait(r.stage as string, (r.timeoutSeconds as number) * 1000, { until: r.until as "deployed" | "synced", ...(r.release ? { release: r.release as { app: string; version: string } } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
            case "history":
                return r.commit !== undefined ? runner.stageCommit(r.stage as string, r.commit as string) : runner.history(r.stage as string);
            case "secret-set":
                if (!admitted.values) throw new RunnerError("internal", "secret-set ran without its values (they are never recorded, so it cannot be run from the log)");
                return secrets.set({ ...(r as Record<string, never>), app: r.app as string, stage: r.stage as string, scope: r.scope as SealingScope, replace: r.replace === true, values: admitted.values }, actor, opts.requestId);
            case "secret-list":
                return secrets.list(r.stage as string, r.app as string | undefined, actor);
            case "secret-rm":
                return secrets.remove({ app: r.app as string, stage: r.stage as string, keys: r.keys as string[], ...(r.name !== undefined ? { name: r.name as string } : {}), ...(r.reason !== undefined ? { reason: r.reason as string } : {}) }, actor, opts.requestId);
            case "secret-reseal":
                return secrets.reseal({ stage: r.stage as string, ...(r.certificate !== undefined ? { certificate: r.certificate as string } : {}), privateKeys: r.privateKeys as string[], ...(r.reason !== undefined ? { reason: r.reason as string } : {}) }, actor, opts.requestId);
        }
    }

    /**
     * Admits and runs a command at once (the CLI's way). With `log`, a change is recorded in the
     * request log and run under its lock of the stack (see {@link ProcessLog}); an idempotency key
     * its principal used for a request that succeeded answers that request's result.
     */
    async execute(cmd: Command, actor: Actor, opts: RunOptions = {}): Promise<unknown> {
        const admitted = await this.admit(cmd, actor);
        if (!opts.log || !(admitted.long || RECORDED_AT_ONCE.has(admitted.verb))) return this.run(admitted, actor, opts);
        return this.logged(admitted, actor, opts.log, opts);
    }

    private async logged(admitted: Admitted, actor: Actor, log: ProcessLog, opts: RunOptions): Promise<unknown> {
        const now = log.now ?? (() => new Date());
        const deadline = Date.now() + log.lockWaitMs;
        let delay = 200;
        for (;;) {
            // Cancelled (SIGINT) while waiting for the stack: never begin after that.
            if (opts.signal?.aborted) throw opts.signal.reason;
            const id = newRequestId();
            // Changes answered at once lock nothing: a stack label of their own.
            const stack = admitted.long ? admitted.stack : `${admitted.stack}#${id}`;
            const at = now();
            const got = await log.store.begin(
                { id, verb: admitted.verb, stack, body: { request: admitted.recorded, actor: { name: actor.name } }, principal: logPrincipal(actor), ...(admitted.idempotencyKey ? { idempotencyKey: admitted.idempotencyKey } : {}) },
                log.owner,
                at,
                new Date(at.getTime() + (log.leaseMs ?? LEASE_MS)),
            );
            if (got?.created) return this.runLogged(got.record.id, admitted, actor, log, opts, got.record.leaseUntil ? new Date(got.record.leaseUntil) : undefined);
            if (got && (got.record.state === "done" || got.record.state === "superseded")) return got.record.result;
            // Busy: the stack's running request, or the earlier request of the same key, still going.
            const blocking = got?.record ?? (await log.store.runningOn(stack));
            if (blocking?.state === "running" && ownerEnded(blocking.owner)) {
                // Only if it is still that owner's: a process that finished meanwhile keeps its outcome.
                if (await log.store.finish(blocking.id, "failed", now(), { error: endedError(blocking.id, blocking.owner!) }, blocking.owner)) {
                    log.notice?.(`request ${blocking.id} of ${blocking.owner} was left running by a process that ended; recorded as failed`);
                }
                continue;
            }
            if (Date.now() > deadline) {
                throw new RunnerError("timeout", `stack ${admitted.stack} stayed busy with request ${blocking?.id ?? "(another)"} for ${Math.round(log.lockWaitMs / 1000)}s; try again later`);
            }
            // A replica or a CLI on another machine that died: the log takes its requests back once its lease runs out.
            await log.store.recover(null, now());
            await sleep(delay, opts.signal);
            delay = Math.min(delay * 2, 2000);
        }
    }

    private async runLogged(id: string, admitted: Admitted, actor: Actor, log: ProcessLog, opts: RunOptions, leaseUntil?: Date): Promise<unknown> {
        const now = log.now ?? (() => new Date());
        // The log's running request is the stack's one lock: lose its lease and the update stops.
        const leases = new Leases(log.store, log.owner, { now, ...(log.leaseMs ? { leaseMs: log.leaseMs } : {}), onLost: (_, e) => log.notice?.(e.message) });
        const held = leases.hold(id, leaseUntil);
        let result: unknown;
        const signal = anyOf([opts.signal, held.signal]);
        try {
            result = await this.run(admitted, actor, { ...opts, log, requestId: id, signal: signal.signal });
        } catch (raw) {
            const e = held.signal.aborted ? held.signal.reason : raw;
            // Recorded as it failed; if even that fails, the record's dead owner tells the next process.
            await log.store.finish(id, "failed", now(), { error: publicError(e, id) }, log.owner).catch(() => undefined);
            throw e;
        } finally {
            signal.dispose();
            held.release();
            leases.stop();
        }
        // The change happened: failing to record it must not make it look failed (a retry would run it again).
        try {
            // Only while the request is still this process's (see RequestStore.finish).
            if (!(await log.store.finish(id, "done", now(), { result }, log.owner))) log.notice?.(`request ${id} was taken from this process (its lease ran out) before it finished; its record says what happened since`);
        } catch (e) {
            log.notice?.(`request ${id} is done, but recording that in the request log failed (${e instanceof Error ? e.message : String(e)}); the log shows it running until its lease runs out`);
        }
        return result;
    }
}
