/**
 * `stages serve`: the runner for many CI jobs. Its HTTP transport is `http.ts`; this is the
 * service behind it: commands go through the same command layer as the CLI's; long ones are
 * recorded in the durable request log before they are acknowledged (202 with a request id), run
 * by workers that claim them from the log (one update per stack, across replicas), and can be
 * followed with server-sent events. Bearer tokens carry rights (verbs on stages); secrets and
 * tokens never reach logs or answers.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import * as fs from "node:fs";
import type * as http from "node:http";
import * as path from "node:path";

import type { FastifyInstance } from "fastify";

import { type Admitted, COMMAND_VERBS, type Command, type CommandVerb, Commands, type ProcessLog, RECORDED_AT_ONCE } from "../runner/commands";
import { Leases } from "../runner/lease";
import { anyOf } from "../runner/adapters/processes";
import { newRequestId } from "../runner/ids";
import { type Actor, logPrincipal } from "../runner/core";
import { backendKind, platformStackName, redactBackendUrl } from "../runner/adapters/backend";
import { RunnerError, classify, publicError } from "../runner/errors";
import { AssembledRunner, tokenActor } from "../runner/index";
import { checkBundleFiles, writeBundle } from "./bundle-upload";
import { checkBackendReachable } from "../runner/adapters/backend-locks";
import { type Answer, HttpError, type HttpHost, httpApp } from "./http";
import { OBSERVER, type Observation, REPORT_VERB, observations, promotionsAt, reportObservation } from "./deployments";
import { redact } from "../git/engine";
import { GitHubError, type GitHubRepo, GitHubRest } from "../github/rest";
import type { LogEntry } from "./log";
import type { RequestRecord, RequestStore } from "./store";

/** Limits of the service. */
export interface Limits {
    /** Largest request body (bundles travel inline). */
    readonly bodyBytes: number;
    /** Sustained requests per minute per token, and the burst above it. */
    readonly ratePerMinute: number;
    readonly burst: number;
    /** Time to receive a request. */
    readonly requestTimeoutMs: number;
    /** Requests of different stacks run at once, per replica. */
    readonly concurrency: number;
    /** How often the service looks at what Argo CD deployed, to record it (0: never). */
    readonly watchIntervalMs: number;
}

/** Defaults: 16 MiB bodies, 120 requests a minute with bursts of 60, 30 s to send a request, 4 stacks at once, a look at Argo CD every 30 s. */
export const DEFAULT_LIMITS: Limits = { bodyBytes: 16 * 1024 * 1024, ratePerMinute: 120, burst: 60, requestTimeoutMs: 30_000, concurrency: 4, watchIntervalMs: 30_000 };

/** What the service runs on. */
export interface ServiceDeps {
    readonly assembled: AssembledRunner;
    readonly store: RequestStore;
    /** This replica's name in the log (leases of running requests). */
    readonly replicaId: string;
    /** One structured log entry (a JSON line). */
    readonly log: (entry: LogEntry) => void;
    readonly limits?: Partial<Limits>;
    readonly now?: () => Date;
    /** Where `GITHUB_TOKEN` is read for recording GitHub Deployments (default: the process's). */
    readonly env?: NodeJS.ProcessEnv;
}

/** Who the watch's records run as: no rights, no teams (it only reports). */
const WATCH_ACTOR: Actor = { name: OBSERVER, teams: [], canOverrideOrder: false, grants: [] };
const FINAL = new Set(["done", "failed", "superseded"]);

/** The body of a queued request: what to run and for whom. */
interface Work {
    readonly request: Record<string, unknown>;
    readonly actor: Actor;
}

/** The service. */
export class Service implements HttpHost {
    /** The limits in force. */
    readonly limits: Limits;
    private readonly now: () => Date;
    private app?: FastifyInstance;
    private isStopping = false;
    private ready = false;
    private readonly running = new Map<string, Promise<void>>();
    /** Aborted when the service stops: what its workers run is cancelled, and nothing new starts. */
    private readonly stopSignal = new AbortController();
    private timers: NodeJS.Timeout[] = [];
    private tokenCache?: { at: number; outputs: Record<string, unknown> };
    private coalescingCache?: { at: number; stages: Set<string> };
    private pumping = false;
    private watching = false;
    private warnedNoGithubToken = false;
    /**
     * Reports that failed (and may succeed later), by observation key: how often, and when this
     * replica's watch may record them again. In memory: another replica's watch keeps its own.
     */
    private readonly reportBackoff = new Map<string, { failures: number; nextAt: number }>();

