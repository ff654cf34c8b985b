/**
 * PostgreSQL mode: two service replicas share one queue in a real PostgreSQL server; every request
 * finishes, both replicas work, and no stack is ever updated by both at once.
 */
import * as assert from "node:assert/strict";
import { Client } from "pg";

import { bundleFiles } from "../../src/cli/ci";
import { PostgresStore } from "../../src/service/postgres-store";
import { Service } from "../../src/service/server";
import { makeBundleDir } from "../support/fixtures";
import { Postgres, startPostgres } from "../support/postgres";
import { Pipeline, api, bootstrapPipeline, settle } from "../support/service";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

describe("PostgreSQL mode: two replicas share the queue", function () {
    let p: Pipeline;
    let pg: Postgres;
    const replicas: { service: Service; url: string; started: string[] }[] = [];

    before(async function () {
        pg = await startPostgres();
        p = await bootstrapPipeline("gitops-stages-pg-service-", [{ name: "itg", queue: "fifo" }, { name: "tst" }]);
        for (const name of ["a", "b"]) {
            const started: string[] = [];
            const service = new Service({
                assembled: await p.runner(),
                store: await PostgresStore.open(pg.url),
                replicaId: `replica-${name}`,
                log: (e) => {
                    if (e.msg === "request started") started.push(String(e.requestId));
                },
                // One update at a time per replica: with three stacks holding work, a replica at
                // its limit must leave the rest to the other, so both provably take from the queue
                // (with the default of four, the first replica to wake may claim every stack).
                limits: { ratePerMinute: 100_000, burst: 1_000, concurrency: 1 },
            });
            replicas.push({ service, url: (await service.start(0)).url, started });
        }
    });

    after(async function () {
        for (const r of replicas) await r.service.stop();
        await pg?.stop();
        p?.dispose();
    });

    it("requests sent to either replica all finish; each runs on one replica; no two updates of a stack overlap", async function () {
        const sends = [];
        let i = 0;
        for (const app of ["q1", "q2"]) {
            for (const v of ["1.0.0", "1.1.0", "1.2.0"]) {
                const r = replicas[i++ % 2];
                sends.push(api(r.url, p.operatorToken)("POST", "/v1/promote", { app, version: v, to: "itg", requester: "ci", source: { commit: COMMIT }, image: `registry.example/${app}:${v}`, bundle: bundleFiles(makeBundleDir(p.dir, app)) }));
            }
        }
        for (const n of [1, 2]) {
            const r = replicas[i++ % 2];
            sends.push(api(r.url, p.operatorToken)("POST", "/v1/mr/deploy", { mr: n, app: "web", bundle: bundleFiles(makeBundleDir(p.dir, "web")), image: `registry.example/web:mr-${n}`, sourceCommit: "abcdef0", requester: "ci" }));
        }
        const accepted = await Promise.all(sends);
        for (const a of accepted) assert.equal(a.status, 202, JSON.stringify(a.body));
        // Any replica answers for any request: the log is shared.
        const finals = await Promise.all(accepted.map((a, j) => settle(api(replicas[(j + 1) % 2].url, p.operatorToken), a.body.requestId as string, 900_000)));
        assert.deepEqual(finals.map((f) => f.state), finals.map(() => "done"), JSON.stringify(finals.map((f) => f.error)));
        const ids = finals.map((f) => f.requestId as string);
        for (const id of ids) {
            const ran = replicas.filter((r) => r.started.includes(id)).length;
            assert.equal(ran, 1, `request ${id} ran on ${ran} replicas`);
        }
        assert.ok(replicas.every((r) => r.started.length > 0), `one replica did nothing: ${replicas.map((r) => r.started.length).join(", ")}`);
        const byStack = new Map<string, [number, number][]>();
        for (const f of finals) {
            const list = byStack.get(f.stack as string) ?? [];
            list.push([Date.parse(f.startedAt as string), Date.parse(f.finishedAt as string)]);
            byStack.set(f.stack as string, list);
        }
        for (const [stack, spans] of byStack) {
            spans.sort((x, y) => x[0] - y[0]);
            for (let k = 1; k < spans.length; k++) assert.ok(spans[k][0] >= spans[k - 1][1], `two updates of ${stack} overlapped`);
        }
        assert.equal(byStack.get("itg")!.length, 6);
    });

    it("the database itself refuses a second running request of one stack", async function () {
        const store = await PostgresStore.open(pg.url);
        try {
            const now = new Date();
            await store.create({ id: "x1", verb: "promote", stack: "zz", body: {}, principal: "t" }, now);
            await store.create({ id: "x2", verb: "promote", stack: "zz", body: {}, principal: "t" }, now);
            const first = await store.claim("r1", now, new Date(now.getTime() + 60_000), new Set());
            assert.equal(first?.id, "x1");
            assert.equal(await store.claim("r2", now, new Date(now.getTime() + 60_000), new Set()), undefined, "a second request of a busy stack was claimed");
            // Even a replica that skipped the check could not: the running index refuses it.
            const c = new Client({ connectionString: pg.url });
            await c.connect();
            try {
                await assert.rejects(c.query("UPDATE requests SET state = 'running' WHERE id = 'x2'"), (e: { code?: string }) => e.code === "23505");
            } finally {
                await c.end();
            }
            await store.finish("x1", "done", now, { result: {} });
            assert.equal((await store.claim("r2", now, new Date(now.getTime() + 60_000), new Set()))?.id, "x2");
        } finally {
            await store.close();
        }
    });
});
