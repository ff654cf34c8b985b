/** One request log per data folder: the first log opened binds the folder, and other logs are refused there. */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { RunnerError } from "../../src/runner/errors";
import { bind, bindingFile, logIdentity, openStore } from "../../src/runner/request-log";
import { repoRoot } from "../support/engine";

describe("the request log's binding to a data folder", function () {
    let dir: string;
    beforeEach(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-binding-"));
    });
    afterEach(function () {
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("names a log without credentials, the same for two spellings of one log", function () {
        assert.equal(logIdentity(undefined, dir), `sqlite:${path.join(dir, "service", "requests.db")}`);
        assert.equal(logIdentity(path.join(dir, "service", "..", "service", "requests.db"), dir), logIdentity(`sqlite:${path.join(dir, "service", "requests.db")}`, dir));
        assert.equal(logIdentity("postgres://ops:s3cret-pw@db.internal/requests", dir), "postgres://db.internal:5432/requests");
        assert.equal(logIdentity("postgresql://ops:s3cret-pw@10.0.0.5:6432/requests?sslmode=require", dir), "postgres://10.0.0.5:6432/requests");
    });

    it("the first log opened binds the folder; another is refused, naming the setting, and nothing is opened or created", async function () {
        const other = path.join(dir, "elsewhere.db");
        // A database that cannot be opened binds nothing (a typo must not pin the folder).
        await assert.rejects(openStore("postgres://ops:s3cret-pw@127.0.0.1:1/requests", dir, { setting: "--database" }));
        assert.equal(fs.existsSync(bindingFile(dir)), false, "a database that did not open bound the folder");
        await (await openStore(undefined, dir)).close();
        assert.deepEqual(JSON.parse(fs.readFileSync(bindingFile(dir), "utf8")).log, `sqlite:${path.join(dir, "service", "requests.db")}`);
        assert.deepEqual(fs.readdirSync(path.join(dir, "service")).filter((f) => f.endsWith(".tmp")), [], "a temporary binding file was left");
        // The same log, spelled as a path: accepted.
        await (await openStore(path.join(dir, "service", "requests.db"), dir)).close();
        await assert.rejects(openStore(`sqlite:${other}`, dir), (e: RunnerError) => {
            assert.equal(e.kind, "invalid");
            assert.match(e.message, /^\$GITOPS_STAGES_DATABASE: this data folder's requests are logged in sqlite:\S+requests\.db \(its binding: \S+request-log\.json\), not sqlite:\S+elsewhere\.db: /);
            return true;
        });
        assert.equal(fs.existsSync(other), false, "the refused log was created");
        await assert.rejects(openStore("postgres://ops:s3cret-pw@127.0.0.1:1/requests", dir, { setting: "--database" }), (e: RunnerError) => {
            assert.match(e.message, /^--database: .* not postgres:\/\/127\.0\.0\.1:1\/requests: /);
            assert.doesNotMatch(e.message, /s3cret/);
            return true;
        });
    });

    it("two processes binding a folder at once: the first link wins, the other compares and is refused if its log differs", function () {
        // Both found the folder unbound and opened their log; now each binds.
        const a = logIdentity(`sqlite:${path.join(dir, "a.db")}`, dir);
        const b = logIdentity(`sqlite:${path.join(dir, "b.db")}`, dir);
        bind(dir, a, "$GITOPS_STAGES_DATABASE");
        assert.throws(() => bind(dir, b, "--database"), (e: RunnerError) => e.kind === "invalid" && /^--database: this data folder's requests are logged in sqlite:\S+a\.db/.test(e.message));
        // The same log binding again (a second process of it) is no conflict.
        bind(dir, a, "$GITOPS_STAGES_DATABASE");
        assert.equal(JSON.parse(fs.readFileSync(bindingFile(dir), "utf8")).log, a);
        assert.deepEqual(fs.readdirSync(path.join(dir, "service")).filter((f) => f.endsWith(".tmp")), [], "a temporary binding file was left");
    });

    it("the CLI and a second service on another database are refused with exit 2", async function () {
        await (await openStore(undefined, dir)).close();
        const other = `sqlite:${path.join(dir, "other.db")}`;
        const env = { ...selfContainedEnv(dir), GITOPS_STAGES_DATABASE: other };
        const cli = spawnSync(process.execPath, [path.join(repoRoot, "bin", "stages"), "status", "--json"], { encoding: "utf8", timeout: 60_000, env });
        assert.equal(cli.status, 2, cli.stderr);
        assert.match(cli.stderr, /\$GITOPS_STAGES_DATABASE: this data folder's requests are logged in sqlite:/);
        const serve = spawnSync(process.execPath, [path.join(repoRoot, "bin", "stages"), "serve", "--port", "0", "--database", other], { encoding: "utf8", timeout: 60_000, env });
        assert.equal(serve.status, 2, serve.stderr);
        assert.match(serve.stderr, /^stages serve: --database: this data folder's requests are logged in sqlite:/);
        assert.equal(fs.existsSync(path.join(dir, "other.db")), false);
    });
});
