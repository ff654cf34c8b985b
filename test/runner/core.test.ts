/** The runner's core without I/O: requests, policy, planning, freeze windows and queues. */
import * as assert from "node:assert/strict";

import { durationMinutes, parseSchedule, scheduleMatches, windowOpenSince } from "../../src/runner/cron";
import { lineChanges } from "../../src/runner/runner";
import {
    Actor,
    PipelineStage,
    PromoteDecisionInput,
    adoptLanded,
    checkApprover,
    decidePromotion,
    parsePromoteRequest,
    planHold,
    planPromotion,
    rollbackTarget,
} from "../../src/runner/core";
import { RunnerError, exitCode, httpStatus, publicError } from "../../src/runner/errors";
import { StackQueues } from "../../src/runner/queue";
import { DEFAULT_USER_VERBS } from "../../src/runner/rights";

const stage = (name: string, extra: Partial<PipelineStage> = {}): PipelineStage => ({
    name,
    sync: name === "itg" ? "automatic" : "manual",
    owners: [`${name}-owners`],
    namespaces: [name],
    queue: name === "itg" ? "coalesce" : "fifo",
    requireApproval: false,
    freezeWindows: [],
    ...extra,
});
const stages = [stage("itg"), stage("tst"), stage("perf"), stage("prod", { requireApproval: true })];
const rel = (version: string, hold?: { by: string; reason: string; at: string }) => ({ version, requestId: "r-0", requester: "ci", promotedAt: "2026-11-25T10:00:00Z", ...(hold ? { hold } : {}) });
const ci: Actor = { name: "ci", teams: [], canOverrideOrder: false, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };
const ops: Actor = { name: "alice", teams: ["prod-owners"], canOverrideOrder: true, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };
const request = (to: string, version = "1.1.0", extra: Record<string, unknown> = {}) =>
    parsePromoteRequest({ app: "web", version, to, requester: "ci", source: { commit: "abcdef0" }, ...extra });

function input(to: string, over: Partial<PromoteDecisionInput> = {}): PromoteDecisionInput {
    return {
        stages,
        running: { itg: { web: rel("1.1.0") }, tst: { web: rel("1.0.0") }, perf: { web: rel("1.0.0") }, prod: { web: rel("1.0.0") } },
        request: request(to),
        actor: ci,
        now: new Date("2026-11-25T12:00:00Z"),
        approvals: [],
        published: true,
        ...over,
    };
}

function refusal(fn: () => unknown): [string, string | undefined, string] {
    try {
        fn();
    } catch (e) {
        if (e instanceof RunnerError) return [e.kind, e.reason, e.message];
        throw e;
    }
    assert.fail("expected a refusal");
}

describe("promotion requests", function () {
    it("accept the documented shape", function () {
        const r = parsePromoteRequest({ app: "web", version: "1.2.0", to: "itg", requester: "ci", source: { commit: "abcdef0", mr: 12, ciRunUrl: "https://ci.example/1" }, idempotencyKey: "web-1.2.0-itg" });
        assert.deepEqual(r, { app: "web", version: "1.2.0", to: "itg", requester: "ci", source: { commit: "abcdef0", mr: 12, ciRunUrl: "https://ci.example/1" }, idempotencyKey: "web-1.2.0-itg", dryRun: false, overrideOrder: false });
    });

    const bad: [string, Record<string, unknown>, string][] = [
        ["an unknown field", { force: true }, "request.force: is not a known setting"],
        ["a path in the app name", { app: "../web" }, 'app = "../web": must be a DNS label'],
        ["a dash-prefixed stage", { to: "-prod" }, 'to = "-prod": must be a DNS label'],
        ["a v-prefixed version", { version: "v1.0.0" }, 'version = "v1.0.0": must be a semantic version'],
        ["a bundle without image", { bundle: "/tmp/b" }, "image: is required with bundle"],
        ["a non-hex commit", { source: { commit: "HEAD" } }, 'source.commit = "HEAD": must be a git commit id'],
        ["a bad idempotency key", { idempotencyKey: "a b" }, 'idempotencyKey = "a b": must be 1 to 128 letters'],
    ];
    for (const [title, over, message] of bad) {
        it(`refuse ${title} as invalid (exit 2, HTTP 400)`, function () {
            const [kind, , msg] = refusal(() => parsePromoteRequest({ app: "web", version: "1.0.0", to: "itg", requester: "ci", source: { commit: "abcdef0" }, ...over }));
            assert.equal(kind, "invalid");
            assert.ok(msg.includes(message), msg);
            const e = new RunnerError(kind as "invalid", msg);
            assert.equal(exitCode(e), 2);
            assert.equal(httpStatus(e), 400);
        });
    }
});

