/**
 * Hostile input, generated with fast-check: request parsers, the bundle upload path checks and the
 * HTTP service itself. Every case must be refused (exit 2 / HTTP 4xx) and nothing may be written:
 * not in the ops repo, not in the runner's data folder, not outside the test's folder.
 * Cases per property: FUZZ_RUNS (CI default 1,000; `npm run reliability` runs 10,000).
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";

import { RunnerError } from "../../src/runner/errors";
import { parseHoldRequest, parseMrDeployRequest, parsePromoteRequest, parseRollbackRequest } from "../../src/runner/core";
import { checkBundleFiles, writeBundle } from "../../src/service/bundle-upload";
import { Service } from "../../src/service/server";
import { SqliteStore } from "../../src/service/sqlite-store";
import { secretRefs } from "../../src/secrets/store";
import { walk } from "../support/files";
import { Pipeline, api, bootstrapPipeline } from "../support/service";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** Names that look fine to a person and must not pass: traversal, absolute, option-like, look-alikes, control characters. */
const hostileName = fc.oneof(
    fc.constantFrom("..", "../etc", "/etc/passwd", "-rf", "--upload-pack=x", "web\u0000", "wеb" /* Cyrillic e */, "ｗｅｂ", "web\n", " web", "WEB", "web/../../x", "web\\..\\x", "", "a".repeat(64), "${HOME}", "$(id)", "`id`", "web;rm", "é", "web%2F..", "\u202eweb"),
    fc.string({ minLength: 1, maxLength: 80 }).filter((s) => !/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s)),
);
const hostileVersion = fc.oneof(
    fc.constantFrom("v1.0.0", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "latest", "1.0.0/../x", "1.0.0\n", "-1.0.0", "1.0.0 ", "１.0.0"),
    fc.string({ maxLength: 40 }).filter((s) => !/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/.test(s)),
);
const hostilePath = fc.oneof(
    fc.constantFrom("../x", "/etc/passwd", "chart/../../x", "chart/./x", "chart//x", "values/../chart/x", ".git/config", "chart/.hidden/../../x", "C:\\x", "chart\\..\\x", "values/prod.yaml/../../x", "-chart/x", "chart/-x", "values/tst.json", "other/x", "chart", "values/", "chart/\u0000", "chart/x\n"),
    fc
        .array(fc.constantFrom("..", ".", "", "chart", "values", "x", "-y", "\u2024\u2024", "%2e%2e"), { minLength: 1, maxLength: 6 })
        .map((p) => p.join("/"))
        // Generated joins can be harmless (chart/values is a plain file of the chart); keep the hostile ones.
        .filter((p) => p.split("/").some((seg) => ["..", ".", "", "-y", "\u2024\u2024", "%2e%2e"].includes(seg)) || !/^(chart\/.+|values\/[a-z0-9-]+\.ya?ml)$/.test(p)),
);

