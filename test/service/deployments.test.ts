/**
 * The service's watch of what Argo CD deployed: which stages it records (pure), and how a record
 * becomes GitHub Deployments on the dev repo, against a stand-in of GitHub's REST API on loopback
 * (the calls and bodies GitHub documents for `POST /repos/{owner}/{repo}/deployments` and
 * `.../deployments/{id}/statuses`), with the one GitHub client's retries and token scrubbing.
 */
import * as assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

import { GitHubError, GitHubRest } from "../../src/github/rest";
import type { Deployment } from "../../src/runner/deployed";
import type { StatusRow } from "../../src/runner/runner";
import { observations, reportObservation } from "../../src/service/deployments";

const C = "c".repeat(40);
const SRC = "5".repeat(40);
const TOKEN = "ghs_watchtoken123";

function row(stage: string, deployment: Partial<Deployment> & { state: Deployment["state"] }, apps: StatusRow["apps"] = {}): StatusRow {
    return { stage, apps, lastChange: null, deployment: { message: `${deployment.state} now`, ...deployment } };
}
const release = (version: string, sourceCommit?: string) => ({ version, requestId: "r-1", requester: "ci", promotedAt: "2026-12-06T00:00:00Z", ...(sourceCommit ? { sourceCommit } : {}) });

describe("the deployment watch", function () {
    it("records a stage's last commit once deployed or failed, keyed by stage, commit and outcome; nothing for pending, synced, syncing or unknown", function () {
        const rows = [
            row("itg", { state: "deployed", commit: C, operationBy: "automated" }, { web: release("1.2.0", SRC) }),
            row("tst", { state: "pending", commit: C, waitingFor: ["tst-owners"] }),
            row("perf", { state: "synced", commit: C }),
            row("prod", { state: "failed", commit: C, operationBy: "prod-owner" }, { web: release("1.1.0") }),
            row("dr", { state: "unknown", reason: "render" }),
        ];
        const obs = observations(rows);
        assert.deepEqual(
            obs.map((o) => [o.stage, o.state, o.key, o.by, o.last]),
            [
                ["itg", "deployed", `deployment:itg:${C}:deployed`, "automated", false],
                ["prod", "failed", `deployment:prod:${C}:failed`, "prod-owner", false],
            ],
        );
        assert.deepEqual(obs[0].apps, { web: { version: "1.2.0", sourceCommit: SRC } });
        // The key fits the request log's idempotency keys (128 characters at most), even for a 63-character stage.
        const long = observations([row("s".repeat(63), { state: "deployed", commit: C })])[0];
        assert.ok(long.key.length <= 128, `${long.key.length}`);
    });

    describe("on GitHub", function () {
        let server: http.Server;
        let api: string;
        const calls: { method: string; url: string; auth?: string; body: Record<string, unknown> }[] = [];
        let failFirst = 0;

        before(async function () {
            let next = 100;
            server = http.createServer((req, res) => {
                let text = "";
                req.on("data", (b: Buffer) => (text += b.toString()));
                req.on("end", () => {
                    calls.push({ method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
                    if (failFirst > 0) {
                        failFirst--;
                        return res.writeHead(502, { "content-type": "application/json" }).end(`{"message":"bad gateway for ${TOKEN}"}`);
                    }
                    if (req.url === "/repos/acme/missing/deployments") return res.writeHead(404, { "content-type": "application/json" }).end('{"message":"Not Found"}');
                    if (req.method === "POST" && /^\/repos\/acme\/shop\/deployments$/.test(req.url ?? "")) return res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ id: next++, url: "x" }));
                    if (req.method === "POST" && /^\/repos\/acme\/shop\/deployments\/\d+\/statuses$/.test(req.url ?? "")) return res.writeHead(201, { "content-type": "application/json" }).end('{"id":1}');
                    res.writeHead(404).end("{}");
                });
            });
            await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
            api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        });
        after(() => new Promise<void>((r) => server.close(() => r())));
        beforeEach(() => (calls.length = 0));

        it("a deployed stage becomes one Deployment per app release with a known source commit, to the stage's environment, with a success status and the release in its payload", async function () {
            const [o] = observations([row("tst", { state: "deployed", commit: C, operationBy: "tst-owner" }, { web: release("1.2.0", SRC), legacy: release("0.9.0") })]);
            const rest = new GitHubRest(TOKEN, { pauseMs: 1 });
            const r = await reportObservation(o, { dev: { api, repository: "acme/shop" }, rest });
            assert.deepEqual(r.githubDeployments, [{ app: "web", version: "1.2.0", ref: SRC, id: 100 }]);
            assert.deepEqual(calls.map((c) => `${c.method} ${c.url}`), ["POST /repos/acme/shop/deployments", "POST /repos/acme/shop/deployments/100/statuses"]);
            assert.ok(calls.every((c) => c.auth === `Bearer ${TOKEN}`));
            const d = calls[0].body;
            assert.equal(d.ref, SRC);
            assert.equal(d.environment, "tst");
            assert.deepEqual(d.payload, { app: "web", version: "1.2.0", opsCommit: C });
            assert.equal(d.auto_merge, false);
            assert.deepEqual(d.required_contexts, []);
            assert.match(String(d.description), /^web 1\.2\.0 deployed in tst \(sync by tst-owner\)$/);
            assert.deepEqual(calls[1].body, { state: "success", environment: "tst", description: d.description });
        });

        it("a failed sync is a failure status; a 5xx is tried again; a 4xx is final and its message never holds the token", async function () {
            const [o] = observations([row("prod", { state: "failed", commit: C }, { web: release("1.2.0", SRC) })]);
            failFirst = 1;
            const rest = new GitHubRest(TOKEN, { pauseMs: 1 });
            await reportObservation(o, { dev: { api, repository: "acme/shop" }, rest });
            assert.equal(calls.length, 3, "the 502 was not tried again");
            assert.equal(calls[2].body.state, "failure");
            assert.equal(calls[1].body.production_environment, true);

            failFirst = 5;
            const gone = await reportObservation(o, { dev: { api, repository: "acme/shop" }, rest }).catch((e: unknown) => e);
            assert.ok(gone instanceof GitHubError && gone.status === 502 && /after 3 attempts/.test(gone.message), String(gone));
            assert.ok(!gone.message.includes(TOKEN), gone.message);
            failFirst = 0;
            const missing = await reportObservation(o, { dev: { api, repository: "acme/missing" }, rest }).catch((e: unknown) => e);
            assert.ok(missing instanceof GitHubError && missing.status === 404, String(missing));
        });

        it("without GitHub, the record stays in the request log only and says so", async function () {
            const [o] = observations([row("itg", { state: "deployed", commit: C }, { web: release("1.2.0", SRC) })]);
            const r = await reportObservation(o);
            assert.deepEqual(r.githubDeployments, []);
            assert.match(r.message, /recorded in the request log; no GitHub dev repo to tell/);
            assert.equal(calls.length, 0);
        });
    });
});