describe("promotion policy", function () {
    it("allows the next stage when the previous one runs exactly that release", function () {
        assert.deepEqual(decidePromotion(input("tst")), { action: "update", overrideOrder: false });
    });

    it("treats a release that already runs in the stage as a no-op", function () {
        assert.deepEqual(decidePromotion(input("itg")), { action: "noop", message: "web 1.1.0 already runs in itg" });
    });

    const refusals: [string, () => unknown, [string, string | undefined, string]][] = [
        ["skipping a stage", () => decidePromotion(input("perf")), ["refused", "stage-order", "web 1.1.0 cannot go to perf: tst runs web 1.0.0 (a release moves one stage at a time)"]],
        ["an app the previous stage does not run", () => decidePromotion(input("tst", { request: parsePromoteRequest({ app: "api", version: "1.0.0", to: "tst", requester: "ci", source: { commit: "abcdef0" } }) })), ["refused", "stage-order", "api 1.0.0 cannot go to tst: itg runs no api (a release moves one stage at a time)"]],
        ["an override by someone without the right", () => decidePromotion(input("perf", { request: request("perf", "1.1.0", { overrideOrder: true }) })), ["forbidden", "override-not-allowed", "ci may not override the stage order"]],
        ["an unknown stage", () => decidePromotion(input("staging")), ["not-found", undefined, 'unknown stage "staging" (stages: itg, tst, perf, prod)']],
        ["an unpublished release without bundle", () => decidePromotion(input("itg", { request: request("itg", "9.0.0"), published: false })), ["not-found", undefined, "release web@9.0.0 is not published: promote it to the first stage with its bundle first"]],
        ["a held app", () => decidePromotion(input("tst", { running: { itg: { web: rel("1.1.0") }, tst: { web: rel("1.0.0", { by: "bob", reason: "incident 42", at: "2026-11-25T09:00:00Z" }) } } })), ["refused", "hold", "web is on hold in tst since 2026-11-25T09:00:00Z by bob (incident 42): release the hold first (stages release)"]],
        ["a missing approval", () => decidePromotion(input("prod", { running: { perf: { web: rel("1.1.0") }, prod: { web: rel("1.0.0") } } })), ["refused", "approval", "promotion of web 1.1.0 to prod needs an approval by one of prod-owners: stages approve web@1.1.0 --stage prod"]],
    ];
    for (const [title, fn, expected] of refusals) {
        it(`refuses ${title}`, function () {
            assert.deepEqual(refusal(fn), expected);
        });
    }

    it("records an override of the stage order by someone who may", function () {
        assert.deepEqual(decidePromotion(input("perf", { actor: ops, request: request("perf", "1.1.0", { overrideOrder: true }) })), { action: "update", overrideOrder: true });
    });

    it("lets an approved promotion through: the approval names the release, so any request bringing it passes", function () {
        const prodInput = (approvals: { app: string; version: string; stage: string; by: string; at: string }[]) =>
            input("prod", { running: { perf: { web: rel("1.1.0") }, prod: { web: rel("1.0.0") } }, request: request("prod", "1.1.0"), approvals });
        assert.equal(decidePromotion(prodInput([{ app: "web", version: "1.1.0", stage: "prod", by: "alice", at: "2026-11-25T11:00:00Z" }])).action, "update");
        for (const other of [{ app: "web", version: "1.0.9", stage: "prod" }, { app: "api", version: "1.1.0", stage: "prod" }, { app: "web", version: "1.1.0", stage: "perf" }]) {
            assert.deepEqual(refusal(() => decidePromotion(prodInput([{ ...other, by: "alice", at: "2026-11-25T11:00:00Z" }]))).slice(0, 2), ["refused", "approval"], JSON.stringify(other));
        }
    });

    it("only an owner of the stage may approve", function () {
        assert.doesNotThrow(() => checkApprover(stages[3], ops));
        assert.deepEqual(refusal(() => checkApprover(stages[3], ci)), ["forbidden", "not-owner", "ci is not an owner of prod (owners: prod-owners)"]);
    });

    it("refuses during a deny window, in the window's time zone", function () {
        const frozen = [stage("itg"), stage("tst", { freezeWindows: [{ kind: "deny", schedule: "0 18 * * 5", duration: "60h", timeZone: "Europe/Paris", manualSync: false }] })];
        // Saturday 2026-11-28 12:00 UTC is inside Friday 18:00 Paris + 60h.
        const saturday = new Date("2026-11-28T12:00:00Z");
        assert.deepEqual(refusal(() => decidePromotion(input("tst", { stages: frozen, now: saturday }))), [
            "refused",
            "freeze",
            'stage tst is frozen: deny window "0 18 * * 5" (60h, Europe/Paris) is open',
        ]);
        assert.equal(decidePromotion(input("tst", { stages: frozen, now: new Date("2026-11-26T12:00:00Z") })).action, "update");
    });

    it("refuses outside every allow window", function () {
        const office = [stage("itg"), stage("tst", { freezeWindows: [{ kind: "allow", schedule: "0 9 * * 1-5", duration: "8h", timeZone: "UTC", manualSync: false }] })];
        assert.equal(refusal(() => decidePromotion(input("tst", { stages: office, now: new Date("2026-11-25T20:00:00Z") })))[1], "freeze");
        assert.equal(decidePromotion(input("tst", { stages: office, now: new Date("2026-11-25T10:00:00Z") })).action, "update");
    });
});