    /** The one command layer, shared with the CLI. */
    private readonly commands: Commands;
    /** How long a claim lasts unless renewed (runner.json leaseSeconds). */
    private readonly leaseMs: number;
    /** The leases of the requests this replica runs (see lease.ts). */
    private readonly leases: Leases;
    /** The request log as this replica takes further stacks in it (the reaper's merge requests). */
    private readonly processLog: ProcessLog;

    constructor(private readonly deps: ServiceDeps) {
        this.commands = new Commands(deps.assembled);
        this.limits = { ...DEFAULT_LIMITS, ...deps.limits };
        this.now = deps.now ?? (() => new Date());
        // One listener per running request (up to --concurrency, 64): not a leak, so no warning past ten.
        setMaxListeners(0, this.stopSignal.signal);
        this.leaseMs = deps.assembled.settings.leaseSeconds * 1000;
        this.leases = new Leases(deps.store, deps.replicaId, { now: this.now, leaseMs: this.leaseMs, onLost: (id, e) => deps.log({ level: "warn", msg: "a running request's lease was lost; its update is cancelled", requestId: id, error: e.message }) });
        this.processLog = {
            store: deps.store,
            owner: deps.replicaId,
            lockWaitMs: deps.assembled.settings.lockWaitSeconds * 1000,
            leaseMs: this.leaseMs,
            now: this.now,
            notice: (line) => deps.log({ level: "warn", msg: line }),
        };
    }

    /**
     * Starts working without listening: requeues what a previous stop interrupted, then claims
     * requests from the log. `handler` answers HTTP requests from then on (tests drive it in
     * process, the way `inject` does; `start` puts it behind a socket).
     */
    async open(): Promise<void> {
        if (this.ready) return;
        this.app ??= await httpApp(this);
        const recovered = await this.deps.store.recover(this.deps.replicaId, this.now());
        if (recovered.length) this.deps.log({ level: "info", msg: "requeued requests interrupted by a previous stop", requests: recovered });
        this.timers.push(setInterval(() => void this.pump(), 250));
        // Requests of a replica that died come back to the queue when its lease runs out.
        this.timers.push(
            setInterval(
                () =>
                    void this.deps.store.recover(null, this.now()).catch((e: unknown) => {
                        this.deps.log({ level: "warn", msg: "recovering requests whose lease ran out failed; trying again at the next round", error: e instanceof Error ? e.message : String(e) });
                    }),
                this.leaseMs / 4,
            ),
        );
        // What the replica needs is looked at as often as leases are renewed: a replica cut off from
        // either stops claiming work and says so on /readyz, and takes work again once both answer.
        this.timers.push(setInterval(() => void this.checkHealth(), this.leaseMs / 4));
        if (this.limits.watchIntervalMs > 0) this.timers.push(setInterval(() => void this.watch(), this.limits.watchIntervalMs));
        this.ready = true;
        void this.pump();
    }

    /**
     * Looks whether the request log's database and the state backend answer (each within an
     * eighth of a lease); records the first that does not in `unreachable`, which stops claims and
     * turns /readyz to 503, and clears it once both answer. The outcome is logged only when it changes.
     */
    private async checkHealth(): Promise<void> {
        if (this.checkingHealth || this.isStopping) return;
        this.checkingHealth = true;
        const within = <T>(p: Promise<T>) => withTimeout(p, this.leaseMs / 8, "no answer");
        let problem: { what: string; error: string } | undefined;
        try {
            await within(this.deps.store.ping()).catch((e: unknown) => {
                problem = { what: "the request log's database", error: e instanceof Error ? e.message : String(e) };
            });
            if (!problem) {
                const { url, source } = this.deps.assembled.environment.backend;
                await within(checkBackendReachable(url, source)).catch((e: unknown) => {
                    problem = { what: "the state backend", error: e instanceof Error ? e.message : String(e) };
                });
            }
            if (problem && this.unreachable !== problem.what) this.deps.log({ level: "warn", msg: `${problem.what} cannot be reached: not claiming work until it answers`, error: problem.error });
            if (!problem && this.unreachable) this.deps.log({ level: "info", msg: `${this.unreachable} answers again: claiming work` });
            this.unreachable = problem?.what;
        } finally {
            this.checkingHealth = false;
        }
        if (!this.unreachable) void this.pump();
    }

