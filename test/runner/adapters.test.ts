/**
 * The runner's adapters where they meet other programs: the Sealed Secrets controller's answers
 * (the live controller is in the cluster tier) and the engine going away under an inline program.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";

import { rotated } from "../../src/runner/adapters/controller";
import { parseSecretsFile } from "../../src/secrets/store";
import { RunnerError } from "../../src/runner/errors";

describe("the controller's rotate answer", function () {
    it("gains the type the controller leaves out, and parses as the resealed secret", function () {
        // The shape the controller writes: json.Marshal of the object, without apiVersion and kind.
        const answer = JSON.stringify({ metadata: { name: "api-db", namespace: "tst", creationTimestamp: null }, spec: { template: { metadata: { name: "api-db", namespace: "tst", creationTimestamp: null } }, encryptedData: { PASSWORD: "QUJD" } }, status: {} });
        const [s] = parseSecretsFile(rotated(answer), "answer");
        assert.deepEqual(s, { name: "api-db", namespace: "tst", scope: "strict", encryptedData: { PASSWORD: "QUJD" } });
    });

    it("refuses an answer that is not a SealedSecret, or not JSON, naming the controller", function () {
        for (const answer of ['{"kind":"Secret","metadata":{"name":"x"}}', "error decrypting secret", "[1]"]) {
            assert.throws(() => rotated(answer), (e: RunnerError) => e.kind === "refused" && e.reason === "controller" && /Sealed Secrets controller's rotate answer/.test(e.message), answer);
        }
    });
});

describe("an engine that goes away under the inline program", function () {
    const adapter = path.join(__dirname, "../../src/runner/adapters/automation.js");
    /** Runs a Node process that creates the engine adapter, then leaves `rejection` unhandled. */
    const withUnhandled = (rejection: string) =>
        spawnSync(process.execPath, ["-e", `
            const { AutomationEngine } = require(${JSON.stringify(adapter)});
            new AutomationEngine({}, { lockWaitMs: 1, log: (l) => process.stdout.write(l + "\\n") });
            Promise.reject(${rejection});
            setTimeout(() => process.stdout.write("still running\\n"), 50);
        `], { encoding: "utf8" });

    it("does not end the process when the program's calls to the engine fail (gRPC UNAVAILABLE, CANCELLED)", function () {
        for (const e of ['Object.assign(new Error("14 UNAVAILABLE: read ECONNRESET"), { code: 14 })', 'Object.assign(new Error("1 CANCELLED: Cancelled on client"), { code: 1 })']) {
            const r = withUnhandled(e);
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /the program's call to the engine failed after the engine went away: (14 UNAVAILABLE|1 CANCELLED)/);
            assert.match(r.stdout, /still running/);
        }
    });

    it("still ends the process on any other unhandled rejection", function () {
        for (const e of ['new Error("a real bug")', 'Object.assign(new Error("13 INTERNAL: boom"), { code: 13 })', 'Object.assign(new Error("UNAVAILABLE but not gRPC"), { code: "ECONNRESET" })']) {
            const r = withUnhandled(e);
            assert.notEqual(r.status, 0, `${e}: the process kept running`);
            assert.doesNotMatch(r.stdout, /still running/);
        }
    });
});