describe("planning", function () {
    it("a promotion changes only the app's entry", function () {
        const before = { web: rel("1.0.0"), api: rel("2.0.0") };
        const after = planPromotion(before, { kind: "promote", app: "web", version: "1.1.0", requestId: "r-2", requester: "ci", sourceCommit: "abcdef0" }, "2026-11-25T12:00:00Z");
        assert.deepEqual(after.api, before.api);
        assert.deepEqual(after.web, { version: "1.1.0", requestId: "r-2", requester: "ci", promotedAt: "2026-11-25T12:00:00Z", sourceCommit: "abcdef0" });
    });

    it("holds are set and cleared without touching the release", function () {
        const held = planHold({ web: rel("1.0.0") }, "web", "tst", { by: "bob", reason: "x", at: "2026-11-25T12:00:00Z" });
        assert.equal(held.web.hold?.by, "bob");
        assert.equal(planHold(held, "web", "tst", undefined).web.hold, undefined);
        assert.deepEqual(refusal(() => planHold({}, "web", "tst", undefined)), ["not-found", undefined, "web does not run in tst"]);
    });

    it("a rollback goes to the previous version in the stage's history unless told otherwise", function () {
        assert.equal(rollbackTarget("web", "prod", "1.2.0", ["1.2.0", "1.2.0", "1.1.0", "1.0.0"]), "1.1.0");
        assert.equal(rollbackTarget("web", "prod", "1.2.0", ["1.2.0", "1.1.0"], "1.0.0"), "1.0.0");
        assert.deepEqual(refusal(() => rollbackTarget("web", "prod", "1.2.0", ["1.2.0"])), ["not-found", undefined, "prod has no earlier release of web to roll back to"]);
    });
});

