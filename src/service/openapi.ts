/**
 * The service's OpenAPI 3.1 document (served at /v1/openapi.json). Request schemas mirror the
 * runner's parsers, which stay the authority: they refuse unknown fields and name each problem.
 */

import { ERROR_KINDS } from "../runner/error-map";
import { COMMIT, DNS_LABEL, REQUEST_ID, SEMVER } from "../config/validate";
import { REASON, REQUESTER } from "../runner/core";

// Patterns are the parsers' own, so the document cannot drift from what is enforced.
const str = { type: "string" } as const;
const semver = { type: "string", pattern: SEMVER.source } as const;
const label = { type: "string", pattern: DNS_LABEL.source } as const;
/** Optional: the service records the token's name as the requester, whatever a body says (see docs/runner.md). */
const requester = { type: "string", pattern: REQUESTER.source, description: "optional; checked, then replaced by the token's name: the requester recorded is always the authenticated principal" } as const;
/** Optional: who the caller says it asks for, kept as its claim in a `Claimed-Requester` trailer. */
const claimedRequester = { type: "string", pattern: REQUESTER.source, description: "optional; the caller's claim of whom it asks for (CI: the actor who merged), recorded as a Claimed-Requester trailer, never as the requester" } as const;
const commit = { type: "string", pattern: COMMIT.source } as const;
const reason = { type: "string", pattern: REASON.source } as const;
/** The answer of /readyz. */
const READINESS = {
    type: "object",
    required: ["status", "backend", "platformStack"],
    properties: {
        status: { type: "string", enum: ["ready", "not ready"] },
        backend: { type: "object", required: ["kind", "source"], properties: { kind: str, source: { type: "string", enum: ["PULUMI_BACKEND_URL", "Pulumi.yaml", "pulumi login", "embedded default"] }, url: str } },
        platformStack: str,
    },
} as const;
const bundle = {
    type: "object",
    additionalProperties: false,
    required: ["files"],
    properties: { files: { type: "object", description: "path -> text: chart/** and values/<stage>.yaml", additionalProperties: str } },
} as const;

function obj(required: string[], properties: Record<string, unknown>) {
    return { type: "object", additionalProperties: false, required, properties };
}

const schemas = {
    Promote: obj(["app", "version", "to", "source"], {
        app: label,
        version: semver,
        to: label,
        bundle,
        image: { type: "string", description: "image with tag or digest; required with a bundle" },
        requester,
        claimedRequester,
        source: obj(["commit"], { commit, mr: { type: "integer" }, ciRunUrl: str }),
        reason,
        idempotencyKey: { type: "string", pattern: REQUEST_ID.source },
        overrideOrder: { type: "boolean" },
    }),
    Rollback: obj(["app", "stage"], { app: label, stage: label, to: semver, requester, claimedRequester, reason, idempotencyKey: { type: "string", pattern: REQUEST_ID.source } }),
    Hold: obj(["app", "stage"], { app: label, stage: label, requester, claimedRequester, reason }),
    Approve: obj(["app", "version", "stage"], { app: label, version: semver, stage: label }),
    Drift: obj([], { stage: label }),
    MrDeploy: obj(["mr", "app", "bundle", "image", "sourceCommit"], { mr: { type: "integer", minimum: 1 }, app: label, bundle, image: str, sourceCommit: commit, ttlHours: { type: "integer", minimum: 1 }, requester }),
    MrDestroy: obj(["mr"], { mr: { type: "integer", minimum: 1 }, requester }),
    MrReap: obj([], { requester }),
    SecretSet: obj(["app", "stage", "values"], {
        app: label,
        stage: label,
        name: label,
        namespace: label,
        scope: { enum: ["strict", "namespace-wide", "cluster-wide"] },
        replace: { type: "boolean" },
        values: { type: "object", description: "KEY -> base64 value; never logged, stored or returned", additionalProperties: { type: "string", contentEncoding: "base64" } },
        certificate: { type: "string", description: "the controller's certificate (PEM) for offline sealing" },
        reason: str,
    }),
    SecretRm: obj(["app", "stage"], { app: label, stage: label, name: label, keys: { type: "array", items: str }, reason: str }),
    SecretReseal: obj(["stage"], { stage: label, certificate: str, privateKeys: { type: "array", items: str }, reason: str }),
    Request: obj(["requestId", "verb", "stack", "state", "principal", "createdAt", "attempts"], {
        requestId: str,
        verb: str,
        stack: str,
        state: { enum: ["queued", "running", "done", "failed", "superseded"] },
        principal: str,
        createdAt: str,
        startedAt: str,
        finishedAt: str,
        attempts: { type: "integer" },
        result: { description: "the runner's answer, as `stages <verb> --json` prints it" },
        error: { $ref: "#/components/schemas/Error" },
    }),
    Error: obj(["kind", "message", "requestId"], { kind: { enum: ERROR_KINDS }, message: str, reason: str, requestId: str }),
};

