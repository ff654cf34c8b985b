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
import { Checker, DNS_LABEL, DNS_LABEL_RULE, formatProblem } from "../config/validate";
import type { SealingScope } from "../secrets/seal";
import { checkBundleFiles } from "../service/bundle-upload";
import { type Actor, checkRequester, parseHoldRequest, parseMrDeployRequest, parsePromoteRequest, parseReleaseRef, parseRollbackRequest } from "./core";
import { RunnerError } from "./errors";
import { type Verb, requireRight } from "./rights";
import type { Runner } from "./runner";
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
const LONG: ReadonlySet<CommandVerb> = new Set(["promote", "preview", "rollback", "hold", "release", "drift", "mr-deploy", "mr-destroy", "mr-reap"]);

/** Commands whose requester is recorded (the ops commit's `Requester` trailer, the update's metadata). */
const WITH_REQUESTER: ReadonlySet<CommandVerb> = new Set(["promote", "preview", "rollback", "hold", "release", "mr-deploy", "mr-destroy", "mr-reap"]);

/** The right each command needs (secrets: on the stage named; mr: on no stage). */
const RIGHT: Readonly<Record<CommandVerb, Verb>> = {
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

/** Options of a run. */
export interface RunOptions {
    /** The request log's id of the request. */
    readonly requestId?: string;
    readonly onOutput?: (text: string) => void;
    readonly signal?: AbortSignal;
}

function invalidIfAny(c: Checker): void {
    if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("; "));
}