    private checkingHealth = false;
    /** What this replica cannot reach now (see `checkHealth`), if anything. */
    private unreachable: string | undefined;

    /**
     * Looks at what Argo CD deployed and records each stage's newly deployed (or failed) commit as
     * a request of the watch's own (see deployments.ts); a worker then reports it. Never throws: a
     * look that fails is logged and the next one comes.
     */
    private async watch(): Promise<void> {
        if (this.watching || this.isStopping) return;
        this.watching = true;
        try {
            // On GitHub without a token every report would fail: say so (once) instead of recording failures.
            const dev = (await this.platformOutputs()).devRepository;
            if (dev && !(this.deps.env ?? process.env).GITHUB_TOKEN) {
                if (!this.warnedNoGithubToken) this.deps.log({ level: "warn", msg: "GITHUB_TOKEN is not set: what Argo CD deploys is not recorded as GitHub Deployments on the dev repo until it is (the token needs deployments: write there)" });
                this.warnedNoGithubToken = true;
                return;
            }
            const rows = await this.deps.assembled.runner.status();
            const now = this.now().getTime();
            const seen = observations(rows);
            // A stage that moved on has new keys: forget the backoff of the old ones.
            for (const key of this.reportBackoff.keys()) if (!seen.some((o) => o.key === key)) this.reportBackoff.delete(key);
            for (const o of seen) {
                // A report that failed (GitHub down) is tried again, later each time, up to every 30 minutes.
                const backoff = this.reportBackoff.get(o.key);
                if (backoff && backoff.nextAt > now) continue;
                const id = newRequestId();
                const work: Work = { request: o as unknown as Record<string, unknown>, actor: WATCH_ACTOR };
                const { created } = await this.deps.store.create({ id, verb: REPORT_VERB, stack: `deployments:${o.stage}`, body: work, principal: OBSERVER, idempotencyKey: o.key }, this.now());
                if (created) this.deps.log({ level: "info", msg: "deployment observed", requestId: id, stage: o.stage, commit: o.commit, state: o.state, by: o.by });
            }
            void this.pump();
        } catch (e) {
            this.deps.log({ level: "warn", msg: "looking at what Argo CD deployed failed; trying again at the next look", error: e instanceof Error ? e.message : String(e) });
        } finally {
            this.watching = false;
        }
    }

    /**
     * Reports an observation the watch recorded: the promotions its commit holds, then GitHub when
     * there is one. A refusal that trying again cannot change (GitHub's 4xx but 429, a commit no
     * longer in the stage's recent history) ends the report, recorded with its reason; anything
     * else fails it, and the watch records it again later (see `watch`).
     */
    private async report(o: Observation): Promise<unknown> {
        try {
            const commits = await this.deps.assembled.runner.stageCommitsUpTo(o.stage, o.commit);
            const result = await reportObservation(o, promotionsAt(commits), await this.githubDev());
            this.reportBackoff.delete(o.key);
            return result;
        } catch (e) {
            const final = (e instanceof GitHubError && e.status >= 400 && e.status < 500 && e.status !== 429) || (e instanceof RunnerError && (e.kind === "not-found" || e.kind === "invalid"));
            if (final) {
                this.reportBackoff.delete(o.key);
                const message = `${o.stage} ${o.state} at ${o.commit.slice(0, 12)}: not reported: ${e instanceof Error ? e.message : String(e)}`;
                this.deps.log({ level: "warn", msg: "a deployment could not be reported, and trying again would not help", stage: o.stage, commit: o.commit, error: message });
                return { stage: o.stage, commit: o.commit, state: o.state, releases: [], message };
            }
            const failures = (this.reportBackoff.get(o.key)?.failures ?? 0) + 1;
            this.reportBackoff.set(o.key, { failures, nextAt: this.now().getTime() + Math.min(30 * 60_000, this.limits.watchIntervalMs * 2 ** failures) });
            throw e;
        }
    }

