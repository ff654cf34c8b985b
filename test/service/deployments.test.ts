/**
 * The service's watch of what Argo CD deployed: which stages it records and what a commit changed
 * (pure), and how a record becomes a GitHub Deployment on the dev repo, against a stand-in of
 * GitHub's REST API on loopback (the calls and bodies GitHub documents for `GET`/`POST
 * /repos/{owner}/{repo}/deployments` and `.../deployments/{id}/statuses`), with the one GitHub
 * client's retries, token scrubbing and idempotency.
 */
import * as assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

import { GitHubError, GitHubRest } from "../../src/github/rest";
import { commitMessage } from "../../src/program/stage/files";
import type { Deployment } from "../../src/runner/deployed";
import type { StatusRow } from "../../src/runner/runner";
import { commitChange, observations, promotionsAt, reportObservation } from "../../src/service/deployments";

const C = "c".repeat(40);
const SRC = "5".repeat(40);
const TOKEN = "ghs_watchtoken123";

function row(stage: string, deployment: Partial<Deployment> & { state: Deployment["state"] }): StatusRow {
    return { stage, apps: {}, lastChange: null, deployment: { message: `${deployment.state} now`, ...deployment } };
}

/** A commit's subject and trailers as the runner writes them. */
function commit(message: string): { subject: string; trailers: Record<string, string> } {
    const lines = message.trimEnd().split("\n");
    return { subject: lines[0], trailers: Object.fromEntries(lines.filter((l) => /^[A-Z][A-Za-z-]+: /.test(l)).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)])) };
}

