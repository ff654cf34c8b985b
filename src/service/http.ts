/**
 * The service's HTTP transport on fastify: routes declared with the request schemas of
 * `runner/requests.ts` (fastify validates with them, and @fastify/swagger generates the OpenAPI
 * document from the same route schemas, so the document cannot drift from what is enforced),
 * authentication in an `onRequest` hook, per-token limits by @fastify/rate-limit, and one error
 * handler that answers every failure in one shape. A route only turns a body, query or path into
 * a {@link Command}; the command layer (through {@link HttpHost.answer}) parses, authorises,
 * checks policy and runs or queues it, as it does for the CLI.
 */
import { randomBytes } from "node:crypto";
import type * as http from "node:http";

import swagger from "@fastify/swagger";
import rateLimit from "@fastify/rate-limit";
import { type TSchema, Type } from "@sinclair/typebox";
import fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";

import { Commit, Label, OneOf, RequestId, problemsOf } from "../config/schema";
import { ValidationError } from "../config/validate";
import { type Command, type CommandVerb, LONG, RIGHT } from "../runner/commands";
import type { Actor } from "../runner/core";
import { ERROR_KINDS } from "../runner/error-map";
import { RunnerError, classify, httpStatus, publicError } from "../runner/errors";
import { COMMAND_INPUT, bodySchema } from "../runner/requests";
import type { Verb } from "../runner/rights";
import { redact } from "../git/engine";
import { STATUS_PAGE } from "./page";
import type { LogEntry } from "./log";

/** A failure the transport answers with a status of its own (401, 413, 415, 429, 503, a route that does not exist). */
export class HttpError extends Error {
    constructor(
        readonly status: number,
        readonly kind: string,
        message: string,
        readonly headers: Record<string, string> = {},
    ) {
        super(message);
    }
}

/** An answer of the command layer: a status and a body. */
export interface Answer {
    readonly status: number;
    readonly body: unknown;
}

/** What the routes need of the service. */
export interface HttpHost {
    /** Largest body, sustained requests a minute per token and the burst above it, time to receive a request. */
    readonly limits: { readonly bodyBytes: number; readonly ratePerMinute: number; readonly burst: number; readonly requestTimeoutMs: number };
    readonly log: (entry: LogEntry) => void;
    /** Shutting down: /v1 routes answer 503. */
    stopping(): boolean;
    /** The principal of a bearer token (HttpError 401 for anything else). */
    authenticate(authorization: string | undefined): Promise<Actor>;
    /** /readyz: ready or not (503), and where the replica works (its backend's URL only for an authenticated caller). */
    readiness(authenticated: boolean): Answer;
    /** Runs, queues or records a command through the command layer. */
    answer(command: Command, actor: Actor): Promise<Answer>;
    /** A request of the log, as its requester sees it (HttpError 404 for anyone else). */
    request(id: string, actor: Actor): Promise<Answer>;
    /** Streams a request's events as server-sent events until it is final. */
    stream(id: string, actor: Actor, res: http.ServerResponse): Promise<void>;
    /** What the deployment watch recorded of a stage. */
    watchRecords(stage: string, actor: Actor): Promise<Answer>;
}

declare module "fastify" {
    interface FastifyRequest {
        /** The authenticated principal (routes under /v1 but the document). */
        actor?: Actor;
        /** The request log's id of what this call recorded, for the access log. */
        recorded?: string;
    }
    interface FastifySchema {
        /** The right a route needs (the OpenAPI document's `x-right`). */
        "x-right"?: Verb;
    }
    interface FastifyContextConfig {
        /** Served without a token. */
        public?: boolean;
    }
}

const ErrorBody = Type.Object(
    { error: Type.Object({ kind: OneOf(ERROR_KINDS), message: Type.String(), reason: Type.Optional(Type.String()), requestId: Type.String() }) },
    { $id: "Error", title: "Error" },
);

/** A request of the log as its requester sees it. */
const RequestView = Type.Object(
    {
        requestId: Type.String(),
        verb: Type.String(),
        stack: Type.String(),
        state: OneOf(["queued", "running", "done", "failed", "superseded"]),
        principal: Type.String(),
        createdAt: Type.String(),
        startedAt: Type.Optional(Type.String()),
        finishedAt: Type.Optional(Type.String()),
        attempts: Type.Integer(),
        result: Type.Optional(Type.Unknown({ description: "the runner's answer, as `stages <verb> --json` prints it" })),
        error: Type.Optional(ErrorBody.properties.error),
        links: Type.Optional(Type.Object({ self: Type.String(), events: Type.String() })),
    },
    { $id: "Request", title: "Request" },
);