    /** What the watch recorded of a stage, newest first (from the request log's last 500 requests). */
    private async recordsOf(stage: string): Promise<unknown[]> {
        const recent = await this.deps.store.recent(500);
        return recent
            .filter((r) => r.verb === REPORT_VERB && r.stack === `deployments:${stage}`)
            .map((r) => {
                const o = (r.body as Work).request as unknown as Observation;
                return { requestId: r.id, recordedAt: r.createdAt, state: r.state, commit: o.commit, outcome: o.state, by: o.by ?? null, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.error !== undefined ? { error: r.error } : {}) };
            });
    }

    /** The dev repo on GitHub and a client for it, when the platform is on GitHub (else undefined). */
    private async githubDev(): Promise<{ dev: GitHubRepo; rest: GitHubRest } | undefined> {
        const dev = (await this.platformOutputs()).devRepository as GitHubRepo | null | undefined;
        if (!dev) return undefined;
        const token = (this.deps.env ?? process.env).GITHUB_TOKEN;
        if (!token) throw new RunnerError("invalid", `GITHUB_TOKEN is not set: the service records GitHub Deployments on ${dev.repository} with it (it needs deployments: write there)`);
        return { dev, rest: new GitHubRest(token) };
    }

    /**
     * The HTTP request listener (fastify's router: every route, hook, limit and log line), for
     * driving the service in process the way `inject` does; valid once {@link open} resolved.
     */
    readonly handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        if (!this.app) throw new Error("the service is not open");
        this.app.routing(req, res);
    };

    /** Starts working and listening; resolves with the bound address. */
    async start(port: number, host = "127.0.0.1"): Promise<{ url: string; port: number }> {
        // Recovery first, so no request accepted on the socket is claimed before the interrupted ones are requeued.
        await this.open();
        try {
            await this.app!.listen({ port, host });
        } catch (e) {
            for (const t of this.timers) clearInterval(t);
            this.timers = [];
            this.ready = false;
            throw e;
        }
        this.app!.server.headersTimeout = Math.min(this.limits.requestTimeoutMs, 20_000);
        const bound = (this.app!.server.address() as { port: number }).port;
        return { url: `http://${host}:${bound}`, port: bound };
    }

    /**
     * Stops: no new connections (/v1 answers 503 meanwhile), readiness off, running updates
     * cancelled (the engine rolls them back cleanly and releases the stack's lock) and put back in
     * the queue for the next start.
     */
    async stop(): Promise<void> {
        this.isStopping = true;
        this.ready = false;
        for (const t of this.timers) clearInterval(t);
        // No new connections from here; idle ones are closed, requests on open ones get the
        // service's own 503, and each answer closes its connection (event streams end once they see
        // the service stopping). Closing resolves once every answer in flight went out, so the
        // store is closed under none of them.
        const closed = this.app ? this.app.close() : Promise.resolve();
        this.stopSignal.abort(new RunnerError("conflict", "the service is shutting down"));
        if (this.running.size) this.deps.assembled.runner.cancel("the service is shutting down");
        await Promise.allSettled([...this.running.values()]);
        await this.deps.assembled.runner.idle();
        await closed;
        this.leases.stop();
        await this.deps.store.close();
    }

    // ---- what the HTTP routes ask (see http.ts) ------------------------------------------------

    /** The service's log. */
    get log(): (entry: LogEntry) => void {
        return this.deps.log;
    }

    /** Whether the service is shutting down. */
    stopping(): boolean {
        return this.isStopping;
    }

    /** Which state and platform stack this replica works on, and whether it is ready. */
    readiness(authenticated: boolean): Answer {
        const backend = this.deps.assembled.environment.backend;
        const where = { backend: { kind: backendKind(backend.url), source: backend.source, ...(authenticated ? { url: redactBackendUrl(backend.url) } : {}) }, platformStack: platformStackName(backend) };
        if (this.ready && !this.isStopping && !this.unreachable) return { status: 200, body: { status: "ready", ...where } };
        return { status: 503, body: { status: "not ready", ...where, ...(this.unreachable && !this.isStopping ? { problem: `${this.unreachable} cannot be reached` } : {}) } };
    }

    private async platformOutputs(): Promise<Record<string, unknown>> {
        // Token hashes change only with a platform update; reading the stack per request would cost a second each.
        if (!this.tokenCache || Date.now() - this.tokenCache.at > 30_000) {
            this.tokenCache = { at: Date.now(), outputs: await this.deps.assembled.platformOutputs() };
        }
        return this.tokenCache.outputs;
    }

    /** The principal of `Authorization: Bearer <token>`. */
    async authenticate(authorization: string | undefined): Promise<Actor> {
        const m = /^Bearer ([A-Za-z0-9._~+/=-]{8,512})$/.exec(authorization ?? "");
        if (!m) throw new HttpError(401, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)", { "www-authenticate": "Bearer" });
        try {
            return tokenActor(this.deps.assembled.settings, await this.platformOutputs(), m[1]);
        } catch (e) {
            if (e instanceof RunnerError && e.kind === "unauthorized") throw new HttpError(401, "unauthorized", "the token is not valid", { "www-authenticate": 'Bearer error="invalid_token"' });
            throw e;
        }
    }

    /**
     * A command from a route, through the command layer: parsed, authorised and checked against
     * policy there; then queued in the request log (changes of a stack), recorded with its outcome
     * (approvals, secrets) or answered (reads).
     */
    async answer(command: Command, actor: Actor): Promise<Answer> {
        const admitted = await this.commands.admit(command, actor, { policyNow: true });
        if (admitted.long) return this.enqueue(admitted, actor);
        if (RECORDED_AT_ONCE.has(admitted.verb)) return this.recorded(admitted, actor);
        return { status: 200, body: await this.commands.run(admitted, actor) };
    }

    /** A request of the log; only its requester sees it, others learn nothing, not even that it exists. */
    async request(id: string, actor: Actor): Promise<Answer> {
        const rec = await this.deps.store.get(id);
        if (!rec || rec.principal !== logPrincipal(actor)) throw new HttpError(404, "not-found", `no request ${id}`);
        return { status: 200, body: view(rec) };
    }

    /** What the watch recorded of a stage (the status right on it; an unknown stage is a 404). */
    async watchRecords(stageName: string, actor: Actor): Promise<Answer> {
        const admitted = await this.commands.admit({ verb: "deployment", input: { stage: stageName } }, actor);
        const stage = admitted.request.stage as string;
        await this.deps.assembled.runner.deployment(stage).catch((e: unknown) => {
            // Only an unknown stage matters here: the records stand whatever Argo CD says now.
            if (e instanceof RunnerError && e.kind === "not-found") throw e;
        });
        return { status: 200, body: await this.recordsOf(stage) };
    }

    /** Records a long request (and its uploaded bundle) durably, then answers 202. */
    private async enqueue(admitted: Admitted, actor: Actor) {
        // The record's id is always the service's own: idempotency keys are per principal (two tokens
        // may use the same key), so a key cannot name a record.
        const id = newRequestId();
        let request = admitted.request;
        // An uploaded bundle travels in the request log, not a folder of this replica: the replica
        // that claims the request may run on another machine (see `execute`).
        if (admitted.files !== undefined) request = { ...request, bundle: UPLOADED, [BUNDLE_FILES]: admitted.files };
        const work: Work = { request, actor };
        const { record, created } = await this.deps.store.create({ id, verb: admitted.verb, stack: admitted.stack, body: work, principal: logPrincipal(actor), coalesceKey: admitted.coalesceKey, idempotencyKey: admitted.idempotencyKey }, this.now());
        if (created) void this.pump();
        if (!created && FINAL.has(record.state)) return { status: 200, body: view(record) };
        return { status: 202, body: { ...view(record), links: { self: `/v1/requests/${record.id}`, events: `/v1/requests/${record.id}/events` } } };
    }

    /** Runs a change answered at once (approvals, secrets) now, and records it (without secret values) with its outcome. */
    private async recorded(admitted: Admitted, actor: Actor) {
        const id = newRequestId();
        // A change answered at once never waits in the queue: recorded as running here (its stack
        // label is its own, so nothing else waits for it, and no worker ever claims it), then finished.
        const at = this.now();
        const until = new Date(at.getTime() + this.leaseMs);
        await this.deps.store.begin({ id, verb: admitted.verb, stack: `${admitted.stack}#${id}`, body: { request: admitted.recorded, actor: { name: actor.name } }, principal: logPrincipal(actor) }, this.deps.replicaId, at, until);
        // Held (its lease renewed) until its outcome is recorded.
        const held = this.leases.hold(id, until);
        try {
            let result: unknown;
            try {
                result = await this.commands.run(admitted, actor, { requestId: id, signal: held.signal });
            } catch (e) {
                await this.recordOutcome(id, () => this.ownFinish(id, "failed", { error: publicError(e, id) }));
                throw e;
            }
            // The change happened: recording it is retried, never turned into a failure the caller would retry.
            await this.recordOutcome(id, () => this.ownFinish(id, "done", { result }));
            return { status: 200, body: result };
        } finally {
            held.release();
        }
    }

    /** Streams a request's events (its requester only, as {@link request} checked). */
    async stream(id: string, _actor: Actor, res: http.ServerResponse): Promise<void> {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
        let seq = 0;
        for (;;) {
            for (const ev of await this.deps.store.events(id, seq)) {
                res.write(`id: ${ev.seq}\nevent: ${ev.type}\ndata: ${JSON.stringify({ at: ev.at, ...(typeof ev.data === "object" && ev.data ? ev.data : { text: ev.data }) })}\n\n`);
                seq = ev.seq;
            }
            const rec = await this.deps.store.get(id);
            if (!rec || FINAL.has(rec.state) || this.isStopping || res.destroyed) {
                if (rec && !res.destroyed) res.write(`event: end\ndata: ${JSON.stringify(view(rec))}\n\n`);
                res.end();
                return;
            }
            await new Promise((r) => setTimeout(r, 200));
        }
    }

    // ---- workers ----------------------------------------------------------------------------

    /**
     * The stages whose queues coalesce. The pump asks at every tick (4 times a second) and the
     * answer comes from the platform stack's outputs, which on most backends costs CLI processes, so
     * it is kept for 30 s, like the token hashes: a pipeline change reaches the queue within that.
     */
    private async coalescing(): Promise<Set<string>> {
        if (this.coalescingCache && Date.now() - this.coalescingCache.at < 30_000) return this.coalescingCache.stages;
        try {
            const stages = new Set((await this.deps.assembled.runner.pipelineStages()).filter((s) => s.queue === "coalesce").map((s) => s.name));
            this.coalescingCache = { at: Date.now(), stages };
            return stages;
        } catch (e) {
            // Kept like an answer, so a missing platform stack or a backend that is down costs one
            // read per 30 s; the last set known stays in force meanwhile (none: first in, first out).
            const stages = this.coalescingCache?.stages ?? new Set<string>();
            this.coalescingCache = { at: Date.now(), stages };
            this.deps.log({ level: "warn", msg: "reading the pipeline for the queue failed; keeping the stages known so far", coalescing: [...stages], error: e instanceof Error ? e.message : String(e) });
            return stages;
        }
    }

    /** Claims queued requests while workers are free. */
    private async pump(): Promise<void> {
        if (this.pumping || this.isStopping || this.unreachable) return;
        this.pumping = true;
        try {
            const coalescing = await this.coalescing();
            while (!this.isStopping && !this.unreachable && this.running.size < this.limits.concurrency) {
                const rec = await this.deps.store.claim(this.deps.replicaId, this.now(), new Date(this.now().getTime() + this.leaseMs), coalescing);
                if (!rec) break;
                const job = this.execute(rec)
                    .catch((e: unknown) => {
                        // Never an unhandled rejection: that would end the process and every request in flight.
                        this.deps.log({ level: "error", msg: "a worker failed", requestId: rec.id, error: e instanceof Error ? e.message : String(e) });
                    })
                    .finally(() => {
                        // Only this run's entry: the request may have been claimed again since (its lease lost).
                        if (this.running.get(rec.id) === job) this.running.delete(rec.id);
                        void this.pump();
                    });
                this.running.set(rec.id, job);
            }
        } catch (e) {
            this.deps.log({ level: "error", msg: "claiming requests failed", error: e instanceof Error ? e.message : String(e) });
        } finally {
            this.pumping = false;
        }
    }

    /**
     * Records a finished request's outcome, retrying while the store is unavailable (a database
     * restart, a network blip) for as long as the service runs: giving up would leave the record
     * `running` under this replica, whose lease it keeps renewing, and its caller waiting for
     * ever. If the service stops first, the record stays `running`; the replica's next start
     * requeues it, and the re-run adopts a commit that already landed, so nothing is lost or done twice.
     */
    private async recordOutcome(id: string, op: () => Promise<unknown>): Promise<void> {
        for (let attempt = 1; ; attempt++) {
            try {
                await op();
                return;
            } catch (e) {
                const error = e instanceof Error ? e.message : String(e);
                if (this.isStopping) {
                    this.deps.log({ level: "error", msg: "recording a request's outcome failed while stopping; the replica's next start requeues it", requestId: id, attempts: attempt, error });
                    return;
                }
                this.deps.log({ level: "warn", msg: "recording a request's outcome failed; retrying", requestId: id, attempt, error });
                await new Promise((r) => setTimeout(r, Math.min(250 * attempt, 10_000)));
            }
        }
    }

    /**
     * Records the outcome of a request this replica ran, only while it is still this replica's: if
     * its lease ran out meanwhile (the database unreachable for longer than the lease), another
     * replica may have taken it back, and what happened since stands.
     */
    private async ownFinish(id: string, state: "done" | "failed" | "superseded", outcome: { result?: unknown; error?: unknown }): Promise<void> {
        if (!(await this.deps.store.finish(id, state, this.now(), outcome, this.deps.replicaId))) {
            this.deps.log({ level: "warn", msg: "a request's outcome was not recorded: its lease ran out and it is no longer this replica's", requestId: id, state });
        }
    }

    /** A run whose request this replica claimed again meanwhile (its lease had been lost): that run records the outcome. */
    private staleRun(rec: RequestRecord, state: string): void {
        this.deps.log({ level: "warn", msg: "a run ended after this replica claimed its request again; the newer run records the outcome", requestId: rec.id, verb: rec.verb, stack: rec.stack, state });
    }

    /**
     * The request as the command layer runs it: an uploaded bundle kept in the log is written to a
     * fresh folder of this replica's data folder (checked again: the log is not trusted to hold
     * only what the route checked). Requests logged by earlier versions name a folder already.
     */
    private withBundleFolder(id: string, request: Record<string, unknown>): Record<string, unknown> {
        if (request[BUNDLE_FILES] === undefined) return request;
        const { [BUNDLE_FILES]: files, ...rest } = request;
        const dir = path.join(this.deps.assembled.environment.dataDir, "service", "bundles", `${id.replace(/[^A-Za-z0-9._-]/g, "_")}-${randomBytes(4).toString("hex")}`);
        writeBundle(dir, checkBundleFiles(files));
        return { ...rest, bundle: dir };
    }

    private async execute(rec: RequestRecord): Promise<void> {
        const started = Date.now();
        const { request: logged, actor } = rec.body as Work;
        let buffered = "";
        const flush = () => {
            if (!buffered) return;
            const text = buffered;
            buffered = "";
            void this.deps.store.appendEvent(rec.id, "output", { text }, this.now()).catch(() => undefined);
        };
        const ticker = setInterval(flush, 500);
        const held = this.leases.hold(rec.id, rec.leaseUntil ? new Date(rec.leaseUntil) : undefined);
        // Cancelled when its lease is lost or the service stops (a reaper waiting for a stack too).
        this.deps.log({ level: "info", msg: "request started", requestId: rec.id, verb: rec.verb, stack: rec.stack, attempt: rec.attempts });
        const cancel = anyOf([held.signal, this.stopSignal.signal]);
        const opts = { requestId: rec.id, onOutput: (t: string) => (buffered += t), signal: cancel.signal, log: this.processLog };
        try {
            const request = this.withBundleFolder(rec.id, logged);
            let result: unknown;
            if (rec.verb === REPORT_VERB) result = await this.report(request as unknown as Observation);
            else if ((COMMAND_VERBS as readonly string[]).includes(rec.verb)) result = await this.commands.run({ verb: rec.verb as CommandVerb, request }, actor, opts);
            else throw new RunnerError("internal", `unknown verb ${rec.verb}`);
            flush();
            const state = (result as { state?: string }).state === "superseded" ? "superseded" : "done";
            // The owner in the log is this replica for every run of it: only the current run records.
            if (!held.current()) return this.staleRun(rec, state);
            await this.recordOutcome(rec.id, () => this.ownFinish(rec.id, state, { result }));
            this.deps.log({ level: "info", msg: "request finished", requestId: rec.id, verb: rec.verb, stack: rec.stack, state, ms: Date.now() - started });
        } catch (e) {
            flush();
            if (!held.current()) return this.staleRun(rec, "failed");
            if (this.isStopping) {
                // Cancelled by the shutdown: the engine rolled back cleanly; run it again after the restart.
                await this.deps.store.requeue(rec.id, this.deps.replicaId);
                this.deps.log({ level: "info", msg: "request requeued by shutdown", requestId: rec.id, verb: rec.verb, stack: rec.stack });
                return;
            }
            if (held.signal.aborted) {
                // Its lease was lost and the update cancelled: back to the queue if the log still
                // gives it to this replica once reachable (a replica that took it meanwhile keeps it).
                await this.recordOutcome(rec.id, () => this.deps.store.requeue(rec.id, this.deps.replicaId));
                this.deps.log({ level: "warn", msg: "request cancelled: its lease was lost", requestId: rec.id, verb: rec.verb, stack: rec.stack, error: (held.signal.reason as Error).message });
                return;
            }
            if (!(classify(e) instanceof RunnerError)) this.deps.log({ level: "error", msg: "request failed", requestId: rec.id, error: redact(e instanceof Error ? (e.stack ?? e.message) : String(e)) });
            await this.recordOutcome(rec.id, () => this.ownFinish(rec.id, "failed", { error: publicError(e, rec.id) }));
            this.deps.log({ level: "info", msg: "request finished", requestId: rec.id, verb: rec.verb, stack: rec.stack, state: "failed", ms: Date.now() - started });
        } finally {
            cancel.dispose();
            held.release();
            clearInterval(ticker);
        }
    }
}

