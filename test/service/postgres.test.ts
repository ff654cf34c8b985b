/**
 * PostgreSQL mode: two service replicas share one queue in a real PostgreSQL server; every request
 * finishes, both replicas work, and no stack is ever updated by both at once.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";

import { openStore } from "../../src/runner/index";
import { SqliteStore } from "../../src/service/sqlite-store";
import type { RequestStore } from "../../src/service/store";

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

    /** A database of its own on the server, out of the two replicas' reach (they claim whatever the shared one queues). */
    async function freshDatabase(name: string): Promise<string> {
        const c = new Client({ connectionString: pg.url });
        await c.connect();
        try {
            await c.query(`CREATE DATABASE ${name}`);
        } finally {
            await c.end();
        }
        const u = new URL(pg.url);
        u.pathname = `/${name}`;
        return u.toString();
    }

    /** Runs `fn` on a store of each kind, PostgreSQL (a database of its own) and SQLite (a temporary file), closing each after. */
    async function onEachStore(name: string, fn: (store: RequestStore) => Promise<void>): Promise<void> {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), `gitops-stages-${name}-`));
        const url = await freshDatabase(name);
        try {
            for (const open of [() => PostgresStore.open(url), async () => new SqliteStore(path.join(dir, "requests.db"))]) {
                const store = await open();
                try {
                    await fn(store);
                } finally {
                    await store.close();
                }
            }
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }

    it("approvals and answers live in the shared database: what one process records, another sees; an earlier records.json is imported once", async function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-records-"));
        const approval = { app: "web", version: "1.0.0", stage: "prod", by: "alice", at: "2026-12-06T00:00:00.000Z" };
        const url = await freshDatabase("records_test");
        try {
            for (const open of [() => PostgresStore.open(url), async () => new SqliteStore(path.join(dir, "requests.db"))]) {
                const [a, b] = [await open(), await open()];
                try {
                    await a.addApproval(approval);
                    await a.addApproval(approval);
                    assert.deepEqual(await b.approvals(), [approval]);
                    await b.removeApproval(approval);
                    assert.deepEqual(await a.approvals(), []);
                    await a.saveAnswer("ci-itg", "k1", { state: "done", n: 1 });
                    assert.deepEqual(await b.answer("ci-itg", "k1"), { state: "done", n: 1 });
                    assert.equal(await b.answer("operator", "k1"), undefined, "an answer is its principal's only");
                } finally {
                    await a.close();
                    await b.close();
                }
            }
            fs.writeFileSync(path.join(dir, "records.json"), JSON.stringify({ approvals: [approval], answers: { "ci-tst\nk2": { state: "done" }, unscoped: { state: "done" } } }));
            const store = await openStore(undefined, dir);
            try {
                assert.deepEqual(await store.approvals(), [approval]);
                assert.deepEqual(await store.answer("ci-tst", "k2"), { state: "done" });
                assert.ok(!fs.existsSync(path.join(dir, "records.json")) && fs.existsSync(path.join(dir, "records.json.imported")));
            } finally {
                await store.close();
            }
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("coalescing is the log's: a request waiting behind a running one is superseded by a newer one for the same app (SQLite and PostgreSQL)", async function () {
        await onEachStore("coalesce_test", async (store) => {
            const now = new Date();
            const lease = new Date(now.getTime() + 60_000);
            const make = (id: string, app: string) => store.create({ id, verb: "promote", stack: "cz", body: {}, principal: "t", coalesceKey: app }, now);
            await make("c1", "web");
            assert.equal((await store.claim("r", now, lease, new Set(["cz"])))?.id, "c1");
            await make("c2", "web");
            await make("c3", "api");
            await make("c4", "web");
            // The stack is busy: nothing is claimed, but c2 is answered at once, superseded by c4.
            assert.equal(await store.claim("r", now, lease, new Set(["cz"])), undefined);
            const c2 = await store.get("c2");
            assert.equal(c2?.state, "superseded");
            assert.equal((c2?.result as { supersededBy?: string }).supersededBy, "c4");
            await store.finish("c1", "done", now, { result: {} });
            assert.equal((await store.claim("r", now, lease, new Set(["cz"])))?.id, "c3");
            await store.finish("c3", "done", now, { result: {} });
            assert.equal((await store.claim("r", now, lease, new Set(["cz"])))?.id, "c4");
            // A FIFO stack never supersedes.
            await store.create({ id: "f1", verb: "promote", stack: "fz", body: {}, principal: "t", coalesceKey: "web" }, now);
            await store.create({ id: "f2", verb: "promote", stack: "fz", body: {}, principal: "t", coalesceKey: "web" }, now);
            assert.equal((await store.claim("r", now, lease, new Set(["cz"])))?.id, "f1");
            assert.equal((await store.get("f2"))?.state, "queued");
        });
    });

    it("a process's own requests: begun only on a free stack, finished only by their owner, failed (never requeued) once their lease runs out (SQLite and PostgreSQL)", async function () {
        await onEachStore("begin_test", async (store) => {
            const now = new Date();
            const lease = new Date(now.getTime() + 60_000);
            const later = new Date(now.getTime() + 120_000);
            const cli = "cli:elsewhere:4242";
            const got = await store.begin({ id: "b1", verb: "promote", stack: "bs", body: {}, principal: "alice", idempotencyKey: "k" }, cli, now, lease);
            assert.equal(got?.created, true);
            assert.equal(got?.record.state, "running");
            assert.equal(await store.begin({ id: "b2", verb: "hold", stack: "bs", body: {}, principal: "bob" }, "cli:elsewhere:1", now, lease), undefined, "a second request of a running stack began");
            assert.equal((await store.runningOn("bs"))?.id, "b1");
            const again = await store.begin({ id: "b3", verb: "promote", stack: "other", body: {}, principal: "alice", idempotencyKey: "k" }, cli, now, lease);
            assert.deepEqual([again?.created, again?.record.id], [false, "b1"], "the same key answers the running request");
            assert.equal(await store.finish("b1", "done", now, { result: {} }, "cli:elsewhere:9"), false, "another owner finished it");
            // A change answered at once: running under its replica, never claimed by a worker.
            await store.begin({ id: "b4", verb: "approve", stack: "approve:prod#b4", body: {}, principal: "alice" }, "replica-a", now, lease);
            await store.create({ id: "b5", verb: "approve", stack: "approve:prod#b5", body: {}, principal: "alice" }, now);
            assert.equal(await store.claim("replica-b", now, lease, new Set()), undefined, "a worker claimed a change answered at once");
            // The leases run out: the CLI's request and the change answered at once fail; nothing is requeued.
            const recovered = await store.recover(null, later);
            assert.deepEqual(recovered.sort(), ["b1", "b4"]);
            for (const id of ["b1", "b4"]) {
                const r = await store.get(id);
                assert.equal(r?.state, "failed", id);
                assert.match((r?.error as { message: string }).message, /ended before it finished/);
            }
            assert.equal(await store.finish("b1", "done", later, { result: {} }, cli), false, "a late finish overwrote the recorded failure");
            assert.equal((await store.get("b1"))?.state, "failed");
            // The stack is free again, and the failed request gave its key up.
            assert.equal((await store.begin({ id: "b6", verb: "promote", stack: "bs", body: {}, principal: "alice", idempotencyKey: "k" }, cli, later, new Date(later.getTime() + 60_000)))?.created, true);
            assert.equal(await store.finish("b6", "done", later, { result: { ok: true } }, cli), true);
        });
    });
});
