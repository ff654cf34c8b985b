/**
 * Parity of the two transports: one table of requests (valid ones; invalid in each field;
 * forbidden; unauthorized; refused by each policy; not found; conflicting) is driven through the
 * `stages` CLI (a process per request, acting with a bearer token in GITOPS_STAGES_TOKEN) on one
 * pipeline, and through the service's HTTP API (the same token) on a second pipeline bootstrapped
 * the same way. Each request must end in the same outcome kind on both, the CLI's exit code and
 * the service's status must be the ones the error map gives that kind, and the two ops repos must
 * hold the same commits (subjects and trailers, request ids aside) and the same ledgers.
 *
 * CI size (npm test): every row but the slow ones marked `full`; full size (npm run reliability,
 * PARITY=full): all of them.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { bundleFiles } from "../../src/cli/ci";
import { ERROR_MAP, type ErrorKind } from "../../src/runner/error-map";
import { Service } from "../../src/service/server";
import { SqliteStore } from "../../src/service/sqlite-store";
import { repoRoot } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";
import { plant } from "../support/planted";
import { Pipeline, bootstrapPipeline, injectApi, settle } from "../support/service";

const STAGES_BIN = path.join(repoRoot, "bin", "stages");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FULL = process.env.PARITY === "full";

/** Who sends a row: a token both transports present. */
type Who = "operator" | "ci-itg" | "viewer" | "approver" | "stranger";

/** One request in both spellings. */
interface Row {
    readonly name: string;
    readonly as: Who;
    readonly cli: string[];
    readonly http: readonly [method: "GET" | "POST", route: string, body?: Record<string, unknown>];
    /** The outcome both must reach. */
    readonly expect: ErrorKind | "ok";
    /** The refusal's reason, when the row is about one. */
    readonly reason?: string;
    /** Rows that run an update (slow): run at full size only, unless a later row needs their effect. */
    readonly full?: boolean;
}

/** Both pipelines' stages: itg, tst, prod (owners approve), frz (always in a freeze window). */
const STAGES = [
    { name: "itg" },
    { name: "tst" },
    { name: "prod", owners: ["prod-owners"], requireApproval: true },
    { name: "frz", freezeWindows: [{ kind: "deny", schedule: "* * * * *", duration: "1h", timeZone: "UTC" }] },
];

