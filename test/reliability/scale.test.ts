/**
 * Scale-out on real distributed parts: three `stages serve` replicas, each on a host of its own
 * (network namespace, hostname, data folder, Pulumi home), sharing only PostgreSQL (request log,
 * and Pulumi's postgres:// state backend) and the ops repo over git's smart HTTP (support/replicas.ts).
 *
 * npm test runs a CI size; `npm run reliability` (SCALE=full) the full one: 200 requests, 20
 * failover trials. SCALE_SEED replays the failover kills' random points.
 */
import * as assert from "node:assert/strict";

import { backendLocks } from "../../src/runner/adapters/backend-locks";
import { ReplicaSet, SOURCE_COMMIT, startReplicaSet, until } from "../support/replicas";

const FULL = process.env.SCALE === "full";
// The CI size keeps npm test within its time: the release into six of the stages, one failover,
// the partition; the full size brings it into all twelve and adds holds and releases, nineteen more
// failovers and the rolling restart.
const LOAD = FULL ? 200 : 6;
const TRIALS = FULL ? 20 : 1;
const REPLICAS = ["r1", "r2", "r3"];
const STAGES = Array.from({ length: 12 }, (_, i) => `s${String(i + 1).padStart(2, "0")}`);
const FINAL = new Set(["done", "failed", "superseded"]);

let seed = Number(process.env.SCALE_SEED ?? Date.now() % 100_000);
const firstSeed = seed;
function random(): number {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
}

function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

