/**
 * The wording of schema checks: TypeBox finds the problems, `problemsOf` must name each with its
 * key (nested, listed, under a root or a namespace), its value (never a secret's) and its rule.
 */
import * as assert from "node:assert/strict";

import { problemsOf } from "../../src/config/schema";
import { PLATFORM_SCHEMA, parsePlatformConfig } from "../../src/config/platform";
import { ValidationError, formatProblem } from "../../src/config/validate";
import { COMMAND_INPUT, HTTP_BODY, parseInput } from "../../src/runner/requests";
import { RunnerError } from "../../src/runner/errors";

const lines = (schema: Parameters<typeof problemsOf>[0], value: unknown, naming?: Parameters<typeof problemsOf>[2]) => problemsOf(schema, value, naming).map(formatProblem);

describe("schema checks worded as key = value: rule", function () {
    it("names unknown keys first (under the root at the top), then fields in the schema's order, one problem per key", function () {
        assert.deepEqual(lines(COMMAND_INPUT.promote, { force: true, to: "Prod", app: "web", version: "v1", source: { commit: "HEAD", extra: 1 } }), [
            "request.force: is not a known setting (known: app, version, to, image, requester, claimedRequester, source, reason, idempotencyKey, overrideOrder, bundle)",
            'version = "v1": must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)',
            "to = \"Prod\": must be a DNS label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters",
            "source.extra: is not a known setting (known: commit, mr, ciRunUrl)",
            'source.commit = "HEAD": must be a git commit id (7 to 64 hex characters)',
        ]);
    });

    it("says what is missing, what has the wrong type, a range, a choice, a list item and a URL's fault", function () {
        assert.deepEqual(lines(COMMAND_INPUT.wait, { timeoutSeconds: 0, until: "soon" }), ["stage: is required", "timeoutSeconds = 0: must be a whole number from 1 to 86400", 'until = "soon": must be one of "deployed", "synced"']);
        assert.deepEqual(lines(COMMAND_INPUT["secret-rm"], { app: 7, stage: "tst", keys: ["A", 2] }), ["app = 7: must be a string", "keys[1] = 2: must be a string"]);
        assert.deepEqual(lines(COMMAND_INPUT.promote, { app: "web", version: "1.0.0", to: "itg", source: { commit: "abcdef0", ciRunUrl: "https://user:pw@ci.example/run/1" } }), [
            'source.ciRunUrl = "https://***@ci.example/run/1": must not carry a user name or password',
        ]);
        assert.deepEqual(lines(COMMAND_INPUT.promote, { app: "web", version: "1.0.0", to: "itg", source: { commit: "abcdef0", ciRunUrl: "https://ci.example/run/1\nRequester: x" } }), [
            'source.ciRunUrl = "https://ci.example/run/1\\nRequester: x": must be a URL without spaces, newlines or control characters',
        ]);
    });

    it("takes a key set to undefined as left out (a CLI flag not given), and null as a value", function () {
        assert.deepEqual(lines(COMMAND_INPUT.hold, { app: "web", stage: undefined, reason: undefined }), ["stage: is required"]);
        assert.deepEqual(lines(COMMAND_INPUT.hold, { app: "web", stage: "tst", reason: null }), ["reason = null: must be a string"]);
    });

    it("never quotes a secret: base64 values and private keys are named, not shown", function () {
        const secret = "hunter2-not-base64!";
        const found = lines(HTTP_BODY["secret-set"], { app: "web", stage: "tst", values: { PASSWORD: secret } }).concat(
            lines(HTTP_BODY["secret-set"], { app: "web", stage: "tst", values: secret }),
            lines(COMMAND_INPUT["secret-reseal"], { stage: "tst", privateKeys: [{ pem: secret }] }),
            lines(COMMAND_INPUT["secret-reseal"], { stage: "tst", privateKeys: secret }),
        );
        assert.deepEqual(found, ["values.PASSWORD: must be base64", "values: must be an object", "privateKeys[0]: must be a string", "privateKeys: must be a list"]);
        assert.ok(!found.join("\n").includes("hunter2"));
    });

    it("names a stack config's keys in its namespace and says which stack an unknown key is not a setting of", function () {
        assert.deepEqual(lines(COMMAND_INPUT.drift, { stage: "x", deep: true }, { prefix: "gitops-stages:", setting: "of a drift" }), ["gitops-stages:deep: is not a known setting of a drift (known: stage)"]);
    });

    it("lists at most 20 problems, then says there are more; the platform's rules wait for a list cut short", function () {
        const found = lines(COMMAND_INPUT["secret-rm"], { app: "web", stage: "tst", keys: Array.from({ length: 25 }, (_, i) => i) });
        assert.equal(found.length, 21);
        assert.equal(found[19], "keys[19] = 19: must be a string");
        assert.equal(found[20], "…: and more problems than the 20 listed; fix these first");
        // 21 unknown keys under gitHost and a section no check reached: one ValidationError, no crash in the rules.
        const gitHost = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`x${i}`, 1]));
        assert.throws(
            () => parsePlatformConfig({ gitHost, cluster: { renderDir: 5 } }, { projectDir: "/p", stack: "platform" }),
            (e: unknown) => e instanceof ValidationError && e.problems.length === 21,
        );
    });

    it("never shows a URL's credentials, however malformed the URL", function () {
        for (const url of [" https://u:pw@ci.example/run", "https://u:p/w@ci.example/run", "ftp:u:pw@host", "https://u:pw@ci.example/a b"]) {
            const found = lines(COMMAND_INPUT.promote, { app: "web", version: "1.0.0", to: "itg", source: { commit: "abcdef0", ciRunUrl: url } });
            assert.equal(found.length, 1, url);
            assert.ok(!found[0].includes("pw") && !found[0].includes("p/w"), found[0]);
            assert.match(found[0], /\*\*\*@/);
        }
        const oci = problemsOf(PLATFORM_SCHEMA, { argocd: { chart: { oci: "https://robot:pw@registry/x", version: "1.0.0" } } }, { prefix: "gitops-stages:" }).map(formatProblem);
        assert.deepEqual(oci, ['gitops-stages:argocd.chart.oci = "https://***@registry/x": must be an oci:// reference']);
    });

    it("throws one invalid error listing every problem under the request's title", function () {
        assert.throws(
            () => parseInput("approve", { app: "Web" }),
            (e: unknown) => e instanceof RunnerError && e.kind === "invalid" && /^invalid approval \(3 problems\):\n {2}app = "Web": must be a DNS label[^\n]*\n {2}version: is required\n {2}stage: is required$/.test(e.message),
        );
    });
});