describe("parity of the CLI and the HTTP API: one table, the same outcomes, exit codes, statuses and commits", function () {
    let cliSide: Pipeline;
    let httpSide: Pipeline;
    let service: Service;
    const tokens: Record<Exclude<Who, "ci-itg">, string> = {
        operator: "",
        viewer: plant(`viewer-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`),
        approver: plant(`approver-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`),
        stranger: plant(`stranger-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`),
    };
    const bundles: Record<string, string> = {};
    let secretFile = "";

    before(async function () {
        const configured = [
            { name: "viewer", token: tokens.viewer, rights: [{ stages: ["*"], verbs: ["status", "history"] }] },
            // Holds the approve right everywhere but owns no stage: approvals are the owners' to give.
            { name: "approver", token: tokens.approver, rights: [{ stages: ["*"], verbs: ["approve", "status"] }] },
        ];
        cliSide = await bootstrapPipeline("gitops-stages-parity-cli-", STAGES, configured);
        httpSide = await bootstrapPipeline("gitops-stages-parity-http-", STAGES, configured);
        const stages = ["itg", "tst", "prod", "frz", "mr"];
        bundles.web1 = makeBundleDir(cliSide.dir, "web", { stages });
        bundles.web2 = makeBundleDir(cliSide.dir, "web", { stages, replicas: 2 });
        bundles.webOther = makeBundleDir(cliSide.dir, "web", { stages, replicas: 3 });
        bundles.api1 = makeBundleDir(cliSide.dir, "api", { stages });
        // A secret value the CLI reads from a file (never from its command line); the body carries it as base64.
        secretFile = path.join(cliSide.dir, "secret-value.txt");
        fs.writeFileSync(secretFile, "parity-value", { mode: 0o600 });
        service = new Service({ assembled: await httpSide.runner(), store: new SqliteStore(path.join(httpSide.dataDir, "service", "requests.db")), replicaId: "parity", log: () => undefined, limits: { ratePerMinute: 100_000, burst: 10_000 } });
        await service.open();
    });

    after(async function () {
        await service?.stop();
        cliSide?.dispose();
        httpSide?.dispose();
    });

    /** The token of `who` on a side (the platform generates each side's CI and operator tokens). */
    function token(side: Pipeline, who: Who): string {
        if (who === "ci-itg") return side.ciTokens.itg;
        if (who === "operator") return side.operatorToken;
        return tokens[who];
    }

    /** A promotion in both spellings. */
    function promote(name: string, as: Who, app: string, version: string, to: string, expect: Row["expect"], opts: { bundle?: string; image?: string; extraCli?: string[]; extraBody?: Record<string, unknown>; reason?: string; full?: boolean; verb?: "promote" | "preview" } = {}): Row {
        const verb = opts.verb ?? "promote";
        return {
            name,
            as,
            expect,
            ...(opts.reason ? { reason: opts.reason } : {}),
            ...(opts.full ? { full: true } : {}),
            cli: [verb, `${app}@${version}`, "--to", to, "--commit", COMMIT, ...(opts.bundle ? ["--bundle", bundles[opts.bundle]] : []), ...(opts.image ? ["--image", opts.image] : []), ...(opts.extraCli ?? [])],
            http: ["POST", `/v1/${verb}`, { app, version, to, source: { commit: COMMIT }, ...(opts.bundle ? { bundle: bundleFiles(bundles[opts.bundle]) } : {}), ...(opts.image ? { image: opts.image } : {}), ...(opts.extraBody ?? {}) }],
        };
    }

    /** The table, built once the bundles exist. */
    const table = (): Row[] => [
        // Valid requests and refusals by policy, in an order that builds the state later rows need.
        promote("publish web 1.0.0 with its first promotion", "ci-itg", "web", "1.0.0", "itg", "ok", { bundle: "web1", image: "registry.example/web:1.0.0" }),
        promote("preview web 1.0.0 into tst", "operator", "web", "1.0.0", "tst", "ok", { verb: "preview" }),
        promote("promote web 1.0.0 into tst", "operator", "web", "1.0.0", "tst", "ok"),
        promote("the same promotion again: nothing to do", "operator", "web", "1.0.0", "tst", "ok", { full: true }),
        { name: "status of every stage", as: "viewer", cli: ["status"], http: ["GET", "/v1/status"], expect: "ok" },
        { name: "status of one stage", as: "ci-itg", cli: ["status", "--stage", "itg"], http: ["GET", "/v1/status?stage=itg"], expect: "ok", full: true },
        { name: "history of a stage", as: "viewer", cli: ["history", "itg"], http: ["GET", "/v1/history/itg"], expect: "ok", full: true },
        { name: "approval by a non-owner", as: "approver", cli: ["approve", "web@1.0.0", "--stage", "prod"], http: ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }], expect: "forbidden", reason: "not-owner" },
        { name: "approval on a stage that needs none", as: "operator", cli: ["approve", "web@1.0.0", "--stage", "tst"], http: ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "tst" }], expect: "refused", reason: "no-approval" },
        { name: "approval of a release never published", as: "operator", cli: ["approve", "web@9.9.9", "--stage", "prod"], http: ["POST", "/v1/approve", { app: "web", version: "9.9.9", stage: "prod" }], expect: "not-found" },
        promote("refused without an approval", "operator", "web", "1.0.0", "prod", "refused", { reason: "approval" }),
        { name: "approval by an owner", as: "operator", cli: ["approve", "web@1.0.0", "--stage", "prod"], http: ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }], expect: "ok" },
        promote("promote into prod with the approval", "operator", "web", "1.0.0", "prod", "ok", { full: true }),
        promote("refused by a freeze window", "operator", "web", "1.0.0", "frz", "refused", { reason: "freeze", full: true }),
        promote("publish web 1.1.0", "ci-itg", "web", "1.1.0", "itg", "ok", { bundle: "web2", image: "registry.example/web:1.1.0" }),
        promote("a published release again with other content", "ci-itg", "web", "1.0.0", "itg", "conflict", { bundle: "webOther", image: "registry.example/web:1.0.0", reason: "release-conflict" }),
        { name: "hold web in tst", as: "operator", cli: ["hold", "web", "--stage", "tst", "--reason", "parity"], http: ["POST", "/v1/hold", { app: "web", stage: "tst", reason: "parity" }], expect: "ok", full: true },
        promote("refused by a hold", "operator", "web", "1.1.0", "tst", "refused", { reason: "hold", full: true }),
        { name: "release the hold", as: "operator", cli: ["release", "web", "--stage", "tst"], http: ["POST", "/v1/release", { app: "web", stage: "tst" }], expect: "ok", full: true },
        promote("refused for skipping a stage", "operator", "web", "1.1.0", "prod", "refused", { reason: "stage-order" }),
        { name: "roll web back in itg", as: "operator", cli: ["rollback", "web", "--stage", "itg"], http: ["POST", "/v1/rollback", { app: "web", stage: "itg" }], expect: "ok", full: true },
        { name: "release the rollback's hold", as: "operator", cli: ["release", "web", "--stage", "itg"], http: ["POST", "/v1/release", { app: "web", stage: "itg" }], expect: "ok", full: true },
        { name: "drift of a stage", as: "operator", cli: ["drift", "--stage", "itg"], http: ["POST", "/v1/drift", { stage: "itg" }], expect: "ok", full: true },
        { name: "a merge-request environment", as: "ci-itg", cli: ["mr", "deploy", "--mr", "5", "--app", "web", "--bundle", bundles.web1, "--image", "registry.example/web:mr-5", "--commit", "abcdef0"], http: ["POST", "/v1/mr/deploy", { mr: 5, app: "web", bundle: bundleFiles(bundles.web1), image: "registry.example/web:mr-5", sourceCommit: "abcdef0" }], expect: "ok", full: true },
        { name: "destroy it", as: "ci-itg", cli: ["mr", "destroy", "5"], http: ["POST", "/v1/mr/destroy", { mr: 5 }], expect: "ok", full: true },
        { name: "reap expired merge-request environments", as: "ci-itg", cli: ["mr", "reap"], http: ["POST", "/v1/mr/reap", {}], expect: "ok" },

        // Invalid: one field at a time, named with its rule, whoever asks.
        promote("version not semantic", "operator", "web", "v1", "itg", "invalid"),
        promote("app not a DNS label", "operator", "Web_App", "1.0.0", "itg", "invalid", { full: true }),
        promote("stage not a DNS label", "operator", "web", "1.0.0", "Tst_1", "invalid", { full: true }),
        promote("idempotency key with a space", "operator", "web", "1.0.0", "itg", "invalid", { extraCli: ["--idempotency-key", "a key"], extraBody: { idempotencyKey: "a key" } }),
        promote("CI run not a URL", "operator", "web", "1.0.0", "itg", "invalid", { extraCli: ["--ci-run", "not a url"], extraBody: { source: { commit: COMMIT, ciRunUrl: "not a url" } }, full: true }),
        promote("merge request not a number", "operator", "web", "1.0.0", "itg", "invalid", { extraCli: ["--mr", "abc"], extraBody: { source: { commit: COMMIT, mr: "abc" } } }),
        promote("merge request zero", "operator", "web", "1.0.0", "itg", "invalid", { extraCli: ["--mr", "0"], extraBody: { source: { commit: COMMIT, mr: 0 } }, full: true }),
        promote("reason too long", "operator", "web", "1.0.0", "itg", "invalid", { extraCli: ["--reason", "x".repeat(1001)], extraBody: { reason: "x".repeat(1001) }, full: true }),
        promote("invalid by a viewer too (input before rights)", "viewer", "web", "v1", "itg", "invalid"),
        { name: "source commit not hex", as: "operator", cli: ["promote", "web@1.0.0", "--to", "itg", "--commit", "xyz"], http: ["POST", "/v1/promote", { app: "web", version: "1.0.0", to: "itg", source: { commit: "xyz" } }], expect: "invalid" },
        { name: "source commit missing", as: "operator", cli: ["promote", "web@1.0.0", "--to", "itg"], http: ["POST", "/v1/promote", { app: "web", version: "1.0.0", to: "itg", source: {} }], expect: "invalid", full: true },
        { name: "rollback without a stage", as: "operator", cli: ["rollback", "web"], http: ["POST", "/v1/rollback", { app: "web" }], expect: "invalid" },
        { name: "rollback to a version not semantic", as: "operator", cli: ["rollback", "web", "--stage", "itg", "--to", "latest"], http: ["POST", "/v1/rollback", { app: "web", stage: "itg", to: "latest" }], expect: "invalid", full: true },
        { name: "hold without an app", as: "operator", cli: ["hold", "--stage", "tst"], http: ["POST", "/v1/hold", { stage: "tst" }], expect: "invalid" },
        { name: "hold in a stage not a DNS label", as: "operator", cli: ["hold", "web", "--stage", "TST"], http: ["POST", "/v1/hold", { app: "web", stage: "TST" }], expect: "invalid", full: true },
        { name: "approve a version not semantic", as: "operator", cli: ["approve", "web@one", "--stage", "prod"], http: ["POST", "/v1/approve", { app: "web", version: "one", stage: "prod" }], expect: "invalid", full: true },
        { name: "approve without a stage", as: "operator", cli: ["approve", "web@1.0.0"], http: ["POST", "/v1/approve", { app: "web", version: "1.0.0" }], expect: "invalid", full: true },
        { name: "status of a stage not a DNS label", as: "viewer", cli: ["status", "--stage", "X_Y"], http: ["GET", "/v1/status?stage=X_Y"], expect: "invalid" },
        { name: "history of a commit that is not one", as: "viewer", cli: ["history", "itg", "--commit", "HEAD~1"], http: ["GET", "/v1/history/itg/commits/HEAD~1"], expect: "invalid" },
        { name: "drift of a stage not a DNS label", as: "operator", cli: ["drift", "--stage", "a.b"], http: ["POST", "/v1/drift", { stage: "a.b" }], expect: "invalid", full: true },
        { name: "merge request number zero", as: "ci-itg", cli: ["mr", "deploy", "--mr", "0", "--app", "web", "--bundle", bundles.web1, "--image", "r/web:1", "--commit", "abcdef0"], http: ["POST", "/v1/mr/deploy", { mr: 0, app: "web", bundle: bundleFiles(bundles.web1), image: "r/web:1", sourceCommit: "abcdef0" }], expect: "invalid", full: true },
        { name: "merge request image without a tag", as: "ci-itg", cli: ["mr", "deploy", "--mr", "6", "--app", "web", "--bundle", bundles.web1, "--image", "noimage", "--commit", "abcdef0"], http: ["POST", "/v1/mr/deploy", { mr: 6, app: "web", bundle: bundleFiles(bundles.web1), image: "noimage", sourceCommit: "abcdef0" }], expect: "invalid" },
        { name: "merge request to destroy not a number", as: "ci-itg", cli: ["mr", "destroy", "abc"], http: ["POST", "/v1/mr/destroy", { mr: "abc" }], expect: "invalid", full: true },
        { name: "secret list of a stage not a DNS label", as: "operator", cli: ["secret", "list", "--stage", "Bad"], http: ["GET", "/v1/secrets?stage=Bad"], expect: "invalid" },
        { name: "secret set into a stage not a DNS label", as: "operator", cli: ["secret", "set", "web", `TOKEN=@${secretFile}`, "--stage", "Bad"], http: ["POST", "/v1/secrets/set", { app: "web", stage: "Bad", values: { TOKEN: Buffer.from("parity-value").toString("base64") } }], expect: "invalid" },
        { name: "secret removal of an app not a DNS label", as: "operator", cli: ["secret", "rm", "Bad_App", "TOKEN", "--stage", "itg"], http: ["POST", "/v1/secrets/rm", { app: "Bad_App", stage: "itg", keys: ["TOKEN"] }], expect: "invalid" },
        { name: "reseal of a stage not a DNS label", as: "operator", cli: ["secret", "reseal", "--stage", "a.b"], http: ["POST", "/v1/secrets/reseal", { stage: "a.b" }], expect: "invalid", full: true },

        // Forbidden: a right the principal lacks (and nothing else wrong).
        promote("a viewer promotes", "viewer", "web", "1.0.0", "itg", "forbidden", { reason: "rights" }),
        promote("itg's CI token promotes into tst", "ci-itg", "web", "1.0.0", "tst", "forbidden", { reason: "rights" }),
        promote("itg's CI token into a stage that does not exist", "ci-itg", "web", "1.0.0", "nope", "forbidden", { reason: "rights", full: true }),
        { name: "CI rolls back", as: "ci-itg", cli: ["rollback", "web", "--stage", "itg"], http: ["POST", "/v1/rollback", { app: "web", stage: "itg" }], expect: "forbidden", reason: "rights" },
        { name: "CI holds", as: "ci-itg", cli: ["hold", "web", "--stage", "itg"], http: ["POST", "/v1/hold", { app: "web", stage: "itg" }], expect: "forbidden", reason: "rights", full: true },
        { name: "CI approves", as: "ci-itg", cli: ["approve", "web@1.0.0", "--stage", "prod"], http: ["POST", "/v1/approve", { app: "web", version: "1.0.0", stage: "prod" }], expect: "forbidden", reason: "rights" },
        { name: "a viewer looks for drift", as: "viewer", cli: ["drift", "--stage", "itg"], http: ["POST", "/v1/drift", { stage: "itg" }], expect: "forbidden", reason: "rights", full: true },
        { name: "a viewer deploys a merge request", as: "viewer", cli: ["mr", "deploy", "--mr", "7", "--app", "web", "--bundle", bundles.web1, "--image", "r/web:1", "--commit", "abcdef0"], http: ["POST", "/v1/mr/deploy", { mr: 7, app: "web", bundle: bundleFiles(bundles.web1), image: "r/web:1", sourceCommit: "abcdef0" }], expect: "forbidden", reason: "rights" },
        { name: "CI lists secrets", as: "ci-itg", cli: ["secret", "list", "--stage", "itg"], http: ["GET", "/v1/secrets?stage=itg"], expect: "forbidden", reason: "rights" },
        { name: "CI sets a secret", as: "ci-itg", cli: ["secret", "set", "web", `TOKEN=@${secretFile}`, "--stage", "itg"], http: ["POST", "/v1/secrets/set", { app: "web", stage: "itg", values: { TOKEN: Buffer.from("parity-value").toString("base64") } }], expect: "forbidden", reason: "rights" },
        { name: "CI removes a secret", as: "ci-itg", cli: ["secret", "rm", "web", "TOKEN", "--stage", "itg"], http: ["POST", "/v1/secrets/rm", { app: "web", stage: "itg", keys: ["TOKEN"] }], expect: "forbidden", reason: "rights", full: true },
        { name: "CI reseals a stage's secrets", as: "ci-itg", cli: ["secret", "reseal", "--stage", "itg"], http: ["POST", "/v1/secrets/reseal", { stage: "itg" }], expect: "forbidden", reason: "rights" },
        { name: "a viewer reaps merge-request environments", as: "viewer", cli: ["mr", "reap"], http: ["POST", "/v1/mr/reap", {}], expect: "forbidden", reason: "rights", full: true },
        { name: "CI reads another stage's history", as: "ci-itg", cli: ["history", "tst"], http: ["GET", "/v1/history/tst"], expect: "forbidden", reason: "rights", full: true },
        { name: "CI reads another stage's status", as: "ci-itg", cli: ["status", "--stage", "tst"], http: ["GET", "/v1/status?stage=tst"], expect: "forbidden", reason: "rights", full: true },

        // Unauthorized: a token nobody issued.
        { name: "status with an unknown token", as: "stranger", cli: ["status"], http: ["GET", "/v1/status"], expect: "unauthorized" },
        promote("promote with an unknown token", "stranger", "web", "1.0.0", "itg", "unauthorized", { full: true }),

        // Not found.
        promote("a stage that does not exist", "operator", "web", "1.0.0", "nope", "not-found"),
        { name: "status of a stage that does not exist", as: "operator", cli: ["status", "--stage", "nope"], http: ["GET", "/v1/status?stage=nope"], expect: "not-found" },
        { name: "history of a stage that does not exist", as: "operator", cli: ["history", "nope"], http: ["GET", "/v1/history/nope"], expect: "not-found", full: true },
        { name: "a commit not in the stage's history", as: "viewer", cli: ["history", "itg", "--commit", "0".repeat(40)], http: ["GET", `/v1/history/itg/commits/${"0".repeat(40)}`], expect: "not-found" },
        { name: "hold in a stage that does not exist", as: "operator", cli: ["hold", "web", "--stage", "nope"], http: ["POST", "/v1/hold", { app: "web", stage: "nope" }], expect: "not-found", full: true },
        { name: "drift of a stage that does not exist", as: "operator", cli: ["drift", "--stage", "nope"], http: ["POST", "/v1/drift", { stage: "nope" }], expect: "not-found" },
        { name: "destroy a merge request that has no environment", as: "ci-itg", cli: ["mr", "destroy", "99"], http: ["POST", "/v1/mr/destroy", { mr: 99 }], expect: "not-found" },
        promote("a release never published, without its bundle", "operator", "api", "3.0.0", "itg", "not-found"),
    ];

    /** How a request ended on one side. */
    interface Outcome {
        kind: ErrorKind | "ok";
        reason?: string;
        /** The CLI's exit code, or the service's status of its first answer. */
        code: number;
        /** The service answered 202 and the request ended later (its status says nothing of the outcome). */
        queued?: boolean;
        /** The error's message, with what differs between the two pipelines by nature (folders, ids, commits) blanked. */
        message?: string;
        detail: string;
    }

    /** A message with its pipeline's folders, request ids, commit ids and times blanked. */
    function comparable(side: Pipeline, message: string): string {
        return message
            .split(side.dir)
            .join("<dir>")
            .replace(/\br-[0-9a-z]+-[0-9a-f]{8}\b/g, "r-*")
            .replace(/\b[0-9a-f]{40}\b/g, "<commit>")
            .replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, "<time>");
    }

    function viaCli(row: Row): Promise<Outcome> {
        return new Promise((resolve, reject) => {
            const child = spawn(process.execPath, [STAGES_BIN, ...row.cli, "--json"], { env: { ...cliSide.env, GITOPS_STAGES_TOKEN: token(cliSide, row.as) }, stdio: ["ignore", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
            child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
            child.on("error", reject);
            child.on("exit", (code) => {
                try {
                    const body = JSON.parse(stdout) as { error?: { kind: ErrorKind; reason?: string; message: string } };
                    resolve({ kind: body.error?.kind ?? "ok", ...(body.error?.reason ? { reason: body.error.reason } : {}), ...(body.error ? { message: comparable(cliSide, body.error.message) } : {}), code: code ?? -1, detail: (stdout + stderr).slice(0, 600) });
                } catch {
                    reject(new Error(`stages ${row.cli.join(" ")}: not JSON on stdout (exit ${code}):\n${stdout}\n${stderr}`));
                }
            });
        });
    }

    async function viaHttp(row: Row): Promise<Outcome> {
        const call = injectApi(service, token(httpSide, row.as));
        const [method, route, body] = row.http;
        const r = await call(method, route, body);
        const detail = JSON.stringify(r.body).slice(0, 600);
        if (r.status === 202) {
            const done = await settle(call, r.body.requestId as string);
            const error = done.error as { kind: ErrorKind; reason?: string; message: string } | undefined;
            return { kind: done.state === "failed" ? error!.kind : "ok", ...(error?.reason ? { reason: error.reason } : {}), ...(error ? { message: comparable(httpSide, error.message) } : {}), code: 202, queued: true, detail: JSON.stringify(done).slice(0, 600) };
        }
        const error = r.body.error as { kind: ErrorKind; reason?: string; message: string } | undefined;
        return { kind: error?.kind ?? "ok", ...(error?.reason ? { reason: error.reason } : {}), ...(error ? { message: comparable(httpSide, error.message) } : {}), code: r.status, detail };
    }

    it(`drives ${FULL ? "the whole table" : "the table's CI size"} through both: the same outcome kind and reason, the mapped exit code and status`, async function () {
        const rows = table();
        const run = rows.filter((r) => FULL || !r.full);
        assert.ok(rows.length >= 60, `the full table has ${rows.length} rows`);
        const mismatches: string[] = [];
        for (const row of run) {
            const [cli, http] = [await viaCli(row), await viaHttp(row)];
            const where = `${row.name} (stages ${row.cli.slice(0, 3).join(" ")}... / ${row.http[0]} ${row.http[1]})`;
            if (cli.kind !== row.expect) mismatches.push(`${where}: CLI ended ${cli.kind}, expected ${row.expect}: ${cli.detail}`);
            if (http.kind !== row.expect) mismatches.push(`${where}: HTTP ended ${http.kind}, expected ${row.expect}: ${http.detail}`);
            if (cli.reason !== http.reason) mismatches.push(`${where}: reasons differ: CLI ${String(cli.reason)}, HTTP ${String(http.reason)}`);
            if (cli.message !== http.message) mismatches.push(`${where}: messages differ:\n  CLI:  ${String(cli.message)}\n  HTTP: ${String(http.message)}`);
            if (row.reason !== undefined && cli.reason !== row.reason) mismatches.push(`${where}: reason ${String(cli.reason)}, expected ${row.reason}`);
            const exit = row.expect === "ok" ? 0 : ERROR_MAP[row.expect].exit;
            if (cli.code !== exit) mismatches.push(`${where}: CLI exit ${cli.code}, the error map says ${exit}`);
            const status = row.expect === "ok" ? [200, 202] : http.queued ? [202] : [ERROR_MAP[row.expect].http];
            if (!status.includes(http.code)) mismatches.push(`${where}: HTTP ${http.code}, the error map says ${status.join(" or ")}`);
        }
        assert.deepEqual(mismatches, [], `${mismatches.length} of ${run.length} rows differ:\n${mismatches.join("\n")}`);
    });

    it("both ops repos hold the same commits and ledgers", function () {
        // Request ids and times differ by nature; everything else of a commit must not.
        const commits = (side: Pipeline) =>
            side
                .git("log", "--format=%s%n%(trailers:key=Requester,key=Source-Commit,key=CI-Run,key=Override)%x00", "main")
                .split("\0")
                .map((c) => c.trim().replace(/\br-[0-9a-z]+-[0-9a-f]{8}\b/g, "r-*"))
                .filter(Boolean);
        const cli = commits(cliSide);
        const http = commits(httpSide);
        assert.ok(cli.length >= 6, `only ${cli.length} commits`);
        assert.deepEqual(cli, http);
        const ledger = (side: Pipeline, stage: string) => {
            const raw = JSON.parse(side.git("show", `main:environments/${stage}/releases.json`)) as Record<string, Record<string, unknown>>;
            return Object.fromEntries(Object.entries(raw).map(([app, e]) => [app, { version: e.version, requester: e.requester, held: Boolean(e.hold) }]));
        };
        for (const stage of ["itg", "tst", "prod"]) assert.deepEqual(ledger(cliSide, stage), ledger(httpSide, stage), stage);
    });
});
