/**
 * Every endpoint of the service, driven in process through its request listener (no socket), on
 * the real engine and a real ops repo: success, 400 naming the field and the rule, 401, 403, 404,
 * 409 with the policy reason and 429, route by route. The routes come from the served OpenAPI
 * document, so a route added without its cases here fails this test, and every status observed
 * must be one the document declares for that route.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { bundleFiles } from "../../src/cli/ci";
import { parseLedger } from "../../src/program/stage/files";
import { Service } from "../../src/service/server";
import { SqliteStore } from "../../src/service/sqlite-store";
import { makeBundleDir } from "../support/fixtures";
import { plant } from "../support/planted";
import { Pipeline, bootstrapPipeline, injectApi, settle } from "../support/service";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

type Call = ReturnType<typeof injectApi>;
type Answer = Awaited<ReturnType<Call>>;

interface Operation {
    readonly "x-right"?: string;
    readonly requestBody?: unknown;
    readonly parameters?: { name: string; in: string; required?: boolean }[];
    readonly responses: Record<string, unknown>;
}

describe("every endpoint, in process: success, 400, 401, 403, 404, 409, 429", function () {
    let p: Pipeline;
    let service: Service;
    let limited: Service;
    let op: Call;
    let outsider: Call;
    let anonymous: Call;
    let doc: { paths: Record<string, Record<string, Operation>> };
    const outsiderToken = plant(`outsider-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`);
    /** Route (as the document names it) -> statuses seen. */
    const seen = new Map<string, Set<number>>();

    /** Calls a route and checks the status; for errors, that the body is the error shape and names what it should. */
    async function expect(route: string, call: Call, method: string, url: string, body: unknown, status: number, message?: RegExp): Promise<Answer> {
        const r = await call(method, url, body);
        assert.equal(r.status, status, `${method} ${url}: ${JSON.stringify(r.body)}`);
        if (status >= 400) {
            const error = r.body.error as { kind?: string; message?: string; requestId?: string } | undefined;
            assert.ok(error?.kind && error.message && error.requestId, `${method} ${url}: not an error body: ${JSON.stringify(r.body)}`);
            if (message) assert.match(error.message, message, `${method} ${url}`);
        }
        const declared = doc.paths[route.slice(route.indexOf(" ") + 1)]?.[route.slice(0, route.indexOf(" ")).toLowerCase()];
        assert.ok(declared, `${route} is not in the OpenAPI document`);
        assert.ok(String(status) in declared.responses, `${route} answered ${status}, which its OpenAPI entry does not declare`);
        if (!seen.has(route)) seen.set(route, new Set());
        seen.get(route)!.add(status);
        return r;
    }

    async function done(r: Answer): Promise<Record<string, unknown>> {
        const final = await settle(op, r.body.requestId as string);
        assert.equal(final.state, "done", JSON.stringify(final.error ?? final));
        return final;
    }

    const promote = (app: string, version: string, to: string, extra: Record<string, unknown> = {}) => ({ app, version, to, requester: "ci", source: { commit: COMMIT }, ...extra });
    const upload = (app: string, replicas = 1) => bundleFiles(makeBundleDir(p.dir, app, { replicas }));

    before(async function () {
        p = await bootstrapPipeline("gitops-stages-endpoints-", undefined, [{ name: "outsider", token: outsiderToken, rights: [{ stages: ["perf"], verbs: ["status"] }] }]);
        const assembled = await p.runner();
        service = new Service({ assembled, store: new SqliteStore(path.join(p.dataDir, "service", "requests.db")), replicaId: "inject", log: () => undefined, limits: { ratePerMinute: 100_000, burst: 1_000 } });
        await service.open();
        // A second service whose tokens may make one call a minute, for the 429 of every route.
        limited = new Service({ assembled, store: new SqliteStore(path.join(p.dir, "limited.db")), replicaId: "limited", log: () => undefined, limits: { ratePerMinute: 1, burst: 1 } });
        await limited.open();
        op = injectApi(service, p.operatorToken);
        outsider = injectApi(service, outsiderToken);
        anonymous = injectApi(service);
        doc = (await anonymous("GET", "/v1/openapi.json")).body as unknown as typeof doc;
    });

    after(async function () {
        await service?.stop();
        await limited?.stop();
        p?.dispose();
    });

    it("promote and preview: 202 and done, 400, 401, 403, 404, 409 stage order", async function () {
        const first = await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "1.0.0", "itg", { image: "registry.example/web:1.0.0", bundle: upload("web") }), 202);
        const result = (await done(first)).result as { opsCommit: string; version: string };
        assert.equal(result.opsCommit, p.git("rev-parse", "main"));
        await expect("POST /v1/promote", op, "POST", "/v1/promote", { ...promote("web", "1.0.0", "itg"), force: true }, 400, /force: is not a known setting/);
        await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "01.0", "itg"), 400, /version = "01\.0": must be a semantic version/);
        await expect("POST /v1/promote", anonymous, "POST", "/v1/promote", promote("web", "1.0.0", "tst"), 401);
        await expect("POST /v1/promote", outsider, "POST", "/v1/promote", promote("web", "1.0.0", "tst"), 403, /not allowed to promote in stage tst/);
        await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "1.0.0", "nowhere"), 404, /unknown stage "nowhere"/);
        const skip = await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "1.0.0", "perf"), 409);
        assert.equal((skip.body.error as { reason: string }).reason, "stage-order");

        const preview = await expect("POST /v1/preview", op, "POST", "/v1/preview", promote("web", "1.0.0", "tst"), 202);
        const previewed = (await done(preview)).result as { state: string };
        assert.equal(previewed.state, "dry-run");
        await expect("POST /v1/preview", op, "POST", "/v1/preview", { ...promote("web", "1.0.0", "tst"), dryRun: true }, 400, /dryRun: is not a known setting/);
        await expect("POST /v1/preview", anonymous, "POST", "/v1/preview", promote("web", "1.0.0", "tst"), 401);
        await expect("POST /v1/preview", outsider, "POST", "/v1/preview", promote("web", "1.0.0", "tst"), 403, /not allowed to preview/);
        await expect("POST /v1/preview", op, "POST", "/v1/preview", promote("web", "1.0.0", "nowhere"), 404);
        const skipped = await expect("POST /v1/preview", op, "POST", "/v1/preview", promote("web", "1.0.0", "prod"), 409);
        assert.equal((skipped.body.error as { reason: string }).reason, "stage-order");
    });

    it("hold, release, rollback: 202 and done, 400, 401, 403, 404, 409 hold", async function () {
        await done(await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "1.1.0", "itg", { image: "registry.example/web:1.1.0", bundle: upload("web", 2) }), 202));
        const hold = { app: "web", stage: "itg", requester: "ops", reason: "incident" };
        await done(await expect("POST /v1/hold", op, "POST", "/v1/hold", hold, 202));
        const held = await expect("POST /v1/promote", op, "POST", "/v1/promote", promote("web", "1.0.0", "itg"), 409);
        assert.equal((held.body.error as { reason: string }).reason, "hold");
        await expect("POST /v1/hold", op, "POST", "/v1/hold", { ...hold, stage: "Itg" }, 400, /stage = "Itg": must be/);
        await expect("POST /v1/hold", anonymous, "POST", "/v1/hold", hold, 401);
        await expect("POST /v1/hold", outsider, "POST", "/v1/hold", hold, 403, /not allowed to hold/);
        await done(await expect("POST /v1/release", op, "POST", "/v1/release", hold, 202));
        await expect("POST /v1/release", op, "POST", "/v1/release", { ...hold, until: "never" }, 400, /until: is not a known setting/);
        await expect("POST /v1/release", anonymous, "POST", "/v1/release", hold, 401);
        await expect("POST /v1/release", outsider, "POST", "/v1/release", hold, 403);

        const back = await done(await expect("POST /v1/rollback", op, "POST", "/v1/rollback", { app: "web", stage: "itg", requester: "ops", reason: "bad release" }, 202));
        assert.equal((back.result as { version: string }).version, "1.0.0");
        assert.equal(parseLedger(p.git("show", "main:environments/itg/releases.json")).web.version, "1.0.0");
        await expect("POST /v1/rollback", op, "POST", "/v1/rollback", { app: "web", stage: "itg", requester: "ops", to: "latest" }, 400, /to = "latest": must be a semantic version/);
        await expect("POST /v1/rollback", anonymous, "POST", "/v1/rollback", { app: "web", stage: "itg", requester: "ops" }, 401);
        await expect("POST /v1/rollback", outsider, "POST", "/v1/rollback", { app: "web", stage: "itg", requester: "ops" }, 403, /not allowed to rollback/);
    });

    it("status and history: 200, 400, 401, 403, 404", async function () {
        const status = await expect("GET /v1/status", op, "GET", "/v1/status?stage=itg", undefined, 200);
        assert.equal((status.body as unknown as { apps: Record<string, { version: string }> }[])[0].apps.web.version, "1.0.0");
        await expect("GET /v1/status", op, "GET", "/v1/status?stage=no-such", undefined, 404, /unknown stage "no-such"/);
        await expect("GET /v1/status", op, "GET", "/v1/status?stage=../etc", undefined, 400, /stage/);
        await expect("GET /v1/status", anonymous, "GET", "/v1/status", undefined, 401);
        await expect("GET /v1/status", outsider, "GET", "/v1/status?stage=itg", undefined, 403, /not allowed to status in stage itg/);
        // The outsider may read perf's status: its grant works, and nothing else.
        await expect("GET /v1/status", outsider, "GET", "/v1/status?stage=perf", undefined, 200);
        // Rendered to files, the platform has no Argo CD: the rows say so instead of failing.
        assert.equal((status.body as unknown as { deployment: { state: string; reason: string } }[])[0].deployment.reason, "render");

        const deployments = "GET /v1/deployments/{stage}";
        const deployment = await expect(deployments, op, "GET", "/v1/deployments/itg?refresh=true", undefined, 200);
        assert.equal(deployment.body.state, "unknown");
        assert.match(String(deployment.body.message), /^live state unknown: no Argo CD configured \(the platform renders Kubernetes to files\)$/);
        await expect(deployments, op, "GET", "/v1/deployments/no-such", undefined, 404, /unknown stage "no-such"/);
        await expect(deployments, op, "GET", "/v1/deployments/BAD_NAME", undefined, 400, /stage = "BAD_NAME": must be/);
        await expect(deployments, op, "GET", "/v1/deployments/itg?refresh=yes", undefined, 400, /refresh = "yes": must be one of "true", "false"/);
        // A release the stage does not hold could never be deployed there: 404 at once, not a wait.
        await expect(deployments, op, "GET", "/v1/deployments/itg?release=web@9.9.9", undefined, 404, /web@9\.9\.9 is not what stage itg holds/);
        await expect(deployments, op, "GET", "/v1/deployments/itg?release=web", undefined, 400, /release = "web": must be <app>@<version>/);
        await expect(deployments, anonymous, "GET", "/v1/deployments/itg", undefined, 401);
        await expect(deployments, outsider, "GET", "/v1/deployments/itg", undefined, 403, /not allowed to status in stage itg/);
        // The watch's records: none here (rendered to files, nothing is deployed to observe).
        const records = "GET /v1/deployments/{stage}/records";
        assert.deepEqual((await expect(records, op, "GET", "/v1/deployments/itg/records", undefined, 200)).body, []);
        await expect(records, op, "GET", "/v1/deployments/no-such/records", undefined, 404, /unknown stage "no-such"/);
        await expect(records, op, "GET", "/v1/deployments/BAD_NAME/records", undefined, 400, /stage = "BAD_NAME": must be/);
        await expect(records, anonymous, "GET", "/v1/deployments/itg/records", undefined, 401);
        await expect(records, outsider, "GET", "/v1/deployments/itg/records", undefined, 403, /not allowed to status in stage itg/);

        const history = await expect("GET /v1/history/{stage}", op, "GET", "/v1/history/itg", undefined, 200);
        const entries = history.body as unknown as { kind: string; change?: { kind: string; app: string; version?: string } }[];
        // Newest first: the rollback, the release and the hold of the test before, then the promotions.
        assert.deepEqual(entries.filter((e) => e.change).slice(0, 5).map((e) => `${e.change!.kind} ${e.change!.version ?? ""}`.trim()), ["rollback 1.0.0", "release", "hold", "promote 1.1.0", "promote 1.0.0"]);
        await expect("GET /v1/history/{stage}", op, "GET", "/v1/history/no-such", undefined, 404, /unknown stage/);
        await expect("GET /v1/history/{stage}", anonymous, "GET", "/v1/history/itg", undefined, 401);
        await expect("GET /v1/history/{stage}", outsider, "GET", "/v1/history/itg", undefined, 403, /not allowed to history/);
        await expect("GET /v1/history/{stage}", op, "GET", "/v1/history/BAD_NAME", undefined, 400, /stage = "BAD_NAME": must be/);

        // Each update links to its ops repo commit; the commit is served to those who may read the stage's history.
        const rollback = (history.body as unknown as { change?: { kind: string }; opsCommit?: string }[]).find((e) => e.change?.kind === "rollback")!;
        assert.match(String(rollback.opsCommit), /^[0-9a-f]{40}$/);
        const route = "GET /v1/history/{stage}/commits/{commit}";
        const shown = await expect(route, op, "GET", `/v1/history/itg/commits/${rollback.opsCommit}`, undefined, 200);
        assert.match(String(shown.body.subject), /^Roll back web 1\.0\.0 to itg/);
        assert.deepEqual(shown.body.files, ["Chart.yaml", "releases.json", "values.yaml"].map((f) => ({ status: "M", path: `environments/itg/${f}` })));
        assert.match(String(shown.body.patch), /^-.*1\.1\.0/m);
        await expect(route, op, "GET", `/v1/history/tst/commits/${rollback.opsCommit}`, undefined, 404, /no commit/);
        await expect(route, op, "GET", "/v1/history/itg/commits/main~1", undefined, 400, /commit = "main~1": must be a git commit id/);
        await expect(route, anonymous, "GET", `/v1/history/itg/commits/${rollback.opsCommit}`, undefined, 401);
        await expect(route, outsider, "GET", `/v1/history/itg/commits/${rollback.opsCommit}`, undefined, 403, /not allowed to history/);
    });

    it("approve: 200, 400, 401, 403 for a non-owner, 409 on a stage that needs no approval", async function () {
        const approved = await expect("POST /v1/approve", op, "POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }, 200);
        assert.equal(approved.body.stage, "prod");
        assert.equal(approved.body.by, "operator");
        await expect("POST /v1/approve", op, "POST", "/v1/approve", { app: "web", version: "1.0.0" }, 400, /stage/);
        await expect("POST /v1/approve", anonymous, "POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }, 401);
        await expect("POST /v1/approve", outsider, "POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }, 403, /not allowed to approve/);
        const needless = await expect("POST /v1/approve", op, "POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "itg" }, 409);
        assert.equal((needless.body.error as { reason: string }).reason, "no-approval");
    });

    it("drift and merge-request environments: 202 and done, 400, 401, 403", async function () {
        const drift = await done(await expect("POST /v1/drift", op, "POST", "/v1/drift", { stage: "itg" }, 202));
        assert.deepEqual((drift.result as { stack: string }[]).map((d) => d.stack), ["itg"]);
        await expect("POST /v1/drift", op, "POST", "/v1/drift", { stage: "itg", deep: true }, 400, /deep: is not a known setting/);
        await expect("POST /v1/drift", anonymous, "POST", "/v1/drift", { stage: "itg" }, 401);
        await expect("POST /v1/drift", outsider, "POST", "/v1/drift", { stage: "itg" }, 403, /not allowed to drift/);

        const mr = { mr: 7, app: "web", bundle: upload("web"), image: "registry.example/web:mr-7", sourceCommit: "abcdef0", requester: "ci" };
        const deployed = await done(await expect("POST /v1/mr/deploy", op, "POST", "/v1/mr/deploy", mr, 202));
        assert.equal((deployed.result as { namespace: string }).namespace, "mr-7");
        await expect("POST /v1/mr/deploy", op, "POST", "/v1/mr/deploy", { ...mr, mr: 0 }, 400, /mr = 0: must be/);
        await expect("POST /v1/mr/deploy", anonymous, "POST", "/v1/mr/deploy", mr, 401);
        await expect("POST /v1/mr/deploy", outsider, "POST", "/v1/mr/deploy", mr, 403, /not allowed to mr/);
        await done(await expect("POST /v1/mr/reap", op, "POST", "/v1/mr/reap", { requester: "ci" }, 202));
        await expect("POST /v1/mr/reap", op, "POST", "/v1/mr/reap", { requester: "ci", all: true }, 400, /all: is not a known setting/);
        await expect("POST /v1/mr/reap", anonymous, "POST", "/v1/mr/reap", { requester: "ci" }, 401);
        await expect("POST /v1/mr/reap", outsider, "POST", "/v1/mr/reap", { requester: "ci" }, 403);
        await done(await expect("POST /v1/mr/destroy", op, "POST", "/v1/mr/destroy", { mr: 7, requester: "ci" }, 202));
        await expect("POST /v1/mr/destroy", op, "POST", "/v1/mr/destroy", { requester: "ci" }, 400, /mr: is required/);
        await expect("POST /v1/mr/destroy", anonymous, "POST", "/v1/mr/destroy", { mr: 7, requester: "ci" }, 401);
        await expect("POST /v1/mr/destroy", outsider, "POST", "/v1/mr/destroy", { mr: 7, requester: "ci" }, 403);
    });

    it("secrets: set, list, rm, reseal: 200, 400, 401, 403, 404", async function () {
        const key = path.join(p.dir, "controller.key");
        const cert = path.join(p.dir, "controller.crt");
        const newKey = path.join(p.dir, "controller-2.key");
        const newCert = path.join(p.dir, "controller-2.crt");
        for (const [k, c] of [[key, cert], [newKey, newCert]]) execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-out", c, "-days", "2", "-subj", "/CN=controller"], { stdio: "ignore" });
        const value = plant(`endpoint-secret-${Math.random().toString(36).slice(2)}`);
        const set = { app: "web", stage: "tst", values: { PASSWORD: Buffer.from(value).toString("base64"), USER: Buffer.from("app").toString("base64") }, certificate: fs.readFileSync(cert, "utf8") };
        const sealed = await expect("POST /v1/secrets/set", op, "POST", "/v1/secrets/set", set, 200);
        assert.deepEqual((sealed.body.secrets as { keys: string[] }[])[0].keys, ["PASSWORD", "USER"]);
        await expect("POST /v1/secrets/set", op, "POST", "/v1/secrets/set", { ...set, scope: "everywhere" }, 400, /scope = "everywhere": must be one of "strict", "namespace-wide", "cluster-wide"/);
        await expect("POST /v1/secrets/set", anonymous, "POST", "/v1/secrets/set", set, 401);
        await expect("POST /v1/secrets/set", outsider, "POST", "/v1/secrets/set", set, 403, /not allowed to secrets/);

        const list = await expect("GET /v1/secrets", op, "GET", "/v1/secrets?stage=tst", undefined, 200);
        assert.ok(!JSON.stringify(list.body).includes(value));
        assert.deepEqual((list.body.secrets as { keys: string[] }[]).map((s) => s.keys), [["PASSWORD", "USER"]]);
        await expect("GET /v1/secrets", op, "GET", "/v1/secrets", undefined, 400, /\(1 problem\):\n {2}stage: is required$/);
        await expect("GET /v1/secrets", anonymous, "GET", "/v1/secrets?stage=tst", undefined, 401);
        await expect("GET /v1/secrets", outsider, "GET", "/v1/secrets?stage=tst", undefined, 403);

        const resealed = await expect("POST /v1/secrets/reseal", op, "POST", "/v1/secrets/reseal", { stage: "tst", certificate: fs.readFileSync(newCert, "utf8"), privateKeys: [fs.readFileSync(key, "utf8")], reason: "controller key rotated" }, 200);
        assert.ok(!JSON.stringify(resealed.body).includes(value));
        assert.match(p.git("log", "-1", "--format=%B", "main"), /\ncontroller key rotated\n/, "the reason did not reach the commit");
        await expect("POST /v1/secrets/reseal", op, "POST", "/v1/secrets/reseal", { stage: "tst", privateKeys: "one" }, 400, /privateKeys/);
        await expect("POST /v1/secrets/reseal", anonymous, "POST", "/v1/secrets/reseal", { stage: "tst" }, 401);
        await expect("POST /v1/secrets/reseal", outsider, "POST", "/v1/secrets/reseal", { stage: "tst" }, 403);

        await expect("POST /v1/secrets/rm", op, "POST", "/v1/secrets/rm", { app: "web", stage: "tst", name: "web", keys: ["USER"] }, 200);
        await expect("POST /v1/secrets/rm", op, "POST", "/v1/secrets/rm", { app: "web", stage: "tst", name: "web", keys: ["NO_SUCH"] }, 404, /NO_SUCH/);
        await expect("POST /v1/secrets/rm", op, "POST", "/v1/secrets/rm", { app: "web", stage: "tst", everything: true }, 400, /everything: is not a known setting/);
        await expect("POST /v1/secrets/rm", anonymous, "POST", "/v1/secrets/rm", { app: "web", stage: "tst" }, 401);
        await expect("POST /v1/secrets/rm", outsider, "POST", "/v1/secrets/rm", { app: "web", stage: "tst" }, 403);
        assert.ok(!p.git("log", "--all", "-p").includes(value), "a secret value reached the ops repo");
    });

    it("requests and their events: 200 for the requester, 404 for anyone else and for none, 401, 400", async function () {
        const accepted = await op("POST", "/v1/preview", promote("web", "1.0.0", "tst"));
        const id = accepted.body.requestId as string;
        await done(accepted);
        const rec = await expect("GET /v1/requests/{id}", op, "GET", `/v1/requests/${id}`, undefined, 200);
        assert.equal(rec.body.requestId, id);
        await expect("GET /v1/requests/{id}", outsider, "GET", `/v1/requests/${id}`, undefined, 404, new RegExp(`no request ${id}`));
        await expect("GET /v1/requests/{id}", op, "GET", "/v1/requests/r-none", undefined, 404);
        await expect("GET /v1/requests/{id}", anonymous, "GET", `/v1/requests/${id}`, undefined, 401);
        await expect("GET /v1/requests/{id}", op, "GET", `/v1/requests/${"x".repeat(200)}`, undefined, 400, /id/);
        const events = await expect("GET /v1/requests/{id}/events", op, "GET", `/v1/requests/${id}/events`, undefined, 200);
        assert.equal(events.headers.get("content-type"), "text/event-stream");
        assert.match(String(events.body.text), /event: state\ndata: .*"state":"running"[\s\S]*event: end\n/);
        await expect("GET /v1/requests/{id}/events", outsider, "GET", `/v1/requests/${id}/events`, undefined, 404);
        await expect("GET /v1/requests/{id}/events", anonymous, "GET", `/v1/requests/${id}/events`, undefined, 401);
        await expect("GET /v1/requests/{id}/events", op, "GET", `/v1/requests/${"x".repeat(200)}/events`, undefined, 400, /id/);
    });

    it("429 on every route once a token has used its rate, with Retry-After, before any other check", async function () {
        const routes = Object.entries(doc.paths).flatMap(([route, ops]) => Object.keys(ops).map((method) => [method.toUpperCase(), route] as const));
        const fast = injectApi(limited, p.operatorToken);
        // The one call of the minute.
        assert.equal((await fast("GET", "/v1/status?stage=itg")).status, 200);
        for (const [method, route] of routes.filter(([, r]) => r.startsWith("/v1/") && r !== "/v1/openapi.json")) {
            const url = route.replace("{stage}", "itg").replace("{id}", "r-none").replace("{commit}", "0123456");
            const r = await expect(`${method} ${route}`, fast, method, url, method === "POST" ? {} : undefined, 429, /too many requests for this token/);
            assert.ok(Number(r.headers.get("retry-after")) >= 1, `${method} ${route}: no Retry-After`);
        }
    });

    it("the cases above cover every route of the OpenAPI document", function () {
        const missing: string[] = [];
        for (const [route, ops] of Object.entries(doc.paths)) {
            if (!route.startsWith("/v1/") || route === "/v1/openapi.json") continue;
            for (const [method, o] of Object.entries(ops)) {
                const name = `${method.toUpperCase()} ${route}`;
                const got = seen.get(name) ?? new Set<number>();
                const wanted = [401, 429];
                if (o["x-right"]) wanted.push(403);
                if (o.requestBody || o.parameters?.some((x) => x.required)) wanted.push(400);
                if (o.parameters?.some((x) => x.in === "path")) wanted.push(404);
                if (![200, 202].some((s) => got.has(s))) missing.push(`${name}: no success`);
                for (const s of wanted) if (!got.has(s)) missing.push(`${name}: no ${s}`);
            }
        }
        assert.deepEqual(missing, []);
        const all = new Set([...seen.values()].flatMap((s) => [...s]));
        for (const s of [200, 202, 400, 401, 403, 404, 409, 429]) assert.ok(all.has(s), `no route answered ${s}`);
    });
});
