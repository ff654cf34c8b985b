/**
 * The Argo CD API client against a stand-in API server on loopback that answers as Argo CD's
 * grpc-gateway does (status codes and `{error, code, message}` bodies taken from Argo CD v3.5):
 * what is sent (bearer token, JSON body, refresh parameter) and how each refusal maps to the
 * runner's error kinds, without the token ever showing in a message.
 */
import * as assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

import { ArgoCdApplications, ArgoCdClient } from "../../src/runner/argocd";
import { RunnerError, exitCode, httpStatus } from "../../src/runner/errors";
import { freePort } from "../support/fixtures";

const TOKEN = "argocd-token-7f3a9c";
const SOURCE = { urlFrom: "runner.json argocd.url", tokenFrom: "$ARGOCD_AUTH_TOKEN" };

type Seen = { method: string; url: string; auth?: string; type?: string; body: string };

describe("the Argo CD API client", function () {
    let server: http.Server;
    let base: string;
    const seen: Seen[] = [];
    let answer: (req: Seen) => { status: number; body: unknown } = () => ({ status: 500, body: {} });

    before(async function () {
        server = http.createServer((req, res) => {
            let body = "";
            req.on("data", (b: Buffer) => (body += b.toString()));
            req.on("end", () => {
                const s: Seen = { method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, type: req.headers["content-type"], body };
                seen.push(s);
                const a = answer(s);
                res.writeHead(a.status, { "content-type": "application/json" });
                res.end(JSON.stringify(a.body));
            });
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));
    beforeEach(() => (seen.length = 0));

    const grpcError = (status: number, code: number, message: string) => ({ status, body: { error: message, code, message } });
    const client = () => new ArgoCdClient(base, TOKEN, SOURCE);
    async function refusal(p: Promise<unknown>): Promise<RunnerError> {
        try {
            await p;
        } catch (e) {
            assert.ok(e instanceof RunnerError, String(e));
            assert.ok(!e.message.includes(TOKEN), `the token leaked: ${e.message}`);
            return e;
        }
        assert.fail("expected a refusal");
    }

    it("reads an Application with the bearer token, asks for a refresh with refresh=normal, and knows an absent one", async function () {
        answer = (s) => (s.url.startsWith("/api/v1/applications/itg") ? { status: 200, body: { metadata: { name: "itg" }, status: { sync: { status: "Synced", revision: "a".repeat(40) } } } } : grpcError(404, 5, 'applications.argoproj.io "nope" not found'));
        const apps = new ArgoCdApplications(client());
        assert.equal((await apps.application("itg"))?.sync?.status, "Synced");
        await apps.refresh("itg");
        assert.equal(await apps.application("nope"), undefined);
        assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), ["GET /api/v1/applications/itg", "GET /api/v1/applications/itg?refresh=normal", "GET /api/v1/applications/nope"]);
        assert.ok(seen.every((s) => s.auth === `Bearer ${TOKEN}`));
    });

    it("starts a sync with a JSON body naming the Application, at its target revision", async function () {
        // As Argo CD answers: the requested operation, and the status of the previous one.
        answer = () => ({ status: 200, body: { metadata: { name: "tst" }, operation: { initiatedBy: { username: "tst-owner" }, sync: {} }, status: { operationState: { phase: "Succeeded", startedAt: "2026-12-06T00:00:00Z", operation: { initiatedBy: { automated: true } } } } } });
        const app = await client().sync("tst");
        assert.equal(app.operation?.initiatedBy?.username, "tst-owner");
        assert.equal(seen[0].method, "POST");
        assert.equal(seen[0].url, "/api/v1/applications/tst/sync");
        assert.equal(seen[0].type, "application/json");
        assert.deepEqual(JSON.parse(seen[0].body), { name: "tst", prune: false });
    });

    it("maps Argo CD's refusals: RBAC -> forbidden (exit 3, 403), a sync window -> refused (exit 3, 409), a bad token -> unauthorized, an absent app -> not found", async function () {
        answer = () => grpcError(403, 7, "permission denied: applications, sync, prod/prod, sub: tst-owner, iat: 2026-12-06T01:00:00Z");
        const denied = await refusal(client().sync("prod"));
        assert.equal(denied.kind, "forbidden");
        assert.equal(exitCode(denied), 3);
        assert.equal(httpStatus(denied), 403);
        assert.match(denied.message, /answered 403: permission denied: applications, sync, prod\/prod, sub: tst-owner/);

        // Case as some Argo CD versions write it.
        answer = () => grpcError(403, 7, "Cannot sync: Blocked by sync window");
        const window = await refusal(client().sync("perf"));
        assert.equal(window.kind, "refused");
        assert.equal(window.reason, "sync-window");
        assert.equal(exitCode(window), 3);
        assert.equal(httpStatus(window), 409);

        answer = () => grpcError(401, 16, "invalid session: token signature is invalid");
        const bad = await refusal(client().application("itg"));
        assert.equal(bad.kind, "unauthorized");
        assert.match(bad.message, /the token from \$ARGOCD_AUTH_TOKEN is not valid there/);

        answer = () => grpcError(404, 5, 'applications.argoproj.io "nope" not found');
        assert.equal((await refusal(client().sync("nope"))).kind, "not-found");

        answer = () => grpcError(400, 9, "Cannot sync to main: auto-sync currently set to main");
        const pre = await refusal(client().sync("itg"));
        assert.equal(pre.kind, "conflict");
        assert.match(pre.message, /auto-sync currently set/);
    });

    it("an unreachable Argo CD is `unavailable` (exit 5, 503), naming the URL and the setting that gave it", async function () {
        const port = await freePort();
        const e = await refusal(new ArgoCdClient(`http://127.0.0.1:${port}`, TOKEN, SOURCE).application("itg"));
        assert.equal(e.kind, "unavailable");
        assert.equal(exitCode(e), 5);
        assert.equal(httpStatus(e), 503);
        assert.match(e.message, new RegExp(`cannot reach Argo CD at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): check runner\\.json argocd\\.url`));
    });

    it("bad settings are refused before any call: a URL that is not http(s), no token", function () {
        assert.throws(() => new ArgoCdClient("ftp://x", TOKEN, SOURCE), /runner\.json argocd\.url = "ftp:\/\/x": must be an http\(s\) URL/);
        assert.throws(() => new ArgoCdClient(base, "", SOURCE), (e: RunnerError) => e.kind === "unauthorized" && /set \$ARGOCD_AUTH_TOKEN/.test(e.message));
        assert.equal(seen.length, 0);
    });
});