/** A stage named in a request: a DNS label (`required`: it must be there). */
function stageOf(c: Checker, value: unknown, required: boolean): string | undefined {
    if (value === undefined && !required) return undefined;
    return c.string("stage", value, undefined, DNS_LABEL, DNS_LABEL_RULE);
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
        let input: Record<string, unknown> = { ...cmd.input };
        if (WITH_REQUESTER.has(verb)) {
            // Who asked is the authenticated principal. A requester the caller wrote is still
            // checked like any field (a malformed one is `invalid`, not silently dropped), then replaced.
            if (input.requester !== undefined) checkRequester(input.requester);
            input = { ...input, requester: actor.name };
        }
        const long = LONG.has(verb);
        const base = { verb, long, recorded: input };
        switch (verb) {
            case "promote":
            case "preview": {
                // The route or verb says whether it previews; a request saying otherwise would be silently overruled.
                if ("dryRun" in input) throw new RunnerError("invalid", `request.dryRun: is not a known setting (${verb === "preview" ? "this route only previews" : "POST /v1/preview previews"})`);
                const bundle = this.bundle(cmd);
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
                const bundle = this.bundle(cmd);
                const request = { ...input, ...(bundle ? { bundle: bundle.dir } : {}) };
                const req = parseMrDeployRequest(request);
                requireRight(actor, "mr");
                return { ...base, stack: `mr-${req.mr}`, request, ...(bundle?.files ? { files: bundle.files } : {}) };
            }
            case "mr-destroy": {
                const c = new Checker();
                const o = c.object("request", input, ["mr", "requester"]);
                const mr = c.integer("mr", o.mr, 0, 1, 10_000_000);
                if (o.mr === undefined) c.fail("mr", undefined, "is required");
                invalidIfAny(c);
                requireRight(actor, "mr");
                return { ...base, stack: `mr-${mr}`, request: { mr, requester: actor.name } };
            }
            case "mr-reap": {
                const c = new Checker();
                c.object("request", input, ["requester"]);
                invalidIfAny(c);
                requireRight(actor, "mr");
                return { ...base, stack: "mr-reap", request: { requester: actor.name } };
            }
            case "drift": {
                const c = new Checker();
                const o = c.object("request", input, ["stage"]);
                // A stage, `platform` or `mr-<n>`: all DNS labels.
                const stage = stageOf(c, o.stage, false);
                invalidIfAny(c);
                requireRight(actor, "drift", stage);
                return { ...base, stack: `drift:${stage ?? "*"}`, request: stage === undefined ? {} : { stage } };
            }
            case "approve": {
                const c = new Checker();
                const o = c.object("request", input, ["app", "version", "stage"]);
                const stage = stageOf(c, o.stage, true)!;
                invalidIfAny(c);
                requireRight(actor, "approve", stage);
                // The runner checks app and version (and that the release is published).
                return { ...base, stack: `approve:${stage}`, request: { app: o.app, version: o.version, stage } };
            }
            case "status": {
                const c = new Checker();
                const o = c.object("request", input, ["stage"]);
                const stage = stageOf(c, o.stage, false);
                invalidIfAny(c);
                requireRight(actor, "status", stage);
                return { ...base, stack: `status:${stage ?? "*"}`, request: stage === undefined ? {} : { stage } };
            }
            case "deployment": {
                const c = new Checker();
                const o = c.object("request", input, ["stage", "refresh", "release"]);
                const stage = stageOf(c, o.stage, true)!;
                const refresh = c.boolean("refresh", o.refresh, false);
                const release = o.release === undefined ? undefined : c.string("release", o.release);
                invalidIfAny(c);
                const ref = release === undefined ? undefined : parseReleaseRef(release, "release");
                requireRight(actor, "status", stage);
                return { ...base, stack: `deployment:${stage}`, request: { stage, refresh, ...(ref ? { release: ref } : {}) } };
            }
            case "wait": {
                const c = new Checker();
                const o = c.object("request", input, ["stage", "timeoutSeconds", "until", "release"]);
                const stage = stageOf(c, o.stage, true)!;
                const timeoutSeconds = c.integer("timeoutSeconds", o.timeoutSeconds, 600, 1, 86_400);
                const until = c.oneOf("until", o.until, ["deployed", "synced"] as const, "deployed");
                const release = o.release === undefined ? undefined : c.string("release", o.release);
                invalidIfAny(c);
                const ref = release === undefined ? undefined : parseReleaseRef(release, "release");
                requireRight(actor, "status", stage);
                return { ...base, stack: `wait:${stage}`, request: { stage, timeoutSeconds, until, ...(ref ? { release: ref } : {}) } };
            }
            case "history": {
                const c = new Checker();
                const o = c.object("request", input, ["stage", "commit"]);
                const stage = stageOf(c, o.stage, true)!;
                const commit = o.commit === undefined ? undefined : c.string("commit", o.commit);
                invalidIfAny(c);
                requireRight(actor, "history", stage);
                return { ...base, stack: `history:${stage}`, request: { stage, ...(commit !== undefined ? { commit } : {}) } };
            }
            case "secret-set": {
                const c = new Checker();
                const o = c.object("request", input, ["app", "stage", "name", "namespace", "scope", "replace", "certificate", "reason"]);
                const stage = stageOf(c, o.stage, true)!;
                const scope = c.oneOf("scope", o.scope, ["strict", "namespace-wide", "cluster-wide"] as const, "strict");
                const replace = c.boolean("replace", o.replace, false);
                const certificate = o.certificate === undefined ? undefined : c.string("certificate", o.certificate);
                const reason = o.reason === undefined ? undefined : c.string("reason", o.reason);
                invalidIfAny(c);
                if (!cmd.values) throw new RunnerError("invalid", "values: at least one KEY is required");
                requireRight(actor, "secrets", stage);
                const request = {
                    app: o.app,
                    stage,
                    ...(o.name !== undefined ? { name: o.name } : {}),
                    ...(o.namespace !== undefined ? { namespace: o.namespace } : {}),
                    scope: scope as SealingScope,
                    replace,
                    ...(certificate !== undefined ? { certificate } : {}),
                    ...(reason !== undefined ? { reason } : {}),
                };
                // Recorded without the values: the log keeps key names only.
                return { ...base, stack: `secrets:${stage}`, request, values: cmd.values, recorded: { ...request, ...(certificate !== undefined ? { certificate: true } : {}), values: Object.keys(cmd.values) } };
            }
            case "secret-list": {
                const c = new Checker();
                const o = c.object("request", input, ["stage", "app"]);
                const stage = stageOf(c, o.stage, true)!;
                const app = o.app === undefined ? undefined : c.string("app", o.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
                invalidIfAny(c);
                requireRight(actor, "secrets", stage);
                return { ...base, stack: `secrets:${stage}`, request: { stage, ...(app !== undefined ? { app } : {}) } };
            }
            case "secret-rm": {
                const c = new Checker();
                const o = c.object("request", input, ["app", "stage", "name", "keys", "reason"]);
                const stage = stageOf(c, o.stage, true)!;
                const keys = c.strings("keys", o.keys, []);
                const reason = o.reason === undefined ? undefined : c.string("reason", o.reason);
                invalidIfAny(c);
                requireRight(actor, "secrets", stage);
                return { ...base, stack: `secrets:${stage}`, request: { app: o.app, stage, keys, ...(o.name !== undefined ? { name: o.name } : {}), ...(reason !== undefined ? { reason } : {}) } };
            }
            case "secret-reseal": {
                const c = new Checker();
                const o = c.object("request", input, ["stage", "certificate", "privateKeys", "reason"]);
                const stage = stageOf(c, o.stage, true)!;
                const certificate = o.certificate !== undefined ? c.string("certificate", o.certificate) : undefined;
                const privateKeys = c.strings("privateKeys", o.privateKeys, []);
                const reason = o.reason !== undefined ? c.string("reason", o.reason) : undefined;
                invalidIfAny(c);
                requireRight(actor, "secrets", stage);
                const request = { stage, ...(certificate !== undefined ? { certificate } : {}), privateKeys, ...(reason !== undefined ? { reason } : {}) };
                return { ...base, stack: `secrets:${stage}`, request, recorded: { stage, certificate: certificate !== undefined, privateKeys: privateKeys.length, ...(reason !== undefined ? { reason } : {}) } };
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
        const o = { ...(opts.requestId ? { requestId: opts.requestId } : {}), ...(opts.onOutput ? { onOutput: opts.onOutput } : {}) };
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
                return runner.mrDestroy(r.mr as number, r.requester as string, o);
            case "mr-reap":
                return runner.mrReap(r.requester as string, o);
            case "drift":
                return runner.drift(r.stage as string | undefined);
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
                return secrets.set({ ...(r as Record<string, never>), app: r.app as string, stage: r.stage as string, scope: r.scope as SealingScope, replace: r.replace === true, values: admitted.values }, actor);
            case "secret-list":
                return secrets.list(r.stage as string, r.app as string | undefined, actor);
            case "secret-rm":
                return secrets.remove({ app: r.app as string, stage: r.stage as string, keys: r.keys as string[], ...(r.name !== undefined ? { name: r.name as string } : {}), ...(r.reason !== undefined ? { reason: r.reason as string } : {}) }, actor);
            case "secret-reseal":
                return secrets.reseal({ stage: r.stage as string, ...(r.certificate !== undefined ? { certificate: r.certificate as string } : {}), privateKeys: r.privateKeys as string[], ...(r.reason !== undefined ? { reason: r.reason as string } : {}) }, actor);
        }
    }

    /** Admits and runs a command at once (the CLI's way, and the service's for commands answered at once). */
    async execute(cmd: Command, actor: Actor, opts: RunOptions = {}): Promise<unknown> {
        return this.run(await this.admit(cmd, actor), actor, opts);
    }
}