const errors = {
    "400": { description: "invalid input: the message names each field and its rule" },
    "401": { description: "no or unknown bearer token" },
    "403": { description: "the token lacks the right for this verb on this stage" },
    "404": { description: "no such stage, app, secret or merge-request environment" },
    "409": { description: "refused by policy (reason: stage-order, hold, freeze, approval, stage-check) or a conflict" },
    "413": { description: "body larger than the limit" },
    "429": { description: "rate limit of the token; Retry-After says when" },
};

const requestId = { name: "id", in: "path", required: true, schema: { type: "string", pattern: REQUEST_ID.source } };
// A request is its requester's alone: anyone else gets the 404 of a request that does not exist.
const requestErrors = { "400": errors["400"], "401": errors["401"], "404": { description: "no such request for this token" }, "429": errors["429"] };

function asyncOp(summary: string, schema: keyof typeof schemas, right: string) {
    return {
        summary,
        "x-right": right,
        requestBody: { required: true, content: { "application/json": { schema: { $ref: `#/components/schemas/${schema}` } } } },
        responses: {
            "202": { description: "recorded and queued; follow links.self or links.events", content: { "application/json": { schema: { $ref: "#/components/schemas/Request" } } } },
            "200": { description: "the same idempotency key again, already finished", content: { "application/json": { schema: { $ref: "#/components/schemas/Request" } } } },
            ...errors,
        },
    };
}

function syncOp(summary: string, schema: keyof typeof schemas | undefined, right: string) {
    return {
        summary,
        "x-right": right,
        ...(schema ? { requestBody: { required: true, content: { "application/json": { schema: { $ref: `#/components/schemas/${schema}` } } } } } : {}),
        responses: { "200": { description: "the runner's answer, as `stages <verb> --json` prints it" }, ...errors },
    };
}