describe("the deployment watch", function () {
    it("records a stage's last commit once deployed or failed, keyed by stage, commit and outcome; nothing for pending, synced, syncing or unknown", function () {
        const rows = [
            row("itg", { state: "deployed", commit: C, operationBy: "automated" }),
            row("tst", { state: "pending", commit: C, waitingFor: ["tst-owners"] }),
            row("perf", { state: "synced", commit: C }),
            row("prod", { state: "failed", commit: C, operationBy: "prod-owner" }),
            row("dr", { state: "unknown", reason: "render" }),
        ];
        assert.deepEqual(
            observations(rows).map((o) => [o.stage, o.state, o.key, o.by, o.last]),
            [
                ["itg", "deployed", `deployment:itg:${C}:deployed`, "automated", false],
                ["prod", "failed", `deployment:prod:${C}:failed`, "prod-owner", false],
            ],
        );
        // The key fits the request log's idempotency keys (128 characters), even for a 63-character
        // stage and a SHA-256 commit.
        const long = observations([row("s".repeat(63), { state: "deployed", commit: "e".repeat(64) })])[0];
        assert.ok(long.key.length <= 128, `${long.key.length}`);
        assert.equal(observations([row("prod", { state: "deployed", commit: C })])[0].last, true);
    });

    it("reads what a commit changed from the commit itself: a promotion or a rollback of one app; holds and other commits bring no release", function () {
        const promote = commit(commitMessage("tst", { kind: "promote", app: "web", version: "1.2.0", requestId: "r-1", requester: "ci-itg", sourceCommit: SRC }));
        assert.deepEqual(commitChange(promote), { kind: "promote", app: "web", version: "1.2.0", sourceCommit: SRC, requestId: "r-1" });
        const rollback = commit(commitMessage("prod", { kind: "rollback", app: "web", version: "1.1.0", requestId: "r-2", requester: "sre", reason: "smoke tests failed" }));
        assert.deepEqual(commitChange(rollback), { kind: "rollback", app: "web", version: "1.1.0", requestId: "r-2" });
        assert.equal(commitChange(commit(commitMessage("tst", { kind: "hold", app: "web", requestId: "r-3", requester: "sre" }))), undefined);
        assert.equal(commitChange({ subject: "Seal secret web in tst", trailers: {} }), undefined);
    });

    it("the releases a deployed commit holds: each app's newest promotion or rollback from that commit back; only promotions are reported", function () {
        const at = (sha: string, message: string) => ({ commit: sha.repeat(40), ...commit(message) });
        const commits = [
            at("1", commitMessage("tst", { kind: "hold", app: "web", requestId: "r-5", requester: "sre" })),
            at("2", commitMessage("tst", { kind: "promote", app: "api", version: "2.0.0", requestId: "r-4", requester: "ci", sourceCommit: SRC })),
            at("3", commitMessage("tst", { kind: "rollback", app: "web", version: "1.1.0", requestId: "r-3", requester: "sre" })),
            at("4", commitMessage("tst", { kind: "promote", app: "web", version: "1.2.0", requestId: "r-2", requester: "ci", sourceCommit: SRC })),
            at("5", commitMessage("tst", { kind: "promote", app: "api", version: "1.9.0", requestId: "r-1", requester: "ci", sourceCommit: SRC })),
            at("6", commitMessage("tst", { kind: "promote", app: "db", version: "0.3.0", requestId: "r-0", requester: "ci", sourceCommit: SRC })),
        ];
        assert.deepEqual(
            promotionsAt(commits).map((p) => [p.commit.slice(0, 1), p.change.app, p.change.version]),
            [
                ["2", "api", "2.0.0"],
                ["6", "db", "0.3.0"],
            ],
        );
    });

    describe("on GitHub", function () {
        let server: http.Server;
        let api: string;
        const calls: { method: string; url: string; auth?: string; body: Record<string, unknown> }[] = [];
        let failNext = 0;
        let deployments: { id: number; sha: string; environment: string; payload: unknown; statuses: string[] }[] = [];
        const P = "a".repeat(40);
        const promotion = [{ commit: P, change: { kind: "promote" as const, app: "web", version: "1.2.0", sourceCommit: SRC, requestId: "r-1" } }];

        before(async function () {
            server = http.createServer((req, res) => {
                let text = "";
                req.on("data", (b: Buffer) => (text += b.toString()));
                req.on("end", () => {
                    const url = new URL(req.url ?? "/", "http://x");
                    calls.push({ method: req.method ?? "", url: url.pathname, auth: req.headers.authorization, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
                    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
                    if (failNext > 0) {
                        failNext--;
                        return json(502, { message: `bad gateway for ${TOKEN}` });
                    }
                    if (!url.pathname.startsWith("/repos/acme/shop/")) return json(404, { message: "Not Found" });
                    const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
                    let m: RegExpExecArray | null;
                    if (req.method === "GET" && url.pathname === "/repos/acme/shop/deployments") {
                        return json(200, deployments.filter((d) => d.sha === url.searchParams.get("sha") && d.environment === url.searchParams.get("environment")).map(({ id, payload }) => ({ id, payload })));
                    }
                    if (req.method === "POST" && url.pathname === "/repos/acme/shop/deployments") {
                        const d = { id: 100 + deployments.length, sha: String(body.ref), environment: String(body.environment), payload: body.payload, statuses: [] };
                        deployments.push(d);
                        return json(201, { id: d.id });
                    }
                    if ((m = /^\/repos\/acme\/shop\/deployments\/(\d+)\/statuses$/.exec(url.pathname))) {
                        const d = deployments.find((x) => x.id === Number(m![1]))!;
                        if (req.method === "GET") return json(200, d.statuses.map((state) => ({ state })));
                        d.statuses.push(String(body.state));
                        return json(201, { id: 1 });
                    }
                    json(404, { message: "Not Found" });
                });
            });
            await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
            api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        });
        after(() => new Promise<void>((r) => server.close(() => r())));
        beforeEach(() => {
            calls.length = 0;
            deployments = [];
            failNext = 0;
        });
        const gh = (repository = "acme/shop") => ({ dev: { api, repository }, rest: new GitHubRest(TOKEN, { pauseMs: 1 }) });

        it("a deployed promotion becomes one Deployment of the release on the dev repo, to the stage's environment, with a success status and the release in its payload", async function () {
            const [o] = observations([row("tst", { state: "deployed", commit: C, operationBy: "tst-owner" })]);
            const r = await reportObservation(o, promotion, gh());
            assert.deepEqual(r.releases, [{ app: "web", version: "1.2.0", opsCommit: P, githubDeployment: 100 }]);
            assert.deepEqual(calls.map((c) => `${c.method} ${c.url}`), ["GET /repos/acme/shop/deployments", "POST /repos/acme/shop/deployments", "POST /repos/acme/shop/deployments/100/statuses"]);
            assert.ok(calls.every((c) => c.auth === `Bearer ${TOKEN}`));
            const d = calls[1].body;
            assert.equal(d.ref, SRC);
            assert.equal(d.environment, "tst");
            assert.deepEqual(d.payload, { app: "web", version: "1.2.0", kind: "promote", opsCommit: P, stageCommit: C });
            assert.equal(d.auto_merge, false);
            assert.deepEqual(d.required_contexts, []);
            assert.match(String(d.description), /^web 1\.2\.0 deployed in tst \(sync by tst-owner\)$/);
            assert.deepEqual(calls[2].body, { state: "success", environment: "tst", description: d.description });
        });

        it("a retry finds what an earlier attempt made: no second Deployment, no second status (each would start workflow runs)", async function () {
            const [o] = observations([row("tst", { state: "deployed", commit: C })]);
            await reportObservation(o, promotion, gh());
            calls.length = 0;
            // Reported again with a later deployed commit (a hold came after): the same Deployment, found.
            const again = await reportObservation({ ...o, commit: "9".repeat(40) }, promotion, gh());
            assert.deepEqual(again.releases, [{ app: "web", version: "1.2.0", opsCommit: P, githubDeployment: 100, note: "found, made by an earlier report" }]);
            assert.deepEqual(calls.map((c) => `${c.method} ${c.url}`), ["GET /repos/acme/shop/deployments", "GET /repos/acme/shop/deployments/100/statuses"]);
            assert.equal(deployments.length, 1);
            assert.deepEqual(deployments[0].statuses, ["success"]);
            // An attempt that made the Deployment but failed before its status: the retry adds the status only.
            deployments[0].statuses = [];
            await reportObservation(o, promotion, gh());
            assert.equal(deployments.length, 1);
            assert.deepEqual(deployments[0].statuses, ["success"]);
        });

        it("a failed sync is a failure status; a 5xx is tried again; a 4xx is final and no message holds the token", async function () {
            const [o] = observations([row("prod", { state: "failed", commit: C })]);
            failNext = 1;
            await reportObservation(o, promotion, gh());
            assert.equal(calls.filter((c) => c.url === "/repos/acme/shop/deployments" && c.method === "GET").length, 2, "the 502 was not tried again");
            assert.deepEqual(deployments[0].statuses, ["failure"]);
            assert.equal(calls.find((c) => c.method === "POST" && c.url === "/repos/acme/shop/deployments")!.body.production_environment, true);

            failNext = 5;
            const gone = await reportObservation(o, [{ ...promotion[0], commit: "d".repeat(40) }], gh()).catch((e: unknown) => e);
            assert.ok(gone instanceof GitHubError && gone.status === 502 && /after 3 attempts/.test(gone.message), String(gone));
            assert.ok(!gone.message.includes(TOKEN), gone.message);
            failNext = 0;
            const missing = await reportObservation(o, promotion, gh("acme/missing")).catch((e: unknown) => e);
            assert.ok(missing instanceof GitHubError && missing.status === 404, String(missing));
        });

        it("a promotion without a source commit makes no Deployment, and without GitHub the record stays in the request log only; both say so", async function () {
            const [o] = observations([row("prod", { state: "deployed", commit: C })]);
            const bare = await reportObservation(o, [{ commit: P, change: { kind: "promote", app: "web", version: "1.1.0" } }], gh());
            assert.deepEqual(bare.releases, [{ app: "web", version: "1.1.0", opsCommit: P, githubDeployment: null, note: "no source commit: no Deployment" }]);
            const none = await reportObservation(o, [], gh());
            assert.match(none.message, /^prod deployed at c{12} \(no promoted release\): 0 GitHub Deployment\(s\) on acme\/shop$/);
            const local = await reportObservation(o, promotion);
            assert.match(local.message, /^prod deployed at c{12} \(web 1\.2\.0\): recorded in the request log; no GitHub dev repo to tell$/);
            assert.equal(calls.length, 0);
        });
    });
});