const Readiness = Type.Object({
    status: OneOf(["ready", "not ready"]),
    backend: Type.Object({ kind: Type.String(), source: OneOf(["PULUMI_BACKEND_URL", "Pulumi.yaml", "pulumi login", "embedded default"]), url: Type.Optional(Type.String()) }),
    platformStack: Type.String(),
    problem: Type.Optional(Type.String({ description: "why the replica is not ready, when a part it needs cannot be reached" })),
});

const ERRORS: Readonly<Record<number, string>> = {
    400: "invalid input: the message names each field and its rule",
    401: "no or unknown bearer token",
    403: "the token lacks the right for this verb on this stage",
    404: "no such stage, app, secret, request or merge-request environment",
    409: "refused by policy (reason: stage-order, hold, freeze, approval, stage-check) or a conflict",
    413: "body larger than the limit",
    415: "the body is not application/json",
    429: "rate limit of the token; Retry-After says when",
    503: "the service is shutting down; retry (Retry-After)",
};

function responses(ok: Record<number, TSchema>, errors: readonly number[]): Record<number, TSchema> {
    return { ...ok, ...Object.fromEntries(errors.map((s) => [s, Type.Ref("Error", { description: ERRORS[s] })])) };
}

const POST_ERRORS = [400, 401, 403, 404, 409, 413, 415, 429, 503];
const GET_ERRORS = [400, 401, 403, 404, 409, 429, 503];

/** The POST routes: path, command, summary. The right and whether it is queued are the command layer's (RIGHT, LONG). */
const POST_ROUTES: readonly { path: string; verb: CommandVerb & keyof typeof COMMAND_INPUT; summary: string }[] = [
    { path: "/v1/promote", verb: "promote", summary: "Promote a release into a stage (publishing its bundle on the first promotion)" },
    { path: "/v1/preview", verb: "preview", summary: "Preview a promotion: the exact file changes; nothing written" },
    { path: "/v1/rollback", verb: "rollback", summary: "Promote an earlier release and hold the app in the stage" },
    { path: "/v1/hold", verb: "hold", summary: "Hold an app in a stage" },
    { path: "/v1/release", verb: "release", summary: "Release a hold" },
    { path: "/v1/approve", verb: "approve", summary: "Approve a promotion into a stage that requires it" },
    { path: "/v1/drift", verb: "drift", summary: "Refresh in preview mode and report differences" },
    { path: "/v1/mr/deploy", verb: "mr-deploy", summary: "Deploy or update a merge-request environment" },
    { path: "/v1/mr/destroy", verb: "mr-destroy", summary: "Destroy a merge-request environment" },
    { path: "/v1/mr/reap", verb: "mr-reap", summary: "Destroy every expired merge-request environment" },
    { path: "/v1/secrets/set", verb: "secret-set", summary: "Seal values into a stage's secret (one commit)" },
    { path: "/v1/secrets/rm", verb: "secret-rm", summary: "Remove keys or secrets (one commit)" },
    { path: "/v1/secrets/reseal", verb: "secret-reseal", summary: "Re-encrypt a stage's secrets for the controller's new key (one commit)" },
];

/** A body, uploaded bundle and base64 secret values decoded: the command a POST route is. */
function postCommand(verb: CommandVerb, body: Record<string, unknown>): Command {
    if (verb === "secret-set") {
        const { values, ...input } = body;
        // The route's schema checked every key and value (names, base64); a value of another type is refused here too, never decoded.
        const entries = Object.entries((values ?? {}) as Record<string, unknown>);
        if (entries.some(([, v]) => typeof v !== "string")) throw new HttpError(400, "invalid", "values: every value must be a base64 string");
        return { verb, input, values: Object.fromEntries(entries.map(([k, v]) => [k, Buffer.from(v as string, "base64")])) };
    }
    if (verb === "promote" || verb === "preview" || verb === "mr-deploy") {
        const { bundle, ...input } = body;
        return { verb, input, ...(bundle !== undefined ? { bundle: { files: (bundle as { files?: unknown }).files } } : {}) };
    }
    return { verb, input: body };
}