describe("fuzz: hostile input is refused and writes nothing", function () {
    it(`request parsers refuse every hostile app, stage and version (${RUNS} cases each)`, function () {
        const refused = (fn: () => unknown) => {
            try {
                fn();
                return false;
            } catch (e) {
                return e instanceof RunnerError && e.kind === "invalid";
            }
        };
        fc.assert(
            fc.property(hostileName, fc.constantFrom("app", "to"), (bad, field) => {
                const req = { app: "web", version: "1.0.0", to: "itg", requester: "ci", source: { commit: COMMIT }, [field]: bad };
                return refused(() => parsePromoteRequest(req));
            }),
            { numRuns: RUNS },
        );
        fc.assert(fc.property(hostileVersion, (v) => refused(() => parsePromoteRequest({ app: "web", version: v, to: "itg", requester: "ci", source: { commit: COMMIT } }))), { numRuns: RUNS });
        fc.assert(fc.property(hostileName, (bad) => refused(() => parseRollbackRequest({ app: bad, stage: "itg", requester: "x" })) && refused(() => parseHoldRequest({ app: "web", stage: bad, requester: "x" }))), { numRuns: RUNS });
        fc.assert(fc.property(hostileName, (bad) => refused(() => parseMrDeployRequest({ mr: 1, app: bad, bundle: "/tmp/x", image: "r/x:1", sourceCommit: "abcdef0", requester: "x" }))), { numRuns: RUNS });
        // JSON tricks: unknown fields, prototype keys, wrong types.
        fc.assert(
            fc.property(fc.constantFrom("__proto__", "constructor", "prototype", "force", "dryrun", "App"), fc.jsonValue(), (key, value) => {
                const req = JSON.parse(`{"app":"web","version":"1.0.0","to":"itg","requester":"ci","source":{"commit":"${COMMIT}"},${JSON.stringify(key)}:${JSON.stringify(value) ?? "null"}}`);
                return refused(() => parsePromoteRequest(req));
            }),
            { numRuns: RUNS },
        );
    });

    it(`bundle uploads: every hostile path is refused before anything is written (${RUNS} cases)`, function () {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-fuzz-"));
        try {
            fc.assert(
                fc.property(hostilePath, (p) => {
                    try {
                        writeBundle(path.join(dir, "b"), checkBundleFiles({ "chart/Chart.yaml": "x", [p]: "y" }));
                        return false;
                    } catch (e) {
                        return e instanceof RunnerError && e.kind === "invalid";
                    }
                }),
                { numRuns: RUNS },
            );
            assert.deepEqual(fs.readdirSync(dir), [], "a refused bundle left files behind");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it(`secret references are found anywhere in values, whatever the nesting (${RUNS} cases)`, function () {
        fc.assert(
            fc.property(fc.array(fc.constantFrom("a", "b", "env", "0", "x-y"), { maxLength: 6 }), fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/), (keys, name) => {
                let values: unknown = { existingSecret: name };
                for (const k of keys) values = { [k]: values };
                const refs = secretRefs(values);
                return refs.length === 1 && refs[0].name === name && refs[0].at === [...[...keys].reverse(), "existingSecret"].join(".");
            }),
            { numRuns: RUNS },
        );
    });

    describe("through the HTTP service", function () {
        let p: Pipeline;
        let service: Service;
        let base: string;
        let initial: { ops: string; files: string[] };
        const snapshot = () => ({ ops: p.git("rev-parse", "main"), files: walk(p.dataDir).filter((f) => !f.includes(`${path.sep}service${path.sep}requests.db`) && !f.includes(`${path.sep}locks${path.sep}`)).sort() });

        before(async function () {
            p = await bootstrapPipeline("gitops-stages-fuzz-http-", [{ name: "itg" }, { name: "tst" }]);
            service = new Service({ assembled: await p.runner(), store: new SqliteStore(path.join(p.dataDir, "service", "requests.db")), replicaId: "fuzz", log: () => undefined, limits: { ratePerMinute: 1e9, burst: 1e9, bodyBytes: 256 * 1024 } });
            base = (await service.start(0)).url;
            initial = snapshot();
        });
        after(async function () {
            await service?.stop();
            p?.dispose();
        });

        it(`hostile promotions, uploads and bodies get a 4xx and change nothing (${Math.max(100, RUNS / 10)} cases)`, async function () {
            const call = api(base, p.operatorToken);
            const body = fc.oneof(
                hostileName.map((app) => ({ app, version: "1.0.0", to: "itg", requester: "ci", source: { commit: COMMIT } })),
                hostileVersion.map((version) => ({ app: "web", version, to: "itg", requester: "ci", source: { commit: COMMIT } })),
                hostilePath.map((p2) => ({ app: "web", version: "1.0.0", to: "itg", requester: "ci", source: { commit: COMMIT }, image: "r/web:1", bundle: { files: { "chart/Chart.yaml": "x", [p2]: "y" } } })),
                fc.jsonValue().map((v) => ({ app: "web", version: "1.0.0", to: "itg", requester: "ci", source: { commit: COMMIT }, extra: v })),
                fc.constantFrom("[]", "null", "1", '"x"', "{", '{"app": "web"', "\u0000", "{}".padEnd(300 * 1024, " ")),
            );
            await fc.assert(
                fc.asyncProperty(body, async (b) => {
                    const r = await call("POST", "/v1/promote", typeof b === "string" ? b : JSON.stringify(b));
                    return r.status >= 400 && r.status < 500;
                }),
                { numRuns: Math.max(100, RUNS / 10) },
            );
            assert.deepEqual(snapshot(), initial, "a refused request changed the ops repo or the data folder");
        });
    });
});
