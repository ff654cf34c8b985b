/** The Sealed Secrets controller's answers as the runner takes them (the live controller is in the cluster tier). */
import * as assert from "node:assert/strict";

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
