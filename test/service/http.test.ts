/**
 * The HTTP transport alone (src/service/http.ts), in process, with a host that records what reaches
 * it: what the transport itself decides (authentication by route, 404s, 503 while stopping, body
 * refusals, headers) must hold whatever the service behind it does. The service on the real engine
 * is driven through the same transport by endpoints.test.ts and service.test.ts.
 */
import * as assert from "node:assert/strict";

import type { FastifyInstance } from "fastify";

import type { Command } from "../../src/runner/commands";
import type { Actor } from "../../src/runner/core";
import { type Answer, HttpError, type HttpHost, httpApp } from "../../src/service/http";

const TOKEN = "valid-token-0123456789";
const ACTOR: Actor = { name: "ci-itg", teams: [], canOverrideOrder: false, grants: [] };

class RecordingHost implements HttpHost {
    constructor(readonly limits = { bodyBytes: 4096, ratePerMinute: 100_000, burst: 1_000, requestTimeoutMs: 30_000 }) {}
    readonly logged: Record<string, unknown>[] = [];
    readonly commands: Command[] = [];
    isStopping = false;
    failWith?: Error;
    readonly log = (e: Record<string, unknown>) => void this.logged.push(e);
    stopping(): boolean {
        return this.isStopping;
    }
    async authenticate(authorization: string | undefined): Promise<Actor> {
        if (authorization !== `Bearer ${TOKEN}`) throw new HttpError(401, "unauthorized", "the token is not valid", { "www-authenticate": "Bearer" });
        return ACTOR;
    }
    readiness(): Answer {
        return this.isStopping ? { status: 503, body: { status: "not ready" } } : { status: 200, body: { status: "ready" } };
    }
    async answer(command: Command, actor: Actor): Promise<Answer> {
        if (this.failWith) throw this.failWith;
        this.commands.push(command);
        return { status: 200, body: { verb: command.verb, principal: actor.name } };
    }
    async request(): Promise<Answer> {
        throw new HttpError(404, "not-found", "no request");
    }
    async stream(): Promise<void> {}
    async watchRecords(): Promise<Answer> {
        return { status: 200, body: [] };
    }
}

describe("the HTTP transport (fastify): what it decides itself", function () {
    let host: RecordingHost;
    let app: FastifyInstance;
    const auth = { authorization: `Bearer ${TOKEN}` };

    beforeEach(async function () {
        host = new RecordingHost();
        app = await httpApp(host);
    });
    afterEach(async function () {
        await app.close();
    });

    it("authenticates by the route matched, not the URL's text: percent-encoded and absolute URLs need the token too", async function () {
        for (const url of ["/%761/status", "/v1/%73tatus", "http://elsewhere/v1/status"]) {
            const r = await app.inject({ method: "GET", url });
            assert.equal(r.statusCode, 401, `${url}: ${r.payload}`);
            assert.equal(r.json().error.kind, "unauthorized");
        }
        assert.equal(host.commands.length, 0, "nothing reached the command layer");
        assert.ok(!host.logged.some((l) => l.level === "error"), "no internal error was logged");
        const ok = await app.inject({ method: "GET", url: "/%761/status", headers: auth });
        assert.equal(ok.statusCode, 200);
        assert.deepEqual(ok.json(), { verb: "status", principal: "ci-itg" });
    });

    it("a route that does not exist is a 404 in the error shape, token or not", async function () {
        for (const headers of [{}, auth]) {
            const r = await app.inject({ method: "GET", url: "/v1/nothing", headers });
            assert.equal(r.statusCode, 404);
            assert.equal(r.json().error.message, "no route GET /v1/nothing");
        }
    });

    it("every answer says no-store; while stopping, /v1 answers 503 with Retry-After and health stays up", async function () {
        const ok = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
        assert.equal(ok.headers["cache-control"], "no-store");
        host.isStopping = true;
        const r = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
        assert.equal(r.statusCode, 503);
        assert.equal(r.headers["retry-after"], "5");
        assert.equal(r.json().error.kind, "unavailable");
        assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
        assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 503);
    });

    it("refuses bodies that are not a JSON object, with __proto__ keys, or secret values under keys that break the key rule", async function () {
        const post = (payload: string, url = "/v1/hold") => app.inject({ method: "POST", url, headers: { ...auth, "content-type": "application/json" }, payload });
        assert.match((await post("[1]")).json().error.message, /^body: must be a JSON object$/);
        const proto = await post('{"app":"web","stage":"itg","__proto__":{"admin":true}}');
        assert.equal(proto.statusCode, 400);
        assert.match(proto.json().error.message, /without __proto__/);
        const key = await post(JSON.stringify({ app: "web", stage: "tst", values: { "K\nX": 1 } }), "/v1/secrets/set");
        assert.equal(key.statusCode, 400);
        assert.match(key.json().error.message, /values\.K\nX: key must be 1 to 253 letters/);
        assert.equal(host.commands.length, 0, "nothing reached the command layer");
    });

    it("a parse failure inside the service is internal (500, logged), never blamed on the caller's body", async function () {
        host.failWith = new SyntaxError("Unexpected token in a checkpoint");
        const r = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
        assert.equal(r.statusCode, 500);
        assert.equal(r.json().error.kind, "internal");
        assert.ok(host.logged.some((l) => l.level === "error" && String(l.error).includes("checkpoint")));
    });

    it("limits each token with one bucket for all routes: a burst, then the sustained rate, never a window's lock-out", async function () {
        const limited = await httpApp(new RecordingHost({ bodyBytes: 4096, ratePerMinute: 120, burst: 3, requestTimeoutMs: 30_000 }));
        try {
            const call = (url: string) => limited.inject({ method: "GET", url, headers: auth });
            const burst = [await call("/v1/status"), await call("/v1/history/itg"), await call("/v1/secrets?stage=itg")];
            assert.deepEqual(burst.map((r) => r.statusCode), [200, 200, 200]);
            const refused = await call("/v1/deployments/itg");
            assert.equal(refused.statusCode, 429, "the bucket is per token, not per route");
            assert.equal(refused.headers["retry-after"], "1");
            assert.equal(refused.json().error.kind, "rate-limited");
            // At 120 a minute a token comes back every 0.5 s: a poller goes on at that rate.
            await new Promise((r) => setTimeout(r, 600));
            assert.equal((await call("/v1/status")).statusCode, 200);
            assert.equal((await call("/v1/status")).statusCode, 429);
            // Another token has its own bucket; health is not limited.
            assert.equal((await limited.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
        } finally {
            await limited.close();
        }
    });

    it("the OpenAPI document is generated from the route schemas: each POST's body is its command's, with rules and every status", async function () {
        const doc = (await app.inject({ method: "GET", url: "/v1/openapi.json" })).json();
        const promote = doc.paths["/v1/promote"].post;
        const body = promote.requestBody.content["application/json"].schema;
        assert.equal(body.additionalProperties, false);
        assert.match(body.properties.idempotencyKey.pattern, /A-Za-z0-9/);
        assert.match(body.properties.app["x-rule"], /must be a DNS label/);
        assert.deepEqual(Object.keys(promote.responses).sort(), ["200", "202", "400", "401", "403", "404", "409", "413", "415", "429", "503"]);
        assert.equal(promote["x-right"], "promote");
    });
});
