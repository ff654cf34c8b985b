/**
 * Throughput of runner replicas on hosts of their own (`npm run bench -- --only=replicas`): the
 * same load (holds and releases over 12 stage stacks, every request one update and one commit)
 * through one replica, then three, then one again, in one set-up (test/support/replicas.ts:
 * PostgreSQL request log and state backend, the ops repo over git's smart HTTP). The two
 * one-replica runs bracket the three-replica run, so drift of a shared machine shows.
 */
import * as fs from "node:fs";
import * as os from "node:os";

import { ReplicaSet, SOURCE_COMMIT, startReplicaSet, until } from "../test/support/replicas";
import { median } from "./stats";

const STAGES = Array.from({ length: 12 }, (_, i) => `s${String(i + 1).padStart(2, "0")}`);

/** Sends `count` holds and releases to `replicas` round robin; resolves with the seconds until all are done. */
async function load(set: ReplicaSet, replicas: readonly string[], count: number, next: Map<string, "hold" | "release">): Promise<{ seconds: number; updateMs: number[] }> {
    const started = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
        const stage = STAGES[i % STAGES.length];
        const verb = next.get(stage) ?? "hold";
        next.set(stage, verb === "hold" ? "release" : "hold");
        const r = await set.api(replicas[i % replicas.length])("POST", `/v1/${verb}`, { app: "web", stage });
        if (r.status !== 202) throw new Error(`${verb} ${stage}: ${r.status} ${JSON.stringify(r.body)}`);
        ids.push(String(r.body.requestId));
    }
    let rows: Awaited<ReturnType<ReplicaSet["rows"]>> = [];
    await until(`${count} requests`, async () => {
        rows = (await set.rows()).filter((r) => ids.includes(r.id));
        return rows.every((r) => ["done", "failed", "superseded"].includes(r.state));
    }, 60 * 60_000, 500);
    const bad = rows.filter((r) => r.state !== "done");
    if (bad.length) throw new Error(`${bad.length} requests did not finish done: ${bad.map((r) => `${r.id} ${r.state} ${r.error ?? ""}`).join("; ")}`);
    const seconds = (Date.now() - started) / 1000;
    // The engine's own time per update, from each request's result (durationMs), for where the time goes.
    const updateMs: number[] = [];
    for (const id of ids) {
        const r = await set.api(replicas[0])("GET", `/v1/requests/${id}`);
        const d = Number((r.body.result as { durationMs?: number } | undefined)?.durationMs);
        if (Number.isFinite(d)) updateMs.push(d);
    }
    return { seconds, updateMs };
}

/** A process's resident memory in MB, from /proc (`?` when unknown). */
function rssMb(pid: number | undefined): string {
    try {
        const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
        return Number.isFinite(kb) ? (kb / 1024).toFixed(0) : "?";
    } catch {
        return "?";
    }
}

/** The benchmark. */
export async function replicasBenchmark(count: number): Promise<void> {
    const set = await startReplicaSet({ replicas: ["r1", "r2", "r3"], stages: STAGES, leaseSeconds: 60, concurrency: 4 });
    try {
        const next = new Map<string, "hold" | "release">();
        // The release must run in every stage before it can be held.
        const ids: string[] = [];
        for (const stage of STAGES) {
            const r = await set.api("r1")("POST", "/v1/promote", { app: "web", version: "1.0.0", to: stage, source: { commit: SOURCE_COMMIT }, overrideOrder: true });
            ids.push(String(r.body.requestId));
        }
        await until("the set-up promotions", async () => (await set.rows()).filter((r) => ids.includes(r.id) && r.state === "done").length === ids.length, 30 * 60_000, 500);
        const runs: { replicas: number; seconds: number; updateMs: number[] }[] = [];
        for (const replicas of [["r1"], ["r1", "r2", "r3"], ["r1"]]) {
            // Only the replicas of this run work: the others are stopped.
            for (const name of ["r2", "r3"]) {
                if (replicas.includes(name)) {
                    const proc = set.replicas[name].proc;
                    if (!proc || proc.exitCode !== null || proc.signalCode !== null) await set.start(name);
                } else await set.stop(name);
            }
            const r = await load(set, replicas, count, next);
            runs.push({ replicas: replicas.length, ...r });
            console.log(`${replicas.length} replica(s): ${count} requests in ${r.seconds.toFixed(1)} s, ${((count / r.seconds) * 60).toFixed(1)} per minute; engine time per update median ${(median(r.updateMs) / 1000).toFixed(2)} s; resident memory ${replicas.map((n) => `${n} ${rssMb(set.replicas[n].proc?.pid)} MB`).join(", ")}`);
        }
        const one = (runs[0].seconds + runs[2].seconds) / 2;
        console.log(`3 replicas against 1 (mean of the bracketing runs): throughput ratio ${(one / runs[1].seconds).toFixed(2)}x; engine time per update ${(median(runs[1].updateMs) / 1000).toFixed(2)} s with 3 against ${(median([...runs[0].updateMs, ...runs[2].updateMs]) / 1000).toFixed(2)} s with 1 (${os.cpus().length} cores shared by every replica)`);
    } finally {
        await set.dispose();
    }
}
