/** `stages serve` refuses limits it could not honour before it starts anything. */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { repoRoot } from "../support/engine";
import { freePort } from "../support/fixtures";
import { plant } from "../support/planted";

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

describe("stages serve: what it needs, unreachable at start", function () {
    this.timeout(120_000);
    const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-serve-reach-"));
    const serve = (data: string, env: NodeJS.ProcessEnv, ...args: string[]) =>
        spawnSync(process.execPath, [path.join(repoRoot, "bin", "stages"), "serve", "--port", "0", ...args], { encoding: "utf8", timeout: 90_000, env: { ...selfContainedEnv(data), ...env } });

    it("a request log's database that does not answer: exit 5 naming the setting and the database, never its password, nothing bound", async function () {
        const port = await freePort();
        const data = dir();
        try {
            const r = serve(data, { GITOPS_STAGES_DATABASE: `postgres://runner:${plant("pg-secret-pw")}@127.0.0.1:${port}/gitops` });
            assert.equal(r.status, 5, r.stderr);
            assert.match(r.stderr, new RegExp(`^stages serve: \\$GITOPS_STAGES_DATABASE: the request log's database postgres://127\\.0\\.0\\.1:${port}/gitops cannot be reached: .*ECONNREFUSED`));
            assert.ok(!r.stderr.includes("pg-secret-pw"));
            assert.ok(!fs.existsSync(path.join(data, "service", "request-log.json")), "the folder was bound to a log that never opened");
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });

    it("a postgres:// state backend that does not answer: exit 5 naming $PULUMI_BACKEND_URL, never its password", async function () {
        const port = await freePort();
        const data = dir();
        try {
            const r = serve(data, { PULUMI_BACKEND_URL: `postgres://pulumi:${plant("state-secret-pw")}@127.0.0.1:${port}/pulumi`, PULUMI_CONFIG_PASSPHRASE: "x" });
            assert.equal(r.status, 5, r.stderr);
            assert.match(r.stderr, new RegExp(`^stages serve: \\$PULUMI_BACKEND_URL: the state backend postgres://127\\.0\\.0\\.1:${port}/pulumi cannot be reached: .*ECONNREFUSED`));
            assert.ok(!r.stderr.includes("state-secret-pw"));
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });

    it("a setting out of its range (leaseSeconds) is invalid input before anything opens: exit 2, the folder bound to no log", function () {
        const data = dir();
        try {
            fs.writeFileSync(path.join(data, "runner.json"), JSON.stringify({ leaseSeconds: 2 }));
            const r = serve(data, {});
            assert.equal(r.status, 2, r.stderr);
            assert.match(r.stderr, /leaseSeconds/);
            assert.ok(!fs.existsSync(path.join(data, "service")), "the service's folder was written");
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });

    it("an ops repo URL that is not a URL: exit 2 naming $GITOPS_STAGES_OPS_URL", function () {
        const data = dir();
        try {
            const r = serve(data, { GITOPS_STAGES_OPS_URL: "/srv/git/app-ops.git" });
            assert.equal(r.status, 2, r.stderr);
            assert.match(r.stderr, /^stages serve: GITOPS_STAGES_OPS_URL: must be a URL \(http:\/\/, https:\/\/ or ssh:\/\/\) of the ops repository\n$/);
        } finally {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });
});
