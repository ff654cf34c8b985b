/**
 * The token scope matrix: every verb x stage x token through the HTTP service. Only the allowed
 * combinations get past the rights check (any answer but 401/403); the others get 403. Workers are
 * off (concurrency 0), so accepted requests stay queued and nothing runs.
 */
import * as assert from "node:assert/strict";
import * as path from "node:path";

import { Service } from "../../src/service/server";
import { SqliteStore } from "../../src/service/sqlite-store";
import { Pipeline, api, bootstrapPipeline } from "../support/service";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const STAGES = ["itg", "tst"];

/** Each route of the matrix: its verb and the request for a stage. */
const ROUTES: { verb: string; call: (stage: string) => [string, string, unknown?] }[] = [
    { verb: "promote", call: (s) => ["POST", "/v1/promote", { app: "web", version: "1.0.0", to: s, requester: "x", source: { commit: COMMIT } }] },
    { verb: "preview", call: (s) => ["POST", "/v1/preview", { app: "web", version: "1.0.0", to: s, requester: "x", source: { commit: COMMIT } }] },
    { verb: "rollback", call: (s) => ["POST", "/v1/rollback", { app: "web", stage: s, requester: "x" }] },
    { verb: "hold", call: (s) => ["POST", "/v1/hold", { app: "web", stage: s, requester: "x" }] },
    { verb: "hold", call: (s) => ["POST", "/v1/release", { app: "web", stage: s, requester: "x" }] },
    { verb: "approve", call: (s) => ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: s }] },
    { verb: "status", call: (s) => ["GET", `/v1/status?stage=${s}`] },
    { verb: "history", call: (s) => ["GET", `/v1/history/${s}`] },
    { verb: "history", call: (s) => ["GET", `/v1/history/${s}/commits/0123456`] },
    { verb: "drift", call: (s) => ["POST", "/v1/drift", { stage: s }] },
    { verb: "secrets", call: (s) => ["GET", `/v1/secrets?stage=${s}`] },
    { verb: "secrets", call: (s) => ["POST", "/v1/secrets/rm", { app: "none", stage: s }] },
    { verb: "mr", call: () => ["POST", "/v1/mr/destroy", { mr: 99, requester: "x" }] },
];

describe("token scope matrix: every verb x stage x token", function () {
    let p: Pipeline;
    let service: Service;
    let base: string;
    const tokens: Record<string, string> = { readonly: "ro-token-0123456789", "secrets-tst": "sec-token-0123456789" };

    before(async function () {
        p = await bootstrapPipeline("gitops-stages-matrix-", STAGES.map((name) => ({ name })), [
            { name: "readonly", token: tokens.readonly, rights: [{ stages: ["*"], verbs: ["status", "history"] }] },
            { name: "secrets-tst", token: tokens["secrets-tst"], rights: [{ stages: ["tst"], verbs: ["secrets"] }] },
        ]);
        service = new Service({ assembled: await p.runner(), store: new SqliteStore(path.join(p.dir, "matrix.db")), replicaId: "matrix", log: () => undefined, limits: { concurrency: 0, ratePerMinute: 1e9, burst: 1e9 } });
        base = (await service.start(0)).url;
    });

    after(async function () {
        await service?.stop();
        p?.dispose();
    });

    it("only the allowed combinations pass; CI tokens never reach secrets, rollback or hold", async function () {
        // The expected rights, written out independently of the code under test.
        const all = new Set(["promote", "preview", "rollback", "hold", "approve", "status", "history", "drift", "mr", "secrets"]);
        const holders: Record<string, { token: string; allowed: (verb: string, stage: string) => boolean }> = {
            "ci-itg": { token: p.ciTokens.itg, allowed: (v, s) => ["promote", "preview", "status", "history"].includes(v) ? s === "itg" : v === "mr" },
            "ci-tst": { token: p.ciTokens.tst, allowed: (v, s) => ["promote", "preview", "status", "history"].includes(v) ? s === "tst" : v === "mr" },
            operator: { token: p.operatorToken, allowed: (v) => all.has(v) },
            readonly: { token: tokens.readonly, allowed: (v) => v === "status" || v === "history" },
            "secrets-tst": { token: tokens["secrets-tst"], allowed: (v, s) => v === "secrets" && s === "tst" },
        };
        const wrong: string[] = [];
        let cases = 0;
        for (const [name, h] of Object.entries(holders)) {
            const call = api(base, h.token);
            for (const stage of STAGES) {
                for (const route of ROUTES) {
                    const [method, url, body] = route.call(stage);
                    const r = await call(method, url, body);
                    cases++;
                    // Refused for rights: 403 with reason "rights" (other 403s, like approval by a non-owner, come later).
                    const refusedForRights = r.status === 401 || (r.status === 403 && (r.body.error as { reason?: string })?.reason === "rights");
                    if (refusedForRights === h.allowed(route.verb, stage)) wrong.push(`${name} ${method} ${url}: ${r.status} ${JSON.stringify(r.body.error ?? "")}`);
                }
            }
        }
        assert.deepEqual(wrong, [], `${wrong.length} of ${cases} combinations wrong`);
        assert.equal(cases, 5 * 2 * ROUTES.length);
        // And no request of the matrix ran: the ops repo holds only the skeleton and the validate check.
        assert.equal(p.git("rev-list", "--count", "main"), "2");
    });
});