describe("re-running a request whose commit landed", function () {
    const planned = { web: { version: "1.1.0", requestId: "r-7", requester: "ci", promotedAt: "2026-11-25T12:00:09Z" }, api: { version: "2.0.0", requestId: "r-1", requester: "ci", promotedAt: "2026-11-25T11:00:00Z" } };
    it("takes the landed timestamp when the ledger shows the same request and version", function () {
        const landed = { web: { version: "1.1.0", requestId: "r-7", promotedAt: "2026-11-25T12:00:01Z" } };
        assert.equal(adoptLanded(planned, landed, "web").web.promotedAt, "2026-11-25T12:00:01Z");
        assert.equal(adoptLanded(planned, landed, "web").api, planned.api);
    });
    it("leaves a new request alone", function () {
        assert.equal(adoptLanded(planned, { web: { version: "1.1.0", requestId: "r-6", promotedAt: "2026-11-25T12:00:01Z" } }, "web"), planned);
        assert.equal(adoptLanded(planned, { web: { version: "1.0.0", requestId: "r-7", promotedAt: "2026-11-25T12:00:01Z" } }, "web"), planned);
        assert.equal(adoptLanded(planned, {}, "web"), planned);
    });
    it("takes the landed time of the same hold", function () {
        const held = { web: { ...planned.web, hold: { by: "ops", reason: "incident", at: "2026-11-25T12:05:00Z" } } };
        const landed = { web: { ...planned.web, hold: { by: "ops", reason: "incident", at: "2026-11-25T12:04:00Z" } } };
        assert.equal(adoptLanded(held, landed, "web").web.hold?.at, "2026-11-25T12:04:00Z");
        assert.equal(adoptLanded(held, { web: { ...landed.web, hold: { by: "ops", reason: "other", at: "x" } } }, "web").web.hold?.at, "2026-11-25T12:05:00Z");
    });
});

describe("errors are mapped once", function () {
    const table: [RunnerError["kind"], number, number][] = [
        ["invalid", 2, 400],
        ["unauthorized", 3, 401],
        ["forbidden", 3, 403],
        ["not-found", 4, 404],
        ["refused", 3, 409],
        ["conflict", 5, 409],
        ["timeout", 5, 504],
        ["internal", 1, 500],
    ];
    for (const [kind, code, status] of table) {
        it(`${kind}: exit ${code}, HTTP ${status}`, function () {
            assert.equal(exitCode(new RunnerError(kind, "x")), code);
            assert.equal(httpStatus(new RunnerError(kind, "x")), status);
        });
    }
    it("an unexpected error shows only the request id", function () {
        assert.deepEqual(publicError(new Error("password=hunter2 in /etc/secret"), "req-9"), { kind: "internal", message: "internal error; see the runner's log for request req-9", requestId: "req-9" });
        assert.equal(exitCode(new Error("x")), 1);
    });
});