/** The document. */
export function openApiDocument() {
    return {
        openapi: "3.1.0",
        info: { title: "gitops-stages runner service", version: "1", description: "Promotions, rollbacks, holds, approvals, merge-request environments and sealed secrets over HTTP. Every /v1 route but this document needs `Authorization: Bearer <token>`." },
        components: { schemas, securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
        security: [{ bearer: [] }],
        paths: {
            "/v1/promote": { post: asyncOp("Promote a release into a stage (publishing its bundle on the first promotion)", "Promote", "promote") },
            "/v1/preview": { post: asyncOp("Preview a promotion: the exact file changes; nothing written", "Promote", "preview") },
            "/v1/rollback": { post: asyncOp("Promote an earlier release and hold the app in the stage", "Rollback", "rollback") },
            "/v1/hold": { post: asyncOp("Hold an app in a stage", "Hold", "hold") },
            "/v1/release": { post: asyncOp("Release a hold", "Hold", "hold") },
            "/v1/approve": { post: syncOp("Approve a promotion into a stage that requires it", "Approve", "approve") },
            "/v1/status": { get: { ...syncOp("What runs where", undefined, "status"), parameters: [{ name: "stage", in: "query", schema: label }] } },
            "/v1/deployments/{stage}": {
                get: {
                    ...syncOp("What Argo CD has deployed of the stage, judged against its last ops commit (refresh=true asks Argo CD to compare again first; release=<app>@<version> checks the stage holds that release)", undefined, "status"),
                    parameters: [
                        { name: "stage", in: "path", required: true, schema: label },
                        { name: "refresh", in: "query", schema: { type: "string", enum: ["true", "false"] } },
                        // The stage must hold this release (404 otherwise): what `stages ci wait <app>@<version>` sends.
                        { name: "release", in: "query", schema: { type: "string", pattern: "^[a-z]([-a-z0-9]*[a-z0-9])?@[0-9]" } },
                    ],
                },
            },
            "/v1/deployments/{stage}/records": {
                get: {
                    ...syncOp("What the service's watch recorded of the stage: each last ops commit Argo CD deployed (or failed to), newest first, with the GitHub Deployments it created", undefined, "status"),
                    parameters: [{ name: "stage", in: "path", required: true, schema: label }],
                },
            },
            "/v1/history/{stage}": { get: { ...syncOp("A stage's audit trail from the stack's update history", undefined, "history"), parameters: [{ name: "stage", in: "path", required: true, schema: label }] } },
            "/v1/history/{stage}/commits/{commit}": {
                get: {
                    ...syncOp("One ops repo commit of the stage's folder (linked from the history): message, changed files, patch", undefined, "history"),
                    parameters: [
                        { name: "stage", in: "path", required: true, schema: label },
                        { name: "commit", in: "path", required: true, schema: commit },
                    ],
                },
            },
            "/v1/drift": { post: asyncOp("Refresh in preview mode and report differences", "Drift", "drift") },
            "/v1/mr/deploy": { post: asyncOp("Deploy or update a merge-request environment", "MrDeploy", "mr") },
            "/v1/mr/destroy": { post: asyncOp("Destroy a merge-request environment", "MrDestroy", "mr") },
            "/v1/mr/reap": { post: asyncOp("Destroy every expired merge-request environment", "MrReap", "mr") },
            "/v1/secrets": { get: { ...syncOp("Names, scopes and keys of a stage's sealed secrets (never values)", undefined, "secrets"), parameters: [{ name: "stage", in: "query", required: true, schema: label }, { name: "app", in: "query", schema: label }] } },
            "/v1/secrets/set": { post: syncOp("Seal values into a stage's secret (one commit)", "SecretSet", "secrets") },
            "/v1/secrets/rm": { post: syncOp("Remove keys or secrets (one commit)", "SecretRm", "secrets") },
            "/v1/secrets/reseal": { post: syncOp("Re-encrypt a stage's secrets for the controller's new key (one commit)", "SecretReseal", "secrets") },
            "/v1/requests/{id}": { get: { summary: "A request's state and result (its requester only)", parameters: [requestId], responses: { "200": { description: "the request", content: { "application/json": { schema: { $ref: "#/components/schemas/Request" } } } }, ...requestErrors } } },
            "/v1/requests/{id}/events": { get: { summary: "Server-sent events: state changes and engine output until the request finishes (event: end)", parameters: [requestId], responses: { "200": { description: "text/event-stream" }, ...requestErrors } } },
            "/healthz": { get: { summary: "Liveness", security: [], responses: { "200": { description: "ok" } } } },
            "/readyz": {
                get: {
                    summary: "Readiness (503 while starting or shutting down), with the state backend and platform stack in use",
                    description: "backend.kind (the URL's scheme) and backend.source (PULUMI_BACKEND_URL, Pulumi.yaml, pulumi login or embedded default) for everyone; backend.url, without credentials, only with a valid bearer token",
                    security: [],
                    responses: {
                        "200": { description: "ready", content: { "application/json": { schema: READINESS } } },
                        "503": { description: "not ready", content: { "application/json": { schema: READINESS } } },
                    },
                },
            },
        },
    };
}
