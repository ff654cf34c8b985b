/**
 * The service over HTTP on loopback, on the real engine and a real ops repo: every endpoint's
 * answers (success, 400 with field names, 401, 403, 404, 409 with the policy reason, 413, 415,
 * 429), request records and server-sent events, and 50 concurrent promotions.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { chromium } from "playwright-core";

import { execFile, execFileSync } from "node:child_process";

import { bundleFiles } from "../../src/cli/ci";
import { ciClientScript } from "../../src/program/ops/workflows";
import { parseLedger } from "../../src/program/stage/files";
import { Service } from "../../src/service/server";
import { SqliteStore } from "../../src/service/sqlite-store";
import { repoRoot } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";
import { plant } from "../support/planted";
import { Pipeline, api, bootstrapPipeline, settle } from "../support/service";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

describe("the runner service over HTTP", function () {
    let p: Pipeline;
    let service: Service;
    let base: string;
    const logs: Record<string, unknown>[] = [];
    const promoteBody = (app: string, version: string, to: string, extra: Record<string, unknown> = {}) => ({ app, version, to, requester: "ci", source: { commit: COMMIT }, ...extra });
    const upload = (app: string, replicas = 1) => bundleFiles(makeBundleDir(p.dir, app, { replicas }));

    before(async function () {
        p = await bootstrapPipeline("gitops-stages-service-");
        const assembled = await p.runner();
        service = new Service({ assembled, store: new SqliteStore(path.join(p.dataDir, "service", "requests.db")), replicaId: "test", log: (e) => logs.push(e), limits: { bodyBytes: 512 * 1024, ratePerMinute: 100_000, burst: 1_000 } });
        base = (await service.start(0)).url;
    });

    after(async function () {
        await service?.stop();
        p?.dispose();
    });

    it("health, readiness and the OpenAPI document need no token", async function () {
        const anon = api(base);
        assert.equal((await anon("GET", "/healthz")).status, 200);
        assert.equal((await anon("GET", "/readyz")).status, 200);
        const doc = await anon("GET", "/v1/openapi.json");
        assert.equal(doc.status, 200);
        assert.equal(doc.body.openapi, "3.1.0");
        for (const route of ["/v1/promote", "/v1/requests/{id}/events", "/v1/secrets/set", "/v1/mr/deploy"]) assert.ok((doc.body.paths as Record<string, unknown>)[route], route);
    });

    it("a replica that cannot reach its request log stops claiming and reports not ready, then recovers without a restart", async function () {
        const assembled = await p.runner();
        const store = new SqliteStore(path.join(p.dataDir, "service", "requests.db"));
        let down = false;
        let claims = 0;
        // The same store, with its database made unreachable on demand.
        const flaky = new Proxy(store, {
            get(target, prop, receiver) {
                const v = Reflect.get(target, prop, receiver) as unknown;
                if (typeof v !== "function") return v;
                return (...args: unknown[]) => {
                    if (prop === "claim") claims++;
                    if (down && prop !== "close") return Promise.reject(new Error("connect ECONNREFUSED 10.0.0.1:5432"));
                    return (v as (...a: unknown[]) => unknown).apply(target, args);
                };
            },
        });
        const replica = new Service({ assembled: { ...assembled, settings: { ...assembled.settings, leaseSeconds: 4 } }, store: flaky, replicaId: "flaky", log: () => undefined, limits: { ratePerMinute: 100_000, burst: 1_000 } });
        const url = (await replica.start(0)).url;
        try {
            const ready = async () => {
                const r = await api(url)("GET", "/readyz");
                return { status: r.status, problem: r.body.problem };
            };
            assert.equal((await ready()).status, 200);
            down = true;
            const deadline = Date.now() + 30_000;
            while ((await ready()).status === 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
            assert.deepEqual(await ready(), { status: 503, problem: "the request log's database cannot be reached" });
            // No claims while it cannot reach it: the pump does not ask.
            const before = claims;
            await new Promise((r) => setTimeout(r, 1500));
            assert.equal(claims, before, "claims attempted while the database was unreachable");
            down = false;
            while ((await ready()).status !== 200 && Date.now() < deadline + 30_000) await new Promise((r) => setTimeout(r, 100));
            assert.equal((await ready()).status, 200);
            assert.ok(claims > before, "claiming again once the database answers");
        } finally {
            await replica.stop();
        }
    });

    it("401 without a token or with an unknown one, with no hint of what exists", async function () {
        const none = await api(base)("GET", "/v1/status");
        assert.equal(none.status, 401);
        assert.equal(none.headers.get("www-authenticate"), "Bearer");
        const wrong = await api(base, "x".repeat(48))("GET", "/v1/status");
        assert.equal(wrong.status, 401);
        assert.deepEqual(Object.keys(wrong.body.error as object).sort(), ["kind", "message", "requestId"]);
        assert.equal((wrong.body.error as { message: string }).message, "the token is not valid");
    });

    it("400 names the field and the rule; 415 and 413 for the wrong type or size of body", async function () {
        const ci = api(base, p.ciTokens.itg);
        const unknown = await ci("POST", "/v1/promote", { ...promoteBody("web", "1.0.0", "itg"), force: true });
        assert.equal(unknown.status, 400);
        assert.match((unknown.body.error as { message: string }).message, /force: is not a known/);
        const bad = await ci("POST", "/v1/promote", promoteBody("web", "v1", "itg"));
        assert.equal(bad.status, 400);
        assert.match((bad.body.error as { message: string }).message, /version = "v1": must be a semantic version/);
        const traversal = await ci("POST", "/v1/promote", { ...promoteBody("web", "1.0.0", "itg"), image: "r/web:1", bundle: { files: { "chart/../../etc/passwd": "x" } } });
        assert.equal(traversal.status, 400);
        assert.match((traversal.body.error as { message: string }).message, /bundle\.files\["chart\/\.\.\/\.\.\/etc\/passwd"\]/);
        // A newline in a URL would start a trailer of the caller's own in the commit (URL parsing drops it silently).
        const smuggled = await ci("POST", "/v1/promote", promoteBody("web", "1.0.0", "itg", { source: { commit: COMMIT, ciRunUrl: "https://ci.example/run/1\nRequester: mallory" } }));
        assert.equal(smuggled.status, 400);
        assert.match((smuggled.body.error as { message: string }).message, /source\.ciRunUrl = .*: must be a URL without spaces, newlines or control characters/);
        assert.equal((await ci("POST", "/v1/promote", "{not json")).status, 400);
        assert.equal((await ci("POST", "/v1/promote", "x=1", { "content-type": "application/x-www-form-urlencoded" })).status, 415);
        const huge = await ci("POST", "/v1/promote", { ...promoteBody("web", "1.0.0", "itg"), reason: "x".repeat(600 * 1024) });
        assert.equal(huge.status, 413);
        assert.equal(p.git("log", "--format=%s", "main").includes("web"), false, "bad input wrote something");
    });

    it("403 for a right the token lacks, whatever exists", async function () {
        const ciItg = api(base, p.ciTokens.itg);
        for (const [method, route, body] of [
            ["POST", "/v1/promote", promoteBody("web", "1.0.0", "tst")],
            ["POST", "/v1/rollback", { app: "web", stage: "itg", requester: "ci" }],
            ["POST", "/v1/hold", { app: "web", stage: "itg", requester: "ci" }],
            ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }],
            ["GET", "/v1/secrets?stage=itg", undefined],
            ["POST", "/v1/promote", promoteBody("web", "1.0.0", "no-such-stage")],
        ] as const) {
            const r = await ciItg(method, route, body);
            assert.equal(r.status, 403, `${method} ${route}: ${JSON.stringify(r.body)}`);
            assert.equal((r.body.error as { kind: string }).kind, "forbidden");
        }
    });

    it("202, the request's record and its events; the result has the CLI's shape; the same idempotency key answers the same request", async function () {
        const ci = api(base, p.ciTokens.itg);
        const accepted = await ci("POST", "/v1/promote", promoteBody("web", "1.0.0", "itg", { image: "registry.example/web:1.0.0", bundle: upload("web"), idempotencyKey: "web-1.0.0-itg" }));
        assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
        const id = accepted.body.requestId as string;
        assert.equal((accepted.body.links as { events: string }).events, `/v1/requests/${id}/events`);
        const events = await fetch(`${base}/v1/requests/${id}/events`, { headers: { authorization: `Bearer ${p.ciTokens.itg}` } });
        assert.equal(events.headers.get("content-type"), "text/event-stream");
        const stream = await events.text();
        assert.match(stream, /event: state\ndata: \{"at":"[^"]+","state":"queued"\}/);
        assert.match(stream, /"state":"running"/);
        assert.match(stream, /event: end\ndata: /);
        const final = await settle(ci, id);
        assert.equal(final.state, "done");
        // The uploaded bundle travels in the request log (any replica, on any machine, may run it).
        const logged = new SqliteStore(path.join(p.dataDir, "service", "requests.db"));
        try {
            const request = ((await logged.get(id))?.body as { request: Record<string, unknown> }).request;
            assert.equal(request.bundle, "(uploaded)");
            assert.match(String((request.bundleFiles as Record<string, string>)["chart/Chart.yaml"]), /name: web/);
        } finally {
            await logged.close();
        }
        const result = final.result as { requestId: string; state: string; opsCommit: string; publishCommit: string; stage: string; app: string; version: string };
        assert.deepEqual([result.requestId, result.state, result.stage, result.app, result.version], [id, "done", "itg", "web", "1.0.0"]);
        assert.equal(result.opsCommit, p.git("rev-parse", "main"));
        const commits = Number(p.git("rev-list", "--count", "main"));
        const again = await ci("POST", "/v1/promote", promoteBody("web", "1.0.0", "itg", { image: "registry.example/web:1.0.0", bundle: upload("web"), idempotencyKey: "web-1.0.0-itg" }));
        assert.equal(again.status, 200);
        assert.equal(again.body.requestId, id);
        assert.equal(Number(p.git("rev-list", "--count", "main")), commits);
        // Someone else's request is not found.
        assert.equal((await api(base, p.ciTokens.tst)("GET", `/v1/requests/${id}`)).status, 404);
        assert.equal((await ci("GET", "/v1/no-such-route")).status, 404);
        // Logs carry request ids and never the token.
        assert.ok(logs.some((l) => l.requestId === id && l.msg === "request finished"));
        assert.ok(!JSON.stringify(logs).includes(p.ciTokens.itg));
    });

    it("409 with the policy reason, answered at once: a stage skipped, a hold", async function () {
        const skip = await api(base, p.ciTokens.perf)("POST", "/v1/promote", promoteBody("web", "1.0.0", "perf"));
        assert.equal(skip.status, 409);
        assert.equal((skip.body.error as { reason: string }).reason, "stage-order");
        const op = api(base, p.operatorToken);
        const hold = await op("POST", "/v1/hold", { app: "web", stage: "itg", requester: "ops", reason: "incident" });
        assert.equal(hold.status, 202);
        assert.equal((await settle(op, hold.body.requestId as string)).state, "done");
        const held = await api(base, p.ciTokens.itg)("POST", "/v1/promote", promoteBody("web", "1.1.0", "itg", { image: "registry.example/web:1.1.0", bundle: upload("web", 2) }));
        assert.equal(held.status, 409);
        assert.equal((held.body.error as { reason: string }).reason, "hold");
        const release = await op("POST", "/v1/release", { app: "web", stage: "itg", requester: "ops" });
        assert.equal((await settle(op, release.body.requestId as string)).state, "done");
        const status = await op("GET", "/v1/status?stage=itg");
        assert.equal(status.status, 200);
        assert.equal(((status.body as unknown as { apps: Record<string, { version: string }> }[])[0]).apps.web.version, "1.0.0");
        const history = await op("GET", "/v1/history/itg");
        assert.equal(history.status, 200);
    });

    it("the audit trail records the token's principal, never a requester the body claims; a requester with a newline is refused", async function () {
        const op = api(base, p.operatorToken);
        const before = Number(p.git("rev-list", "--count", "main"));
        const forged = await op("POST", "/v1/hold", { app: "web", stage: "itg", requester: "alice\nRequest-Id: r-forged" });
        assert.equal(forged.status, 400);
        assert.match((forged.body.error as { message: string }).message, /^ {2}requester = "alice\\nRequest-Id: r-forged": must be one line/m);
        assert.equal(Number(p.git("rev-list", "--count", "main")), before, "a refused request committed something");
        const claimed = await op("POST", "/v1/hold", { app: "web", stage: "itg", requester: "alice", reason: "audit" });
        assert.equal((await settle(op, claimed.body.requestId as string)).state, "done");
        const message = p.git("log", "-1", "--format=%B", "main");
        assert.match(message, /^Requester: operator$/m, message);
        assert.doesNotMatch(message, /alice/);
        const entry = (await op("GET", "/v1/history/itg")).body as unknown as { change?: { requester?: string; kind?: string } }[];
        assert.equal(entry[0].change?.requester, "operator");
        // Whom the caller says it asks for is kept, as its claim, in a trailer of its own.
        const forgedClaim = await op("POST", "/v1/release", { app: "web", stage: "itg", claimedRequester: "alice\nRequester: alice" });
        assert.equal(forgedClaim.status, 400);
        assert.match((forgedClaim.body.error as { message: string }).message, /^ {2}claimedRequester = "alice\\nRequester: alice": must be one line/m);
        const release = await op("POST", "/v1/release", { app: "web", stage: "itg", claimedRequester: "alice" });
        assert.equal((await settle(op, release.body.requestId as string)).state, "done");
        const released = p.git("log", "-1", "--format=%B", "main");
        assert.match(released, /^Requester: operator$/m, released);
        assert.match(released, /^Claimed-Requester: alice$/m, released);
        assert.equal(released.match(/^Requester: /gm)?.length, 1);
    });

    it("each update carries the promotion in Pulumi's history (source commit, CI run, merge request, principal), nothing of a checkout around the data folder", async function () {
        // The data folder inside a git checkout, as the demo's sits in the tool's own: Pulumi would
        // describe every update with that checkout's commit and author if it looked there.
        execFileSync("git", ["init", "-q", "-b", "main", p.dir]);
        execFileSync("git", ["-C", p.dir, "-c", "user.name=Tool Author", "-c", "user.email=tool@example.invalid", "commit", "-q", "--allow-empty", "-m", "the tool's own checkout"]);
        const checkout = execFileSync("git", ["-C", p.dir, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
        try {
            const ci = api(base, p.ciTokens.itg);
            const source = "fedcba9876543210fedcba9876543210fedcba98";
            const run = "https://ci.example/acme/app/runs/4242";
            const r = await ci("POST", "/v1/promote", promoteBody("audit", "1.0.0", "itg", { requester: "audit-claimant", image: "registry.example/audit:1.0.0", bundle: upload("audit"), source: { commit: source, ciRunUrl: run, mr: 77 } }));
            assert.equal(r.status, 202, JSON.stringify(r.body));
            const done = await settle(ci, r.body.requestId as string);
            assert.equal(done.state, "done", JSON.stringify(done.error));
            const history = JSON.parse(p.pulumi("stack", "history", "--json", "--stack", "itg")) as { message: string; environment: Record<string, string> }[];
            const update = history[0];
            assert.match(update.message, new RegExp(`^Promote audit 1\\.0\\.0 to itg \\(request ${r.body.requestId as string}\\)`));
            const env = update.environment;
            assert.equal(env["git.head"], source, JSON.stringify(env));
            assert.equal(env["git.committer"], "ci-itg", "the principal, not the body's claim");
            assert.equal(env["ci.system"], "gitops-stages");
            assert.equal(env["ci.build.id"], r.body.requestId);
            assert.equal(env["ci.build.type"], "promote");
            assert.equal(env["ci.build.url"], run);
            assert.equal(env["ci.pr.number"], "77");
            assert.equal(env["vcs.kind"], "local");
            assert.equal(env["vcs.repo"], "app-dev");
            const all = JSON.stringify(history);
            assert.ok(!all.includes(checkout), "an update names the enclosing checkout's commit");
            assert.ok(!/Tool Author|tool@example\.invalid|vcs\.root/.test(all), `an update names the enclosing checkout: ${all.slice(0, 2000)}`);
            assert.ok(!all.includes("audit-claimant"), "the body's requester reached the history");
            // The next update of another kind carries its own metadata, nothing of this one's.
            const hold = await api(base, p.operatorToken)("POST", "/v1/hold", { app: "audit", stage: "itg", reason: "audit" });
            assert.equal((await settle(api(base, p.operatorToken), hold.body.requestId as string)).state, "done");
            const next = (JSON.parse(p.pulumi("stack", "history", "--json", "--stack", "itg")) as { environment: Record<string, string> }[])[0].environment;
            assert.equal(next["ci.build.type"], "hold");
            assert.equal(next["git.committer"], "operator");
            assert.equal(next["git.head"], undefined);
            assert.equal(next["ci.build.url"], undefined);
            const release = await api(base, p.operatorToken)("POST", "/v1/release", { app: "audit", stage: "itg" });
            assert.equal((await settle(api(base, p.operatorToken), release.body.requestId as string)).state, "done");
        } finally {
            fs.rmSync(path.join(p.dir, ".git"), { recursive: true, force: true });
        }
    });

    it("a push the git host refuses fails the request as a conflict with the host's reason, as the CLI reports it (not as internal)", async function () {
        const hook = path.join(p.ops, "hooks", "pre-receive");
        // The platform's own protection hook is put back afterwards: later tests run against it.
        const protection = fs.readFileSync(hook);
        fs.writeFileSync(hook, "#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\nexit 1\n", { mode: 0o755 });
        try {
            const ci = api(base, p.ciTokens.itg);
            const before = p.git("rev-parse", "main");
            const body = promoteBody("refused", "1.0.0", "itg", { image: "registry.example/refused:1.0.0", bundle: upload("refused"), idempotencyKey: "refused-1.0.0-itg" });
            const r = await ci("POST", "/v1/promote", body);
            assert.equal(r.status, 202, JSON.stringify(r.body));
            const done = await settle(ci, r.body.requestId as string);
            assert.equal(done.state, "failed");
            const error = done.error as { kind: string; reason?: string; message: string };
            assert.equal(error.kind, "conflict");
            assert.equal(error.reason, "git");
            assert.match(error.message, /GH006: Protected branch update failed/);
            assert.equal(p.git("rev-parse", "main"), before);
            fs.writeFileSync(hook, protection);
            // Only a success is replayed: the same key again, once the host accepts, is a new request that runs.
            const retry = await ci("POST", "/v1/promote", body);
            assert.equal(retry.status, 202, JSON.stringify(retry.body));
            assert.notEqual(retry.body.requestId, r.body.requestId);
            const retried = await settle(ci, retry.body.requestId as string);
            assert.equal(retried.state, "done", JSON.stringify(retried.error));
            assert.equal(parseLedger(p.git("show", "main:environments/itg/releases.json")).refused.version, "1.0.0");
            const again = await ci("POST", "/v1/promote", body);
            assert.equal(again.body.requestId, retry.body.requestId, "the success is replayed for its key");
        } finally {
            fs.rmSync(hook, { force: true });
        }
    });

    it("idempotency keys are per token: two tokens using one key get two requests, each its own answer", async function () {
        const key = "shared-key-1";
        const a = await api(base, p.ciTokens.itg)("POST", "/v1/promote", promoteBody("k1", "1.0.0", "itg", { image: "registry.example/k1:1.0.0", bundle: upload("k1"), idempotencyKey: key }));
        const b = await api(base, p.operatorToken)("POST", "/v1/promote", promoteBody("k2", "1.0.0", "itg", { image: "registry.example/k2:1.0.0", bundle: upload("k2"), idempotencyKey: key }));
        assert.equal(a.status, 202, JSON.stringify(a.body));
        assert.equal(b.status, 202, JSON.stringify(b.body));
        assert.notEqual(a.body.requestId, b.body.requestId);
        assert.equal((await settle(api(base, p.ciTokens.itg), a.body.requestId as string)).state, "done");
        const bDone = await settle(api(base, p.operatorToken), b.body.requestId as string);
        assert.equal(bDone.state, "done");
        assert.equal((bDone.result as { app: string }).app, "k2", "the operator got its own answer, not the CI token's");
        const ledger = parseLedger(p.git("show", "main:environments/itg/releases.json"));
        assert.equal(ledger.k1.version, "1.0.0");
        assert.equal(ledger.k2.version, "1.0.0");
    });

    it("a store failure while recording an outcome or streaming events neither ends the service nor loses the request", async function () {
        const inner = new SqliteStore(path.join(p.dataDir, "service", "flaky.db"));
        const failures: Record<string, number> = { finish: 2, events: 1 };
        let eventReads = 0;
        // The store fails `finish` twice and its second read of `events` (the stream's headers went out with the first), then recovers.
        const flaky = new Proxy(inner, {
            get(target, key) {
                const v = Reflect.get(target, key, target) as unknown;
                if (typeof v !== "function") return v;
                const name = String(key);
                return async (...args: unknown[]) => {
                    if (name === "events" && ++eventReads === 2) {
                        failures.events--;
                        throw new Error("database connection lost");
                    }
                    if (name === "finish" && failures.finish > 0) {
                        failures.finish--;
                        throw new Error("database connection lost");
                    }
                    return (v as (...a: unknown[]) => unknown).apply(target, args);
                };
            },
        });
        const flakyLogs: Record<string, unknown>[] = [];
        const second = new Service({ assembled: await p.runner(), store: flaky, replicaId: "flaky", log: (e) => flakyLogs.push(e), limits: { ratePerMinute: 100_000, burst: 1_000 } });
        const url = (await second.start(0)).url;
        try {
            const op = api(url, p.operatorToken);
            const hold = await op("POST", "/v1/hold", { app: "web", stage: "itg", reason: "flaky store" });
            assert.equal(hold.status, 202);
            const id = hold.body.requestId as string;
            // The event stream: its first read works, the next fails after the 200 went out; the stream ends, the service stays.
            const stream = await fetch(`${url}/v1/requests/${id}/events`, { headers: { authorization: `Bearer ${p.operatorToken}` } });
            assert.equal(stream.status, 200);
            await stream.text().catch(() => "");
            const done = await settle(op, id);
            assert.equal(done.state, "done", `the outcome was recorded once the store came back: ${JSON.stringify(done.error)}`);
            assert.equal(failures.finish, 0, "finish failed as planned");
            assert.equal(failures.events, 0, "the event stream's read failed as planned");
            assert.ok(flakyLogs.some((l) => l.msg === "answer failed after it started"), "the broken stream was logged");
            assert.ok(flakyLogs.some((l) => l.msg === "recording a request's outcome failed; retrying"), "the retry was logged");
            assert.equal((await api(url)("GET", "/healthz")).status, 200, "the service is still up");
            const release = await op("POST", "/v1/release", { app: "web", stage: "itg" });
            assert.equal((await settle(op, release.body.requestId as string)).state, "done");
        } finally {
            await second.stop();
        }
    });

    it("the queue's pump reads the pipeline once per 30 s, not at each of its 4 ticks a second", async function () {
        const assembled = await p.runner();
        let reads = 0;
        const runner = new Proxy(assembled.runner, {
            get(target, key) {
                const v = Reflect.get(target, key, target) as unknown;
                if (key === "pipelineStages") reads++;
                return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
            },
        });
        const quiet = new Service({ assembled: { ...assembled, runner }, store: new SqliteStore(path.join(p.dataDir, "service", "quiet.db")), replicaId: "quiet", log: () => undefined });
        await quiet.start(0);
        try {
            await new Promise((r) => setTimeout(r, 2_000));
        } finally {
            await quiet.stop();
        }
        assert.ok(reads >= 1, "the pump never asked which stages coalesce");
        assert.ok(reads <= 1, `the pipeline was read ${reads} times in 2 s`);
    });

    it("/readyz says which state backend and platform stack the replica uses", async function () {
        const ready = await api(base)("GET", "/readyz");
        assert.equal(ready.status, 200);
        assert.deepEqual(ready.body, { status: "ready", backend: { kind: "file", source: "embedded default" }, platformStack: "organization/gitops-stages/platform" }, "without a token: no URL");
        const withToken = await api(base, p.ciTokens.itg)("GET", "/readyz");
        assert.deepEqual(withToken.body, { status: "ready", backend: { kind: "file", source: "embedded default", url: `file://${path.join(p.dataDir, "state")}` }, platformStack: "organization/gitops-stages/platform" });
    });

    it("429 when a token exceeds its rate, with Retry-After", async function () {
        const assembled = await p.runner();
        const limited = new Service({ assembled, store: new SqliteStore(path.join(p.dir, "limited.db")), replicaId: "limited", log: () => undefined, limits: { ratePerMinute: 60, burst: 3 } });
        const { url } = await limited.start(0);
        try {
            const ci = api(url, p.ciTokens.itg);
            const answers = [];
            for (let i = 0; i < 5; i++) answers.push((await ci("GET", "/v1/openapi.json")).status, (await ci("GET", "/v1/requests/none")).status);
            assert.ok(answers.includes(429), JSON.stringify(answers));
            const r = await ci("GET", "/v1/requests/none");
            assert.equal(r.status, 429);
            assert.ok(Number(r.headers.get("retry-after")) >= 1);
            assert.equal((r.body.error as { kind: string }).kind, "rate-limited");
        } finally {
            await limited.stop();
        }
    });

    it("100 concurrent promotions for several apps and stages: all final, the ops repo equals a serial order, one commit per executed update", async function () {
        const op = api(base, p.operatorToken);
        // Two apps already in itg, promoted to tst by ten requests each (duplicates become no-ops).
        for (const app of ["p1", "p2"]) {
            const r = await op("POST", "/v1/promote", promoteBody(app, "1.0.0", "itg", { image: `registry.example/${app}:1.0.0`, bundle: upload(app) }));
            assert.equal((await settle(op, r.body.requestId as string)).state, "done");
        }
        const before = Number(p.git("rev-list", "--count", "main"));
        const sends: Promise<{ status: number; body: Record<string, unknown> }>[] = [];
        const apps = ["c1", "c2", "c3", "c4"];
        for (let v = 0; v < 20; v++) {
            for (const app of apps) {
                sends.push(op("POST", "/v1/promote", promoteBody(app, `1.${v}.0`, "itg", { image: `registry.example/${app}:1.${v}.0`, bundle: upload(app, v + 1) })));
            }
        }
        for (let i = 0; i < 10; i++) for (const app of ["p1", "p2"]) sends.push(op("POST", "/v1/promote", promoteBody(app, "1.0.0", "tst", { reason: `copy ${i}` })));
        const accepted = await Promise.all(sends);
        assert.equal(accepted.length, 100);
        for (const a of accepted) assert.equal(a.status, 202, JSON.stringify(a.body));
        const finals = await Promise.all(accepted.map((a) => settle(op, a.body.requestId as string, 900_000)));
        const states = finals.map((f) => f.state);
        assert.ok(states.every((s) => s === "done" || s === "superseded"), `${JSON.stringify(states)}\nfailed: ${JSON.stringify(finals.filter((f) => f.state === "failed").map((f) => f.error))}`);
        const superseded = finals.filter((f) => f.state === "superseded");
        for (const s of superseded) assert.match(String((s.result as { supersededBy: string }).supersededBy), /^r-/);
        // itg: each app runs the version of its last executed request.
        const ledger = parseLedger(p.git("show", "main:environments/itg/releases.json"));
        for (const app of apps) {
            const executed = finals.filter((f) => f.state === "done" && (f.result as { app: string }).app === app).sort((a, b) => String(a.finishedAt).localeCompare(String(b.finishedAt)));
            assert.ok(executed.length >= 1, `${app}: nothing executed`);
            assert.equal(ledger[app].version, (executed[executed.length - 1].result as { version: string }).version, `${app}: not the last executed version`);
        }
        const tst = parseLedger(p.git("show", "main:environments/tst/releases.json"));
        assert.equal(tst.p1.version, "1.0.0");
        assert.equal(tst.p2.version, "1.0.0");
        // One promotion commit per executed update, one publish commit per published version, nothing else.
        const changed = finals.filter((f) => f.state === "done" && (f.result as { state: string }).state === "done");
        const published = finals.filter((f) => (f.result as { publishCommit?: string })?.publishCommit);
        const subjects = p.git("log", "--format=%s", `HEAD~${Number(p.git("rev-list", "--count", "main")) - before}..HEAD`).split("\n");
        assert.equal(subjects.length, changed.length + published.length, subjects.join("\n"));
        assert.equal(subjects.filter((s) => /^Promote p[12] 1\.0\.0 to tst/.test(s)).length, 2);
        for (const f of changed) {
            const r = f.result as { app: string; version: string; stage: string; requestId: string };
            assert.equal(subjects.filter((s) => s === `Promote ${r.app} ${r.version} to ${r.stage} (request ${r.requestId})`).length, 1, `${r.app} ${r.version}`);
        }
    });

    it("secrets over HTTP: values as base64 in, key names out, one commit; CI tokens refused", async function () {
        const key = path.join(p.dir, "controller.key");
        const cert = path.join(p.dir, "controller.crt");
        execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=controller"], { stdio: "ignore" });
        const value = plant(`pw-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
        const body = { app: "web", stage: "tst", values: { PASSWORD: Buffer.from(value).toString("base64") }, certificate: fs.readFileSync(cert, "utf8") };
        const denied = await api(base, p.ciTokens.tst)("POST", "/v1/secrets/set", body);
        assert.equal(denied.status, 403);
        const before = Number(p.git("rev-list", "--count", "main"));
        const r = await api(base, p.operatorToken)("POST", "/v1/secrets/set", body);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual((r.body.secrets as { name: string; keys: string[] }[]).map((x) => [x.name, x.keys]), [["web", ["PASSWORD"]]]);
        assert.equal(Number(p.git("rev-list", "--count", "main")), before + 1);
        // The commit, the answer and the request log name one request.
        const requestId = r.body.requestId as string;
        assert.match(p.git("log", "-1", "--format=%B", "main"), new RegExp(`^Request-Id: ${requestId}$`, "m"));
        const recorded = await api(base, p.operatorToken)("GET", `/v1/requests/${requestId}`);
        assert.equal(recorded.status, 200, JSON.stringify(recorded.body));
        assert.equal(recorded.body.verb, "secret-set");
        assert.equal(recorded.body.state, "done");
        assert.ok(!JSON.stringify(r.body).includes(value) && !JSON.stringify(r.body).includes(body.values.PASSWORD));
        assert.ok(!p.git("log", "--all", "-p").includes(value));
        assert.ok(!JSON.stringify(logs).includes(body.values.PASSWORD), "the value reached the service's log");
        const bad = await api(base, p.operatorToken)("POST", "/v1/secrets/set", { ...body, values: { PASSWORD: "not base64!" } });
        assert.equal(bad.status, 400);
        assert.match((bad.body.error as { message: string }).message, /values\.PASSWORD: must be base64/);
    });

    it("the status page in headless Chromium: load, read the table, follow a history entry (screenshot kept in test-artifacts/)", async function () {
        const executablePath = "/usr/bin/chromium";
        assert.ok(fs.existsSync(executablePath), "Chromium is not installed (Debian package chromium): `npm test` installs it");
        const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
        try {
            const page = await browser.newPage();
            await page.goto(base + "/");
            await page.fill("#token", p.operatorToken);
            await page.click("button[type=submit]");
            await page.waitForSelector("#pipeline tbody tr");
            const header = await page.$$eval("#pipeline thead th", (ths) => ths.map((t) => t.textContent));
            assert.deepEqual(header, ["app", "itg", "tst", "perf", "prod"]);
            const rows = await page.$$eval("#pipeline tbody tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
            const web = rows.find((r) => r[0] === "web");
            assert.deepEqual(web, ["web", "1.0.0", "-", "-", "-"]);
            // Rendered to files, there is no Argo CD: the deployed row says so, never a success.
            assert.deepEqual(rows.find((r) => r[0] === "(deployed)"), ["(deployed)", "unknown", "unknown", "unknown", "unknown"]);
            assert.match(String(await page.getAttribute("#pipeline tr.deployed td", "title")), /^live state unknown: no Argo CD configured/);
            const p1 = rows.find((r) => r[0] === "p1");
            assert.deepEqual(p1?.slice(0, 3), ["p1", "1.0.0", "1.0.0"]);
            await page.waitForSelector("ul.history[data-stage=tst] a");
            // The entry shows the commit it wrote; following it shows that commit from the ops repo.
            const shortSha = await page.textContent("ul.history[data-stage=tst] li code.commit");
            await page.click("ul.history[data-stage=tst] a");
            await page.locator("#detail-text", { hasText: /^commit [0-9a-f]{40}\n/ }).waitFor();
            const detail = String(await page.textContent("#detail-text"));
            const sha = /^commit ([0-9a-f]{40})/.exec(detail)![1];
            assert.equal(sha.slice(0, 12), shortSha);
            assert.match(p.git("log", "-1", "--format=%s", sha), /^Promote p[12] 1\.0\.0 to tst \(request r-/);
            assert.match(detail, /\nPromote p[12] 1\.0\.0 to tst \(request r-/);
            assert.match(detail, /\nM\tenvironments\/tst\/releases\.json\n/);
            assert.match(detail, /^\+.*"1\.0\.0"/m);
            assert.equal(await page.textContent("#detail-title"), `Ops repo commit ${sha}`);
            const artifacts = path.join(repoRoot, "test-artifacts");
            fs.mkdirSync(artifacts, { recursive: true });
            await page.screenshot({ path: path.join(artifacts, "status-page.png"), fullPage: true });
            assert.ok(fs.statSync(path.join(artifacts, "status-page.png")).size > 1000);
            // The token never appears in the page's address or storage beyond this tab's session.
            assert.ok(!page.url().includes(p.operatorToken));
        } finally {
            await browser.close();
        }
    });

    it("the client script CI runs promotes through the real service and exits with the CLI's codes", async function () {
        const script = path.join(p.dir, "ci.js");
        fs.writeFileSync(script, ciClientScript());
        const env = { ...process.env, GITOPS_STAGES_URL: base, GITOPS_STAGES_TOKEN: p.ciTokens.tst };
        const run = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => execFile(process.execPath, [script, ...args], { env }, (e, stdout, stderr) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, stdout, stderr })));
        const ok = await run(["promote", "web@1.0.0", "--to", "tst", "--commit", COMMIT]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(JSON.parse(ok.stdout).state, "done");
        assert.equal(parseLedger(p.git("show", "main:environments/tst/releases.json")).web.version, "1.0.0");
        const missing = await run(["promote", "nothing@9.9.9", "--to", "tst", "--commit", COMMIT]);
        assert.equal(missing.code, 4, missing.stderr);
        const itgVersion = parseLedger(p.git("show", "main:environments/itg/releases.json")).c1.version;
        env.GITOPS_STAGES_TOKEN = p.ciTokens.perf;
        const refused = await run(["promote", `c1@${itgVersion}`, "--to", "perf", "--commit", COMMIT]);
        assert.equal(refused.code, 3, refused.stderr);
        assert.match(refused.stderr, /refused \(stage-order\)/);
    });
});
