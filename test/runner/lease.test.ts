/** Leases of running requests: the request log's running request is a stack's one lock, held while renewed. */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Commands, cliOwner } from "../../src/runner/commands";
import type { Actor } from "../../src/runner/core";
import { RunnerError } from "../../src/runner/errors";
import { Leases, isLeaseLoss } from "../../src/runner/lease";
import { DEFAULT_USER_VERBS } from "../../src/runner/rights";
import type { Runner } from "../../src/runner/runner";
import type { Secrets } from "../../src/runner/secrets";
import { SqliteStore } from "../../src/service/sqlite-store";

describe("leases of running requests", function () {
    let dir: string;
    let store: SqliteStore;
    beforeEach(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-lease-"));
        store = new SqliteStore(path.join(dir, "requests.db"));
    });
    afterEach(async function () {
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("renewing extends the lease; a request the log gave to another owner is aborted, and left to that owner", async function () {
        let clock = Date.parse("2026-12-06T10:00:00Z");
        const now = () => new Date(clock);
        assert.ok((await store.begin({ id: "r-lease-0001", verb: "hold", stack: "itg", body: {}, principal: "ci" }, "serve:a:1", now(), new Date(clock + 60_000)))?.created);
        const leases = new Leases(store, "serve:a:1", { now });
        const held = leases.hold("r-lease-0001");
        try {
            clock += 15_000;
            await leases.renew();
            assert.equal(held.signal.aborted, false);
            assert.equal((await store.get("r-lease-0001"))?.leaseUntil, new Date(clock + 60_000).toISOString());
            // The owner stalled past its lease: the log took the request back and another replica claimed it.
            assert.deepEqual(await store.recover(null, new Date(clock + 61_000)), ["r-lease-0001"]);
            assert.equal((await store.claim("serve:b:2", new Date(clock + 61_000), new Date(clock + 121_000), new Set()))?.id, "r-lease-0001");
            await leases.renew();
            assert.equal(held.signal.aborted, true, "the process that lost its lease kept running the update");
            const reason = held.signal.reason as RunnerError;
            assert.ok(reason instanceof RunnerError);
            assert.equal(reason.kind, "conflict");
            assert.equal(reason.reason, "lease-lost");
            const rec = await store.get("r-lease-0001");
            assert.equal(rec?.owner, "serve:b:2", "renewing took the request back from its new owner");
            assert.equal(rec?.leaseUntil, new Date(clock + 121_000).toISOString());
        } finally {
            held.release();
            leases.stop();
        }
    });

    it("while the log cannot be reached, work goes on until a quarter of the lease is left, then stops", async function () {
        let clock = 0;
        let calls = 0;
        const leases = new Leases(
            {
                renew: async () => {
                    calls++;
                    throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
                },
            },
            "serve:a:1",
            { now: () => new Date(clock) },
        );
        const held = leases.hold("r-lease-0002");
        try {
            clock = 30_000;
            await leases.renew();
            assert.equal(held.signal.aborted, false, "stopped while the lease still held for 30 s");
            clock = 45_000;
            await leases.renew();
            assert.equal(calls, 2);
            assert.equal(held.signal.aborted, true, "kept working with 15 s of lease left and no renewal");
            const reason = held.signal.reason as RunnerError;
            assert.equal(reason.kind, "unavailable");
            assert.match(reason.message, /^request r-lease-0002: its lease could not be renewed in the request log \(connect ECONNREFUSED 127\.0\.0\.1:5432\); the update was cancelled/);
        } finally {
            held.release();
            leases.stop();
        }
    });

    it("deadlines are watched between renewals: a request whose lease was not renewed stops with a quarter left", function () {
        let clock = 0;
        const leases = new Leases({ renew: async () => [] }, "serve:a:1", { now: () => new Date(clock) });
        const held = leases.hold("r-lease-0005");
        try {
            clock = 44_000;
            leases.expire();
            assert.equal(held.signal.aborted, false, "stopped with 16 s of its lease left");
            clock = 45_500;
            leases.expire();
            assert.equal(held.signal.aborted, true, "kept running with less than a quarter of its lease left and no renewal");
            assert.equal((held.signal.reason as RunnerError).kind, "unavailable");
        } finally {
            held.release();
            leases.stop();
        }
    });

    it("the deadline is the log's: a claim that took long to answer stops a quarter before the lease the log recorded, and the abort is a lost lease", function () {
        let clock = 10_000;
        const leases = new Leases({ renew: async () => [] }, "serve:a:1", { now: () => new Date(clock) });
        // The log's lease was computed at 0, before a claim that answered at 10 s.
        const held = leases.hold("r-lease-0007", new Date(60_000));
        try {
            clock = 44_000;
            leases.expire();
            assert.equal(held.signal.aborted, false);
            clock = 45_500;
            leases.expire();
            assert.equal(held.signal.aborted, true, "watched from now plus a lease instead of the log's deadline");
            assert.ok(isLeaseLoss(held.signal.reason));
            assert.equal(isLeaseLoss(new RunnerError("conflict", "SIGINT received")), false);
        } finally {
            held.release();
            leases.stop();
        }
    });

    it("a renewal that never answers counts as failed: the request stops with a quarter of its lease left", async function () {
        let clock = 0;
        let calls = 0;
        // A database behind a partition: the call neither answers nor fails.
        const leases = new Leases({ renew: () => (calls++, new Promise<never>(() => undefined)) }, "serve:a:1", { now: () => new Date(clock), leaseMs: 800 });
        const held = leases.hold("r-lease-0003");
        try {
            clock = 200;
            await leases.renew();
            assert.equal(calls, 1);
            assert.equal(held.signal.aborted, false);
            clock = 600;
            await leases.renew();
            assert.equal(held.signal.aborted, true, "a hung renewal let the request run into the end of its lease");
            assert.match((held.signal.reason as RunnerError).message, /its lease could not be renewed in the request log \(no answer in 100 ms\)/);
        } finally {
            held.release();
            leases.stop();
        }
    });

    it("a request claimed again by the same process stops the run that lost it", function () {
        const leases = new Leases({ renew: async () => ["r-lease-0004"] }, "serve:a:1");
        const first = leases.hold("r-lease-0004");
        const second = leases.hold("r-lease-0004");
        try {
            assert.equal(first.signal.aborted, true);
            assert.equal((first.signal.reason as RunnerError).reason, "lease-lost");
            assert.equal(first.current(), false, "the old run still takes itself for the request's run");
            assert.equal(second.signal.aborted, false);
            assert.equal(second.current(), true);
            first.release();
            assert.equal(second.signal.aborted, false, "the old run's release ended the new one's lease");
        } finally {
            second.release();
            leases.stop();
        }
    });

    it("a command whose lease is lost is cancelled through the runner's signal, and what the log recorded since stands", async function () {
        let seen: AbortSignal | undefined;
        const runner = {
            // Stands in for an update that runs until it is cancelled, as the engine's does.
            hold: (_r: unknown, _set: boolean, o: { signal?: AbortSignal }) =>
                new Promise((_, reject) => {
                    seen = o.signal;
                    o.signal?.addEventListener("abort", () => reject(o.signal!.reason), { once: true });
                }),
        };
        const commands = new Commands({ runner: runner as unknown as Runner, secrets: {} as Secrets });
        const alice: Actor = { name: "alice", teams: [], canOverrideOrder: false, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }], local: true };
        const owner = cliOwner();
        const running = commands.execute({ verb: "hold", input: { app: "web", stage: "itg" } }, alice, { log: { store, owner, lockWaitMs: 5000, leaseMs: 400 } });
        let rec;
        for (let i = 0; i < 50 && !(rec = await store.runningOn("itg")); i++) await new Promise((r) => setTimeout(r, 20));
        assert.equal(rec?.owner, owner);
        assert.ok(seen && !seen.aborted);
        // Its lease ran out (the process stalled) and another process took the stack back: a CLI's
        // request is recorded as failed then (nobody else may run what a person asked from a shell).
        assert.deepEqual(await store.recover(null, new Date(Date.now() + 10_000)), [rec!.id]);
        await assert.rejects(running, (e: RunnerError) => e.kind === "conflict" && e.reason === "lease-lost" && e.message.includes(rec!.id));
        assert.equal(seen!.aborted, true);
        const after = await store.get(rec!.id);
        assert.equal(after?.state, "failed");
        assert.match((after?.error as { message: string }).message, /ended before it finished/, "the process that lost the request wrote its own outcome over the log's");
    });
});