describe(`scale-out: ${REPLICAS.length} replicas on hosts of their own, ${STAGES.length} stage stacks (${FULL ? "full" : "CI"} size, seed ${firstSeed})`, function () {
    this.timeout(60 * 60_000);
    let set: ReplicaSet;
    /** How many stages the load promotes the release into (the first ones): holds and releases go there. */
    const promoted = Math.min(LOAD, STAGES.length);
    /** The next verb of each stage (hold and release alternate, so every request is a change). */
    const next = new Map<string, "hold" | "release">();
    let rr = 0;

    before(async function () {
        this.timeout(10 * 60_000);
        set = await startReplicaSet({ replicas: REPLICAS, stages: STAGES, leaseSeconds: 8, concurrency: 4 });
    });
    after(async () => {
        await set?.dispose();
    });

    /** Submits a request to a replica that answers (round robin; a stopping or cut replica is skipped). */
    async function submit(verb: string, body: Record<string, unknown>, avoid: readonly string[] = []): Promise<string> {
        for (let tries = 0; tries < REPLICAS.length * 20; tries++) {
            const name = REPLICAS[rr++ % REPLICAS.length];
            if (avoid.includes(name)) continue;
            try {
                const r = await set.api(name)("POST", `/v1/${verb}`, body);
                if (r.status === 202 || r.status === 200) return String(r.body.requestId);
                if (r.status !== 503) throw new Error(`${verb} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`);
            } catch (e) {
                if (!(e instanceof TypeError)) throw e;
                // connection refused: that replica is restarting
            }
            await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`no replica accepted ${verb}`);
    }

    /** The next hold or release of a stage. */
    function toggle(stage: string): Promise<string> {
        const verb = next.get(stage) ?? "hold";
        next.set(stage, verb === "hold" ? "release" : "hold");
        return submit(verb, { app: "web", stage });
    }

    async function settled(ids: readonly string[], timeoutMs: number) {
        let rows: Awaited<ReturnType<ReplicaSet["rows"]>> = [];
        await until(`${ids.length} requests to be final`, async () => {
            rows = (await set.rows()).filter((r) => ids.includes(r.id));
            return rows.length === ids.length && rows.every((r) => FINAL.has(r.state));
        }, timeoutMs, 500);
        const failed = rows.filter((r) => r.state !== "done");
        assert.deepEqual(failed.map((r) => `${r.id} ${r.verb} ${r.stack}: ${r.state} ${r.error ?? ""}`), [], "every request done");
        return rows;
    }

    /** The stage's outputs say the commit that carries the request is what it deployed: state and ops repo agree. */
    function agrees(stage: string, id: string): void {
        const h = set.history(stage);
        const last = h[0];
        assert.equal(last.result, "succeeded", `${stage}'s last update succeeded`);
        const commits = set.commitsByRequest();
        assert.equal(commits.get(id), 1, `one commit carries request ${id}`);
    }

    it(`${LOAD} requests: every one final and done, each run by one replica, one update of a stack at a time, one commit per update`, async () => {
        const started = Date.now();
        const ids: string[] = [];
        // The release first arrives in every stage (the operator may skip the stage order), then holds and releases alternate.
        for (const stage of STAGES.slice(0, promoted)) ids.push(await submit("promote", { app: "web", version: "1.0.0", to: stage, source: { commit: SOURCE_COMMIT }, overrideOrder: true }));
        for (let i = 0; ids.length < LOAD; i++) ids.push(await toggle(STAGES[i % STAGES.length]));
        const rows = await settled(ids, 40 * 60_000);
        const seconds = (Date.now() - started) / 1000;
        // Each request was started by exactly one replica (no failover here), and every replica worked.
        const by = new Map<string, number>();
        for (const id of ids) {
            const on = set.startedOn(id);
            assert.equal(on.length, 1, `request ${id} started on exactly one replica (${on.join(", ")})`);
            by.set(on[0], (by.get(on[0]) ?? 0) + 1);
        }
        assert.ok(by.size >= 2, `requests spread over replicas: ${JSON.stringify(Object.fromEntries(by))}`);
        // One commit per executed update, carrying its request.
        const commits = set.commitsByRequest();
        for (const id of ids) assert.equal(commits.get(id), 1, `one commit carries request ${id}`);
        // Per stack, the updates of these requests never overlap in time.
        let updates = 0;
        for (const stage of STAGES.slice(0, promoted)) {
            const mine = set.history(stage).filter((u) => u.kind === "update" && ids.includes(u.environment?.["ci.build.id"] ?? ""));
            const expected = rows.filter((r) => r.stack === stage).length;
            assert.equal(mine.length, expected, `${stage}: one update per request (${expected})`);
            updates += mine.length;
            const spans = mine.map((u) => [Date.parse(u.startTime), Date.parse(u.endTime ?? u.startTime)] as const).sort((a, b) => a[0] - b[0]);
            for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], `${stage}: update ${i + 1} began after update ${i} ended`);
        }
        assert.equal(updates, LOAD);
        process.stderr.write(`      ${LOAD} requests in ${seconds.toFixed(1)} s (${((LOAD / seconds) * 60).toFixed(1)} per minute); run by ${JSON.stringify(Object.fromEntries(by))}\n`);
    });

    it(`failover: kill -9 of the replica running an update at a random point, ${TRIALS} trials: the request completes on a survivor, the lock is recovered, one commit`, async () => {
        const times: number[] = [];
        let before = 0;
        let recovered = 0;
        for (let t = 0; t < TRIALS; t++) {
            const stage = STAGES[t % promoted];
            const id = await toggle(stage);
            let owner = "";
            await until(`request ${id} to run`, async () => {
                const row = (await set.rows()).find((r) => r.id === id);
                owner = row?.state === "running" ? String(row.owner) : "";
                if (row && FINAL.has(row.state)) throw new Error(`request ${id} ended before it was seen running`);
                return owner !== "";
            }, 120_000, 50);
            // The kill lands inside the engine's update: once Pulumi's lock of the stack exists in the shared backend.
            let ended = false;
            await until(`request ${id}'s update to hold Pulumi's lock of ${stage}`, async () => {
                if ((await backendLocks(set.stateUrl, stage)).length > 0) return true;
                ended = FINAL.has((await set.rows()).find((r) => r.id === id)?.state ?? "");
                return ended;
            }, 120_000, 50);
            // Early in the engine's hold, which lasts seconds: within a second at full size, within
            // 0.3 s at the CI size (one trial, which must land while the lock is held).
            const delay = Math.floor(random() * (FULL ? 1000 : 300));
            await new Promise((r) => setTimeout(r, delay));
            const killedAt = Date.now();
            await set.kill(owner);
            const [row] = await settled([id], 5 * 60_000);
            assert.equal(row.state, "done");
            if (ended || set.startedOn(id).length === 1) before++;
            else {
                times.push(Date.now() - killedAt);
                // Whether the survivor that ran it recovered the dead replica's lock (named with its host); an
                // update that ended just before the kill let its lock go itself.
                const survivor = set.startedOn(id).find((n) => n !== owner)!;
                if (set.replicas[survivor].lines.some((l) => new RegExp(`recovered stack ${stage}: removed the lock of process \\d+ on host ${owner}`).test(String(l.msg)))) recovered++;
            }
            agrees(stage, id);
            assert.deepEqual(await backendLocks(set.stateUrl, stage), [], `no lock of ${stage} left`);
            await set.start(owner);
        }
        const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
        process.stderr.write(`      failover (kill to done): ${times.length} trials, median ${times.length ? s(median(times)) : "-"}, max ${times.length ? s(Math.max(...times)) : "-"}; ${recovered} recovered a dead replica's lock; ${before} finished before the kill (seed ${firstSeed})\n`);
        assert.ok(times.length > 0, "at least one kill landed while the request ran");
        assert.ok(recovered > 0, "at least one survivor recovered the lock a killed replica left in the shared backend");
    });

    it("partition: a replica cut from PostgreSQL during an update stops claiming, its lease lapses, another finishes, and no second commit follows when the link returns", async () => {
        const stage = STAGES[5 % promoted];
        const id = await toggle(stage);
        let owner = "";
        await until(`request ${id} to run`, async () => {
            const row = (await set.rows()).find((r) => r.id === id);
            owner = row?.state === "running" ? String(row.owner) : "";
            return owner !== "";
        }, 120_000, 50);
        const cut = set.replicas[owner];
        const linesBefore = cut.lines.length;
        // Cut inside the engine's update, once it holds Pulumi's lock (or right away if the update already ended).
        await until(`request ${id}'s update to hold Pulumi's lock of ${stage}`, async () => (await backendLocks(set.stateUrl, stage)).length > 0 || FINAL.has((await set.rows()).find((r) => r.id === id)?.state ?? ""), 120_000, 50);
        await new Promise((r) => setTimeout(r, 300));
        set.hosts.link(owner, false);
        try {
            const [row] = await settled([id], 5 * 60_000);
            assert.ok(row.attempts >= 2, `claimed again after the lease lapsed (attempts ${row.attempts})`);
            assert.ok(set.startedOn(id).some((n) => n !== owner), `started again on another replica than ${owner}`);
            const said = (re: RegExp) => cut.lines.slice(linesBefore).some((l) => re.test(String(l.msg)));
            await until(`${owner} to say it cannot reach the database`, () => said(/cannot be reached: not claiming work/), 60_000);
            assert.ok(said(/lease was lost; its update is cancelled/), `${owner} cancelled its update when its lease was lost`);
        } finally {
            set.hosts.link(owner, true);
        }
        // Back without a restart: ready again, and after another lease still one commit.
        await until(`${owner} to be ready again`, async () => {
            try {
                return (await fetch(`${cut.url}/readyz`)).status === 200;
            } catch {
                return false;
            }
        }, 120_000, 500);
        assert.equal(cut.proc?.exitCode, null, `${owner} was not restarted`);
        // A lease more: a run of the cut replica that were still going would have ended by now.
        await new Promise((r) => setTimeout(r, set.leaseSeconds * 1000));
        agrees(stage, id);
        // Nothing of the cut replica's run reached the stack's history after the link came back:
        // one succeeded update carries the request.
        assert.equal(set.history(stage).filter((u) => u.environment?.["ci.build.id"] === id && u.result === "succeeded").length, 1);
        // And it works again: a request sent to it completes.
        const after = await submitTo(owner, stage);
        await settled([after], 5 * 60_000);
    });

    /** A hold or release through one replica's API. */
    async function submitTo(name: string, stage: string): Promise<string> {
        const verb = next.get(stage) ?? "hold";
        next.set(stage, verb === "hold" ? "release" : "hold");
        const r = await set.api(name)("POST", `/v1/${verb}`, { app: "web", stage });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        return String(r.body.requestId);
    }

    (FULL ? it : it.skip)("rolling restart of every replica under a steady load (full size: npm run reliability): no request fails or is lost", async () => {
        const ids: string[] = [];
        let loading = true;
        let i = 0;
        const load = (async () => {
            while (loading) {
                ids.push(await toggle(STAGES[i++ % promoted]));
                await new Promise((r) => setTimeout(r, FULL ? 700 : 1000));
            }
        })();
        try {
            for (const name of REPLICAS) {
                await new Promise((r) => setTimeout(r, 1500));
                assert.equal(await set.stop(name), 0, `${name} stopped cleanly`);
                await set.start(name);
            }
        } finally {
            loading = false;
            await load;
        }
        const rows = await settled(ids, 20 * 60_000);
        assert.equal(rows.length, ids.length, "nothing lost");
        const commits = set.commitsByRequest();
        for (const id of ids) assert.equal(commits.get(id), 1, `one commit carries request ${id}`);
        process.stderr.write(`      rolling restart: ${ids.length} requests, ${rows.filter((r) => r.attempts > 1).length} requeued by a shutdown and run again\n`);
    });

    it("no replica logged a credential: the git host's password, the passphrase, the operator token", function () {
        for (const r of Object.values(set.replicas)) {
            const text = JSON.stringify(r.lines);
            assert.ok(r.lines.length > 0, `${r.name} logged nothing`);
            for (const secret of set.secrets) assert.ok(!text.includes(secret), `${r.name} logged a credential`);
        }
    });
});