/** What a caller sees of a request: no actor rights, no internal fields. */
export function view(rec: RequestRecord) {
    return {
        requestId: rec.id,
        verb: rec.verb,
        stack: rec.stack,
        state: rec.state,
        principal: rec.principal,
        createdAt: rec.createdAt,
        ...(rec.startedAt ? { startedAt: rec.startedAt } : {}),
        ...(rec.finishedAt ? { finishedAt: rec.finishedAt } : {}),
        attempts: rec.attempts,
        ...(rec.result !== undefined ? { result: rec.result } : {}),
        ...(rec.error !== undefined ? { error: rec.error } : {}),
    };
}

/** `p`, or a rejection with `message` after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${message} within ${Math.round(ms)} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** The `bundle` of a logged request whose files are in the log (under {@link BUNDLE_FILES}) until a worker writes them. */
const UPLOADED = "(uploaded)";
/** Where a logged request keeps its uploaded bundle's files. */
const BUNDLE_FILES = "bundleFiles";

/** Removes uploaded bundles of finished requests older than a day (they were published or refused). */
export function pruneBundles(dataDir: string, now = Date.now()): void {
    const dir = path.join(dataDir, "service", "bundles");
    if (!fs.existsSync(dir)) return;
    for (const name of fs.readdirSync(dir)) {
        const p = path.join(dir, name);
        if (now - fs.statSync(p).mtimeMs > 86_400_000) fs.rmSync(p, { recursive: true, force: true });
    }
}