/** The validator fastify runs for a route's schemas: the command layer's, with its messages. */
function validatorOf(schema: TSchema, part: string) {
    return (data: unknown) => {
        const problems = problemsOf(schema, data ?? {});
        return problems.length ? { error: new RunnerError("invalid", new ValidationError(String(schema.title ?? `request ${part}`), problems).message) } : { value: data };
    };
}

/** A store's answer to @fastify/rate-limit: how much of `max` is used, and when to try again (ms). */
type Counted = (err: Error | null, res: { current: number; ttl: number }) => void;

/**
 * @fastify/rate-limit's store as one token bucket per principal, shared by every route: `burst`
 * requests at once, refilled at `perMinute`. Hand-written because the library's own stores count
 * fixed windows per route, and a fixed window refuses a client that polls (`stages ci wait`, a
 * dashboard) for the rest of the window once its burst is spent, where a bucket lets it go on at
 * the sustained rate.
 */
function tokenBuckets(perMinute: number, burst: number) {
    const perMs = perMinute / 60_000;
    const buckets = new Map<string, { tokens: number; at: number }>();
    const refilled = (key: string, now: number) => {
        const b = buckets.get(key) ?? { tokens: burst, at: now };
        b.tokens = Math.min(burst, b.tokens + (now - b.at) * perMs);
        b.at = now;
        return b;
    };
    const store = {
        incr(key: string, cb: Counted, _window: number, max: number): void {
            const now = Date.now();
            // Full buckets carry nothing: forget them when the map grows (many callers, each once).
            if (buckets.size > 10_000) for (const [k, b] of buckets) if (Math.min(burst, b.tokens + (now - b.at) * perMs) >= burst) buckets.delete(k);
            const b = refilled(key, now);
            buckets.set(key, b);
            if (b.tokens < 1) return cb(null, { current: max + 1, ttl: Math.ceil((1 - b.tokens) / perMs) });
            b.tokens -= 1;
            cb(null, { current: Math.min(max, burst - Math.floor(b.tokens)), ttl: Math.ceil((burst - b.tokens) / perMs) });
        },
        read(key: string, cb: Counted): void {
            const b = refilled(key, Date.now());
            cb(null, { current: burst - Math.floor(b.tokens), ttl: Math.ceil((burst - b.tokens) / perMs) });
        },
        // One bucket per principal for all routes, not one per route.
        child: () => store,
    };
    return function Store() {
        return store;
    } as unknown as new () => typeof store;
}

/** Every answer as indented JSON with a newline, whatever the route declares (its schema only documents it). */
const asJson = (payload: unknown) => JSON.stringify(payload, null, 2) + "\n";

