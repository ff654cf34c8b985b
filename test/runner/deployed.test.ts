/** Judging a stage's deployment from Argo CD's Application status, and waiting on it (pure). */
import * as assert from "node:assert/strict";

import { ApplicationStatus, Deployment, judge, waitDeployed } from "../../src/runner/deployed";
import { RunnerError } from "../../src/runner/errors";

const C = "a".repeat(40);
const LATER = "b".repeat(40);
const OLDER = "c".repeat(40);
// LATER holds C; OLDER does not.
const contains = async (commit: string, revision: string) => commit === C && revision === LATER;

describe("what is deployed: judging an Application against the stage's last commit", function () {
    const cases: [string, ApplicationStatus | undefined, string | undefined, Deployment["state"], RegExp][] = [
        ["no Application", undefined, C, "unknown", /no Application/],
        ["synced and healthy at the commit", { sync: { status: "Synced", revision: C }, health: { status: "Healthy" } }, C, "deployed", /Healthy/],
        ["synced and healthy at a later commit holding it", { sync: { status: "Synced", revision: LATER }, health: { status: "Healthy" } }, C, "deployed", /synced at b{12}/],
        ["synced, rollout still progressing", { sync: { status: "Synced", revision: C }, health: { status: "Progressing" } }, C, "synced", /health Progressing/],
        ["synced but degraded", { sync: { status: "Synced", revision: C }, health: { status: "Degraded" } }, C, "failed", /Degraded/],
        ["synced at a revision without the commit (stale)", { sync: { status: "Synced", revision: OLDER }, health: { status: "Healthy" } }, C, "pending", /not yet synced: Argo CD last compared c{12}/],
        ["out of sync at the commit (a manual stage before its owners' sync)", { sync: { status: "OutOfSync", revision: C } }, C, "pending", /committed, not yet synced: Argo CD reports OutOfSync/],
        ["an operation running", { sync: { status: "OutOfSync", revision: C }, operationState: { phase: "Running" } }, C, "syncing", /syncing/],
        ["the last sync of the commit failed", { sync: { status: "OutOfSync", revision: C }, operationState: { phase: "Failed", message: "one or more objects failed", syncResult: { revision: C } } }, C, "failed", /one or more objects failed/],
        ["an older sync failed: not this commit's failure", { sync: { status: "OutOfSync", revision: C }, operationState: { phase: "Failed", syncResult: { revision: OLDER } } }, C, "pending", /not yet synced/],
        ["the chart does not render at the commit", { sync: { status: "Unknown", revision: C }, conditions: [{ type: "ComparisonError", message: "helm template failed" }] }, C, "failed", /ComparisonError: helm template failed/],
        ["the repository cannot be read before any revision", { conditions: [{ type: "ComparisonError", message: "repository not accessible" }] }, C, "failed", /repository not accessible/],
        ["a failed comparison leaves the branch's name as revision", { sync: { status: "Unknown", revision: "main" }, conditions: [{ type: "ComparisonError", message: "helm template failed" }] }, C, "failed", /helm template failed/],
        ["an error condition at an older resolved revision: not this commit's", { sync: { status: "Unknown", revision: OLDER }, conditions: [{ type: "ComparisonError", message: "x" }] }, C, "pending", /not yet synced/],
        ["a warning condition is no failure", { sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, conditions: [{ type: "SharedResourceWarning", message: "x" }] }, C, "deployed", /Healthy/],
        ["synced and healthy, but compared before the last sync finished (stale)", { sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, reconciledAt: "2026-12-06T01:00:00Z", operationState: { phase: "Succeeded", finishedAt: "2026-12-06T01:00:05Z", syncResult: { revision: C } } }, C, "syncing", /before its last operation finished .*waiting for a fresh comparison/],
        ["synced and healthy, compared after the last sync finished", { sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, reconciledAt: "2026-12-06T01:00:05Z", operationState: { phase: "Succeeded", finishedAt: "2026-12-06T01:00:05Z", syncResult: { revision: C } } }, C, "deployed", /Healthy/],
        ["a stage never changed, synced", { sync: { status: "Synced", revision: OLDER }, health: { status: "Healthy" } }, undefined, "deployed", /Healthy/],
    ];
    it("right after a sync request, the previous operation's outcome does not count until Argo CD starts the new one", async function () {
        const failedBefore = { sync: { status: "OutOfSync", revision: C }, operationState: { phase: "Failed", message: "old failure", startedAt: "2026-12-06T01:00:00Z", finishedAt: "2026-12-06T01:00:02Z", syncResult: { revision: C } } };
        const requested = { previous: { startedAt: "2026-12-06T01:00:00Z", finishedAt: "2026-12-06T01:00:02Z" } };
        assert.equal((await judge(failedBefore, C, contains, requested)).state, "syncing");
        assert.equal((await judge(failedBefore, C, contains)).state, "failed");
        const started = { ...failedBefore, operationState: { phase: "Running", startedAt: "2026-12-06T01:05:00Z" } };
        assert.equal((await judge(started, C, contains, requested)).state, "syncing");
        // A new operation started in the same second as the previous one: told apart by its end.
        const sameSecond = { sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, operationState: { phase: "Succeeded", startedAt: "2026-12-06T01:00:00Z", finishedAt: "2026-12-06T01:00:03Z", syncResult: { revision: C } } };
        assert.equal((await judge(sameSecond, C, contains, requested)).state, "deployed");
        const done = { sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, operationState: { phase: "Succeeded", startedAt: "2026-12-06T01:05:00Z", syncResult: { revision: C } } };
        assert.equal((await judge(done, C, contains, requested)).state, "deployed");
        // No operation before: none after is not the answer yet either.
        assert.equal((await judge({ sync: { status: "OutOfSync", revision: C } }, C, contains, { previous: null })).state, "syncing");
    });

    it("a refused read ends a wait at once as forbidden, whatever the deadline", async function () {
        const denied = waitDeployed(async () => ({ state: "unknown", reason: "denied", message: "cannot read Argo CD's Application itg: Argo CD answered 403: permission denied" }), async () => undefined, { timeoutMs: 60_000, pollMs: 1 });
        await assert.rejects(denied, (e: RunnerError) => e.kind === "forbidden" && /permission denied/.test(e.message));
    });

    it("the last operation's end and who started it: an account, or Argo CD's automated sync", async function () {
        const byOwner = await judge({ sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, operationState: { phase: "Succeeded", finishedAt: "2026-12-06T01:00:00Z", operation: { initiatedBy: { username: "tst-owner" } } } }, C, contains);
        assert.equal(byOwner.operationBy, "tst-owner");
        assert.equal(byOwner.operationFinishedAt, "2026-12-06T01:00:00Z");
        const auto = await judge({ sync: { status: "Synced", revision: C }, health: { status: "Healthy" }, operationState: { phase: "Succeeded", operation: { initiatedBy: { automated: true } } } }, C, contains);
        assert.equal(auto.operationBy, "automated");
        const none = await judge({ sync: { status: "Synced", revision: C }, health: { status: "Healthy" } }, C, contains);
        assert.equal(none.operationBy, undefined);
    });

    for (const [title, status, commit, state, message] of cases) {
        it(`${title}: ${state}`, async function () {
            const d = await judge(status, commit, contains);
            assert.equal(d.state, state, JSON.stringify(d));
            assert.match(d.message, message);
            if (commit) assert.equal(d.commit, commit);
        });
    }
});