describe("freeze window evaluation", function () {
    it("parses cron fields with ranges, lists and steps", function () {
        const at = (iso: string) => scheduleMatches("*/15 9-17 * * 1-5", "UTC", new Date(iso));
        assert.equal(at("2026-11-25T09:30:00Z"), true);
        assert.equal(at("2026-11-25T09:30:42Z"), true, "any second of the matching minute");
        assert.equal(at("2026-11-25T09:31:00Z"), false);
        assert.equal(at("2026-11-29T10:00:00Z"), false, "Sunday");
        assert.throws(() => parseSchedule("61 * * * *"), /schedule "61 \* \* \* \*": Invalid value for minute: 61/);
        assert.throws(() => parseSchedule("* * *"), /schedule "\* \* \*" must be a cron schedule Argo CD accepts/);
    });
    it("takes what Argo CD's sync windows take: names, descriptors, IANA zones; refuses what it does not", function () {
        // Friday 18:00 in Paris is 17:00 UTC in winter.
        assert.equal(scheduleMatches("0 18 * * FRI", "Europe/Paris", new Date("2026-12-04T17:00:00Z")), true);
        assert.equal(scheduleMatches("0 18 * * 5", "Europe/Paris", new Date("2026-12-04T17:00:00Z")), true);
        assert.equal(scheduleMatches("0 0 ? * *", "UTC", new Date("2026-12-04T00:00:00Z")), true, "? is any, as in robfig/cron");
        assert.equal(scheduleMatches("0 9 * JAN-MAR mon", "UTC", new Date("2026-01-05T09:00:00Z")), true);
        // Argo CD's parser has no descriptors and numbers the days of the week 0-6.
        for (const bad of ["@daily", "@every 1h", "0 0 L * *", "0 0 * * 5#2", "0 0 0 * * *", "0 0 * * 7", "0 0 * * 5-7"]) {
            assert.throws(() => parseSchedule(bad), /must be a cron schedule Argo CD accepts/, bad);
        }
        assert.throws(() => parseSchedule("0 18 * * 5", "Europe/Pari"), /time zone "Europe\/Pari" must be an IANA time zone/);
        assert.throws(() => parseSchedule("0 18 * * 5", "europe/paris"), /time zone "europe\/paris" must be an IANA time zone.*did you mean Europe\/Paris/);
        // Daylight saving: 18:00 in Paris is 16:00 UTC in summer.
        assert.equal(windowOpenSince("0 18 * * 5", "1h", "Europe/Paris", new Date("2026-07-03T16:30:00Z"))?.toISOString(), "2026-07-03T16:00:00.000Z");
    });
    it("parses durations", function () {
        assert.equal(durationMinutes("1h30m"), 90);
        assert.equal(durationMinutes("60h"), 3600);
        assert.throws(() => durationMinutes("1d"), /duration "1d" must be a duration such as/);
    });
    it("finds the start of an open window across midnight and time zones", function () {
        const since = windowOpenSince("0 22 * * *", "4h", "America/New_York", new Date("2026-11-26T04:30:00Z"));
        assert.equal(since?.toISOString(), "2026-11-26T03:00:00.000Z");
        assert.equal(windowOpenSince("0 22 * * *", "4h", "America/New_York", new Date("2026-11-26T08:00:00Z")), undefined);
    });
});

describe("stack queues", function () {
    const deferred = () => {
        let release!: () => void;
        const p = new Promise<void>((r) => (release = r));
        return { p, release };
    };

    it("runs one job per stack at a time, in order, and different stacks in parallel", async function () {
        const q = new StackQueues();
        const log: string[] = [];
        const gate = deferred();
        const job = (stack: string, id: string, wait?: Promise<void>) =>
            q.submit({ stack, id, run: async () => {
                log.push(`start ${id}`);
                if (wait) await wait;
                log.push(`end ${id}`);
                return id;
            } });
        const a1 = job("tst", "a1", gate.p);
        const a2 = job("tst", "a2");
        const b1 = job("prod", "b1");
        await b1;
        assert.deepEqual(log, ["start a1", "start b1", "end b1"], "prod must not wait for tst");
        gate.release();
        await Promise.all([a1, a2]);
        assert.deepEqual(log.slice(3), ["end a1", "start a2", "end a2"]);
    });

    it("cancelAll aborts the running job's signal and fails waiting ones", async function () {
        const q = new StackQueues();
        let aborted = false;
        const running = q.submit({ stack: "tst", id: "r1", run: (signal) => new Promise((_, reject) => signal.addEventListener("abort", () => ((aborted = true), reject(signal.reason)))) });
        const waiting = q.submit({ stack: "tst", id: "r2", run: async () => "never" });
        q.cancelAll(new RunnerError("conflict", "interrupted by SIGTERM"));
        const [a, b] = await Promise.all([running, waiting]);
        assert.equal(aborted, true);
        assert.equal(a.state, "failed");
        assert.equal(b.state, "failed");
    });
});

describe("a preview's file changes", function () {
    it("come from a real line diff: a line equal to one elsewhere in the file still shows as added", function () {
        assert.deepEqual(lineChanges("a\nb\n", "a\nb\na\n"), { removed: [], added: ["a"] });
        assert.deepEqual(lineChanges("x: 1\ny: 1\n", "x: 2\ny: 1\n"), { removed: ["x: 1"], added: ["x: 2"] });
        assert.deepEqual(lineChanges(undefined, "new\n"), { removed: [], added: ["new"] });
        assert.deepEqual(lineChanges("same\n", "same\n"), { removed: [], added: [] });
    });
});