/** Builds the HTTP app (not listening: `listen` or `routing` serve it once `ready`). */
export async function httpApp(host: HttpHost): Promise<FastifyInstance> {
    const app = fastify({
        logger: false,
        bodyLimit: host.limits.bodyBytes,
        requestTimeout: host.limits.requestTimeoutMs,
        // Request ids and idempotency keys reach 128 characters; a longer id (to 1024) must be a
        // 400 naming the rule, not a missing route (beyond that, the 414 of `frameworkErrors`).
        routerOptions: { maxParamLength: 1024 },
        // While closing, the service answers 503 itself, in the error shape with Retry-After, and
        // health and readiness keep answering (see the onRequest hook and `readiness`).
        return503OnClosing: false,
        // A URL the router cannot decode is answered like every other bad input.
        frameworkErrors: (e, req, reply) => {
            const status = (e as { statusCode?: number }).statusCode ?? 400;
            void answerError(host, status < 500 ? new HttpError(status, "invalid", `path: ${e.message}`) : e, req, reply);
        },
        exposeHeadRoutes: false,
        genReqId: () => `h-${randomBytes(6).toString("hex")}`,
    });
    app.setValidatorCompiler(({ schema, httpPart }) => validatorOf(schema as TSchema, httpPart ?? "body"));
    app.setSerializerCompiler(() => asJson);
    app.setReplySerializer(asJson);

    app.setErrorHandler((e: unknown, req, reply) => answerError(host, e, req, reply));

    // Who asks, before anything else is looked at (limits count per principal). Decided by the
    // route matched, never by the URL's text: a percent-encoded or absolute URL reaches the same
    // route, and must meet the same check. Unknown routes need no token (the document lists the
    // routes) and get their 404 below.
    app.addHook("onRequest", async (req) => {
        if (req.routeOptions.config?.public || req.routeOptions.url === undefined) return;
        if (host.stopping()) throw new HttpError(503, "unavailable", "the service is shutting down; retry", { "retry-after": "5" });
        req.actor = await host.authenticate(req.headers.authorization);
    });
    // No answer of the service may be kept by a cache: they carry states, secrets' names, backend URLs.
    app.addHook("onSend", async (_req, reply) => {
        if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
        // While stopping, a kept-alive connection ends with its answer, so closing waits for answers, never for idle sockets.
        if (host.stopping()) reply.header("connection", "close");
    });
    // A POST's body must be a JSON object: the media type is checked even for an empty body.
    app.addHook("preValidation", async (req) => {
        if (req.method !== "POST") return;
        if (!/^application\/json\b/.test(String(req.headers["content-type"] ?? ""))) throw new HttpError(415, "invalid", "body: Content-Type must be application/json");
        if (typeof req.body !== "object" || req.body === null || Array.isArray(req.body)) throw new HttpError(400, "invalid", "body: must be a JSON object");
    });
    app.addHook("onResponse", async (req, reply) => accessLog(host, req, reply, reply.statusCode));

    await app.register(rateLimit, {
        global: true,
        max: host.limits.burst,
        timeWindow: 60_000,
        store: tokenBuckets(host.limits.ratePerMinute, host.limits.burst),
        keyGenerator: (req) => req.actor?.name ?? req.ip,
        errorResponseBuilder: (_req, ctx) => {
            const wait = Math.max(1, Math.ceil(ctx.ttl / 1000));
            return new HttpError(429, "rate-limited", `too many requests for this token; retry in ${wait} s`, { "retry-after": String(wait) });
        },
    });
    app.addSchema(ErrorBody);
    app.addSchema(RequestView);
    app.setNotFoundHandler({ preHandler: app.rateLimit() }, (req) => {
        throw new HttpError(404, "not-found", `no route ${req.method} ${req.url.split("?")[0]}`);
    });
    await app.register(swagger, {
        // Shared schemas keep their names in components/schemas (Error, Request).
        refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
        openapi: {
            openapi: "3.1.0",
            info: {
                title: "gitops-stages runner service",
                version: "1",
                description: "Promotions, rollbacks, holds, approvals, merge-request environments and sealed secrets over HTTP. Every /v1 route but this document needs `Authorization: Bearer <token>`. Each field's `x-rule` is the rule a 400 names.",
            },
            components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
            security: [{ bearer: [] }],
        },
    });

    const open = { public: true, rateLimit: false } as const;
    app.get("/healthz", { config: open, schema: { summary: "Liveness", security: [], response: { 200: Type.Object({ status: Type.Literal("ok") }, { description: "ok" }) } } }, async () => ({ status: "ok" }));
    app.get(
        "/readyz",
        {
            config: open,
            schema: {
                summary: "Readiness (503 while starting, shutting down, or while the request log's database or the state backend cannot be reached), with the state backend and platform stack in use",
                description: "backend.kind (the URL's scheme) and backend.source for everyone; backend.url, without credentials, only with a valid bearer token",
                security: [],
                response: { 200: { ...Readiness, description: "ready" }, 503: { ...Readiness, description: "not ready" } },
            },
        },
        async (req, reply) => {
            // Which state and platform stack this replica works on. The URL (without credentials)
            // names hosts, buckets and folders, so only a caller with a valid token sees it.
            const authenticated = await host.authenticate(req.headers.authorization).then(
                () => true,
                () => false,
            );
            const a = host.readiness(authenticated);
            return reply.code(a.status as 200).send(a.body);
        },
    );
    // The document in one line: indented, its repeated schemas would triple its size.
    app.get("/v1/openapi.json", { config: open, schema: { hide: true } }, async (_req, reply) => reply.serializer((d: unknown) => JSON.stringify(d)).send(app.swagger()));
    for (const url of ["/", "/index.html"]) {
        app.get(url, { config: open, schema: { hide: true } }, async (_req, reply) =>
            reply
                .header("content-type", "text/html; charset=utf-8")
                .header("content-security-policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
                .serializer((p: unknown) => String(p))
                .send(STATUS_PAGE),
        );
    }

    const answer = async (req: FastifyRequest, reply: FastifyReply, command: Command) => {
        const a = await host.answer(command, actorOf(req));
        req.recorded = (a.body as { requestId?: string } | null)?.requestId;
        return reply.code(a.status).send(a.body);
    };

    for (const r of POST_ROUTES) {
        const ok: Record<number, TSchema> = LONG.has(r.verb)
            ? {
                  202: Type.Ref("Request", { description: "recorded and queued; follow links.self or links.events" }),
                  200: Type.Ref("Request", { description: "the same idempotency key again, already finished" }),
              }
            : { 200: Type.Unknown({ description: "the runner's answer, as `stages <verb> --json` prints it" }) };
        app.post(r.path, { schema: { summary: r.summary, "x-right": RIGHT[r.verb], body: bodySchema(r.verb), response: responses(ok, POST_ERRORS) } }, (req, reply) =>
            answer(req, reply, postCommand(r.verb, req.body as Record<string, unknown>)),
        );
    }

    const runnerAnswer = { 200: Type.Unknown({ description: "the runner's answer, as `stages <verb> --json` prints it" }) };
    // Path parameters are named with their command's title, so a 400 reads as the CLI's does.
    const StageParam = (command: string) => Type.Object({ stage: Label }, { title: command });
    app.get<{ Querystring: { stage?: string } }>(
        "/v1/status",
        { schema: { summary: "What runs where", "x-right": "status", querystring: Type.Object({ stage: Type.Optional(Label) }, { title: "status request" }), response: responses(runnerAnswer, GET_ERRORS) } },
        (req, reply) => answer(req, reply, { verb: "status", input: pick(req.query, "stage") }),
    );
    app.get<{ Querystring: { stage: string; app?: string } }>(
        "/v1/secrets",
        {
            schema: {
                summary: "Names, scopes and keys of a stage's sealed secrets (never values)",
                "x-right": "secrets",
                querystring: Type.Object({ stage: Label, app: Type.Optional(Label) }, { title: "secret listing" }),
                response: responses(runnerAnswer, GET_ERRORS),
            },
        },
        (req, reply) => answer(req, reply, { verb: "secret-list", input: pick(req.query, "stage", "app") }),
    );
    app.get<{ Params: { stage: string }; Querystring: { refresh?: "true" | "false"; release?: string } }>(
        "/v1/deployments/:stage",
        {
            schema: {
                summary: "What Argo CD has deployed of the stage, judged against its last ops commit (refresh=true asks Argo CD to compare again first; release=<app>@<version> checks the stage holds that release)",
                "x-right": "status",
                params: StageParam("deployment request"),
                querystring: Type.Object({ refresh: Type.Optional(OneOf(["true", "false"])), release: Type.Optional(COMMAND_INPUT.deployment.properties.release) }, { title: "deployment request" }),
                response: responses(runnerAnswer, GET_ERRORS),
            },
        },
        (req, reply) => answer(req, reply, { verb: "deployment", input: { stage: req.params.stage, refresh: req.query.refresh === "true", ...pick(req.query, "release") } }),
    );
    app.get<{ Params: { stage: string } }>(
        "/v1/deployments/:stage/records",
        {
            schema: {
                summary: "What the service's watch recorded of the stage: each last ops commit Argo CD deployed (or failed to), newest first, with the GitHub Deployments it created",
                "x-right": "status",
                params: StageParam("deployment request"),
                response: responses(runnerAnswer, GET_ERRORS),
            },
        },
        async (req, reply) => {
            const a = await host.watchRecords(req.params.stage, actorOf(req));
            return reply.code(a.status).send(a.body);
        },
    );
    app.get<{ Params: { stage: string } }>(
        "/v1/history/:stage",
        { schema: { summary: "A stage's audit trail from the stack's update history", "x-right": "history", params: StageParam("history request"), response: responses(runnerAnswer, GET_ERRORS) } },
        (req, reply) => answer(req, reply, { verb: "history", input: { stage: req.params.stage } }),
    );
    app.get<{ Params: { stage: string; commit: string } }>(
        "/v1/history/:stage/commits/:commit",
        {
            schema: {
                summary: "One ops repo commit of the stage's folder (linked from the history): message, changed files, patch",
                "x-right": "history",
                params: Type.Object({ stage: Label, commit: Commit }, { title: "history request" }),
                response: responses(runnerAnswer, GET_ERRORS),
            },
        },
        (req, reply) => answer(req, reply, { verb: "history", input: { stage: req.params.stage, commit: req.params.commit } }),
    );
    // A request is its requester's alone: anyone else gets the 404 of a request that does not exist.
    const IdParam = Type.Object({ id: RequestId }, { title: "request path" });
    const requestErrors = [400, 401, 404, 429, 503];
    app.get<{ Params: { id: string } }>(
        "/v1/requests/:id",
        { schema: { summary: "A request's state and result (its requester only)", params: IdParam, response: responses({ 200: Type.Ref("Request", { description: "the request" }) }, requestErrors) } },
        async (req, reply) => {
            const a = await host.request(req.params.id, actorOf(req));
            return reply.code(a.status).send(a.body);
        },
    );
    app.get<{ Params: { id: string } }>(
        "/v1/requests/:id/events",
        {
            schema: {
                summary: "Server-sent events: state changes and engine output until the request finishes (event: end)",
                params: IdParam,
                response: responses({ 200: Type.String({ description: "text/event-stream" }) }, requestErrors),
            },
        },
        async (req, reply) => {
            await host.request(req.params.id, actorOf(req));
            // The stream is written to the socket directly; fastify answers nothing more, so a
            // failure once the 200 went out can only end the stream.
            reply.hijack();
            try {
                await host.stream(req.params.id, actorOf(req), reply.raw);
            } catch (e) {
                host.log({ level: "error", msg: "answer failed after it started", requestId: req.id, error: e instanceof Error ? e.message : String(e) });
                reply.raw.destroy();
            }
            // A hijacked reply skips the onResponse hook: its access log line is written here.
            accessLog(host, req, reply, reply.raw.statusCode);
        },
    );
    await app.ready();
    return app;
}

/** The access log's line of an answer (the request log's id when the call recorded one). */
function accessLog(host: HttpHost, req: FastifyRequest, reply: FastifyReply, status: number): void {
    host.log({ level: "info", msg: "http", requestId: req.recorded ?? req.id, method: req.method, path: req.url.split("?")[0], status, principal: req.actor?.name, ms: Math.round(reply.elapsedTime) });
}

/** The authenticated principal of a request to a route that needs one (the onRequest hook set it). */
function actorOf(req: FastifyRequest): Actor {
    if (!req.actor) throw new HttpError(401, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)", { "www-authenticate": "Bearer" });
    return req.actor;
}

function pick(query: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
    return Object.fromEntries(keys.flatMap((k) => (query[k] !== undefined ? [[k, query[k]]] : [])));
}

/** The one error handler: every failure as `{error: {kind, message, reason?, requestId}}` with its status. */
function answerError(host: HttpHost, e: unknown, req: FastifyRequest, reply: FastifyReply) {
    const correlation = req.id;
    const send = (status: number, error: object, headers: Record<string, string> = {}) => reply.code(status).headers({ "cache-control": "no-store", ...headers }).send({ error: { ...error, requestId: (error as { requestId?: string }).requestId ?? correlation } });
    if (e instanceof HttpError) return send(e.status, { kind: e.kind, message: e.message }, e.headers);
    const code = (e as { code?: string } | null)?.code ?? "";
    if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return send(415, { kind: "invalid", message: "body: Content-Type must be application/json" });
    if (code === "FST_ERR_CTP_BODY_TOO_LARGE") return send(413, { kind: "invalid", message: `body: larger than the limit of ${host.limits.bodyBytes} bytes` }, { connection: "close" });
    // Invalid JSON, and JSON with `__proto__` or `constructor.prototype` keys (refused by fastify's parser).
    if (code === "FST_ERR_CTP_INVALID_JSON_BODY") return send(400, { kind: "invalid", message: "body: must be a JSON object (valid JSON, without __proto__ or constructor.prototype keys)" });
    if (code.startsWith("FST_ERR_CTP_")) return send(400, { kind: "invalid", message: "body: must be a JSON object" });
    if (!(classify(e) instanceof RunnerError)) host.log({ level: "error", msg: "internal error", requestId: correlation, error: redact(e instanceof Error ? (e.stack ?? e.message) : String(e)) });
    return send(httpStatus(e), publicError(e, correlation));
}
