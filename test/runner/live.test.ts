/**
 * The runner's live-state paths with fake ports (no engine, no Argo CD): how a read Argo CD
 * refuses, an Argo CD setting that cannot be used and a manual stage's pending commit come out of
 * `deployment`, `status` and `wait`. The real parts are exercised by the cluster tier.
 */
import * as assert from "node:assert/strict";

import type { PipelineStage } from "../../src/runner/core";
import type { ApplicationStatus, ApplicationsPort } from "../../src/runner/deployed";
import { RunnerError } from "../../src/runner/errors";
import type { EnginePort, RunnerStore } from "../../src/runner/ports";
import { type OpsRepoPort, Runner } from "../../src/runner/runner";

const HEAD = "a".repeat(40);
const STAGES: PipelineStage[] = [
    { name: "itg", sync: "automatic", owners: ["itg-owners"], namespaces: ["itg"], queue: "coalesce", requireApproval: false, freezeWindows: [] },
    { name: "tst", sync: "manual", owners: ["qa", "tst-owners"], namespaces: ["tst"], queue: "fifo", requireApproval: false, freezeWindows: [] },
];

function runner(applications: () => Promise<ApplicationsPort | undefined>): Runner {
    const engine = { pipeline: async () => STAGES, platformOutputs: async () => ({ argocdUrl: "https://cd.example/", argocdCluster: { namespace: "argocd" } }), stackOutputs: async () => ({ releases: { web: { version: "1.0.0" } }, opsCommit: HEAD }) } as unknown as EnginePort;
    const ops = { stageCommits: async () => [{ commit: HEAD, author: "x", date: "", subject: "s", trailers: {} }], contains: async () => true } as unknown as OpsRepoPort;
    return new Runner({ engine, ops, store: {} as RunnerStore, now: () => new Date(), newId: () => "r-1", log: () => undefined, mrCluster: () => ({ renderDir: "/tmp", skipAwait: true }), applications });
}
const port = (read: (stage: string) => Promise<ApplicationStatus | undefined>): ApplicationsPort => ({ application: read, refresh: async () => undefined });

describe("the runner's live state", function () {
    it("a read Argo CD refuses is `denied` in status, and ends a wait at once as forbidden", async function () {
        let reads = 0;
        const r = runner(async () =>
            port(async () => {
                reads++;
                throw new RunnerError("forbidden", "Argo CD at http://x answered 403: permission denied");
            }),
        );
        const d = await r.deployment("itg");
        assert.equal(d.state, "unknown");
        assert.equal(d.reason, "denied");
        reads = 0;
        await assert.rejects(r.wait("itg", 60_000), (e: RunnerError) => e.kind === "forbidden" && /permission denied/.test(e.message));
        // Ended by the first refused read, not read again until the deadline.
        assert.equal(reads, 1);
    });

    it("an Argo CD setting that cannot be used keeps its kind: status says so, wait fails with it", async function () {
        const r = runner(async () => Promise.reject(new RunnerError("invalid", "runner.json argocd.tokenFile (/nope): cannot read the file (ENOENT)")));
        const [row] = await r.status("itg");
        assert.equal(row.deployment.reason, "unreadable");
        assert.match(row.deployment.message, /^live state unknown: cannot reach Argo CD's Applications: runner\.json argocd\.tokenFile/);
        await assert.rejects(r.wait("itg", 1000), (e: RunnerError) => e.kind === "invalid");
    });

    it("render mode: live state unknown, never success; a wait is not found", async function () {
        const r = runner(async () => undefined);
        const d = await r.deployment("itg");
        assert.equal(d.state, "unknown");
        assert.equal(d.reason, "render");
        assert.equal(d.message, "live state unknown: no Argo CD configured (the platform renders Kubernetes to files)");
        assert.equal((await r.status("itg"))[0].argocdApp, undefined);
        await assert.rejects(r.wait("itg", 1000), (e: RunnerError) => e.kind === "not-found");
    });

    it("a manual stage's commit not yet synced names the teams whose sync it waits for; an automatic stage's does not", async function () {
        const outOfSync = port(async () => ({ sync: { status: "OutOfSync", revision: HEAD } }));
        const r = runner(async () => outOfSync);
        const tst = await r.deployment("tst");
        assert.equal(tst.state, "pending");
        assert.deepEqual(tst.waitingFor, ["qa", "tst-owners"]);
        assert.match(tst.message, /^waiting for a sync by qa, tst-owners: /);
        const itg = await r.deployment("itg");
        assert.equal(itg.state, "pending");
        assert.equal(itg.waitingFor, undefined);
        // Each row links to the stage's Application in Argo CD's web UI.
        assert.equal((await r.status("tst"))[0].argocdApp, "https://cd.example/applications/argocd/tst");
        // A release the stage does not hold: nothing to wait for.
        await assert.rejects(r.wait("tst", 1000, { release: { app: "web", version: "2.0.0" } }), (e: RunnerError) => e.kind === "not-found" && /its ops folder holds web@1\.0\.0/.test(e.message));
    });
});