describe("waiting on a deployment", function () {
    const seq = (...states: Deployment[]) => {
        let i = 0;
        return async () => states[Math.min(i++, states.length - 1)];
    };
    const d = (state: Deployment["state"], extra: Partial<Deployment> = {}): Deployment => ({ state, message: `${state} now`, ...extra });

    it("refreshes first, then returns at deployed (not at synced, unless asked)", async function () {
        let refreshed = 0;
        const got = await waitDeployed(seq(d("pending"), d("synced"), d("deployed")), async () => void refreshed++, { timeoutMs: 5000, pollMs: 1 });
        assert.equal(got.state, "deployed");
        assert.equal(refreshed, 1);
        assert.equal((await waitDeployed(seq(d("pending"), d("synced")), async () => undefined, { timeoutMs: 5000, pollMs: 1, until: "synced" })).state, "synced");
    });

    it("a stale status is never done: the wait asks Argo CD to refresh again and takes the fresh answer", async function () {
        let refreshed = 0;
        const got = await waitDeployed(seq(d("syncing", { stale: true }), d("syncing", { stale: true }), d("deployed")), async () => void refreshed++, { timeoutMs: 5000, pollMs: 1 });
        assert.equal(got.state, "deployed");
        assert.equal(refreshed, 3, "one refresh at the start and one per stale answer");
    });

    it("a failed refresh is not fatal; an unreadable Application is read again", async function () {
        const got = await waitDeployed(seq(d("unknown", { reason: "unreadable" }), d("deployed")), async () => Promise.reject(new Error("forbidden")), { timeoutMs: 5000, pollMs: 1 });
        assert.equal(got.state, "deployed");
    });

    it("ends at failed as a conflict, at an absent Application as not-found, at the deadline as a timeout naming the state", async function () {
        await assert.rejects(waitDeployed(seq(d("failed")), async () => undefined, { timeoutMs: 5000, pollMs: 1 }), (e: unknown) => e instanceof RunnerError && e.kind === "conflict" && e.reason === "sync-failed");
        await assert.rejects(waitDeployed(seq(d("unknown", { reason: "absent" })), async () => undefined, { timeoutMs: 5000, pollMs: 1 }), (e: unknown) => e instanceof RunnerError && e.kind === "not-found");
        await assert.rejects(waitDeployed(seq(d("pending")), async () => undefined, { timeoutMs: 50, pollMs: 5 }), (e: unknown) => e instanceof RunnerError && e.kind === "timeout" && /not deployed after 0 s: pending now/.test(e.message));
    });
});
