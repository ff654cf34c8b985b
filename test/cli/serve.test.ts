/** `stages serve` refuses limits it could not honour before it starts anything. */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";

import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { repoRoot } from "../support/engine";

describe("stages serve: its flags", function () {
    // A data folder of its own: should the check ever let a value through, the service starts there, not on the caller's state.
    const serve = (...args: string[]) =>
        spawnSync(process.execPath, [path.join(repoRoot, "bin", "stages"), "serve", ...args], { encoding: "utf8", timeout: 30_000, env: selfContainedEnv(path.join(os.tmpdir(), `gitops-stages-serve-flags-${process.pid}`)) });

    it("a limit that is not a whole number in range is invalid input (exit 2), naming the flag and the rule", function () {
        for (const [flag, value, rule] of [
            ["--concurrency", "abc", "must be a whole number from 1 to 64"],
            ["--concurrency", "0", "must be a whole number from 1 to 64"],
            ["--concurrency", "2.5", "must be a whole number from 1 to 64"],
            ["--rate-per-minute", "-1", "must be a whole number from 1 to 1000000"],
        ]) {
            const r = serve(`${flag}=${value}`, "--port", "0");
            assert.equal(r.status, 2, `${flag} ${value}: ${r.stderr}`);
            assert.equal(r.stderr, `stages serve: ${flag}: ${rule}, got ${JSON.stringify(value)}\n`);
        }
    });
});
