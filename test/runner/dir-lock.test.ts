/** The runner's lock folders: a live owner is waited for, never broken; a dead one's lock is taken over. */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { acquireDirLock, lockOwner } from "../../src/runner/adapters/dir-lock";

describe("lock folders", function () {
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-lock-"))));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
    const timeout = () => new Error("timed out");

    it("never exists without its owner, and is released", async function () {
        const lock = path.join(dir, "locks", "itg");
        const release = await acquireDirLock(lock, { waitMs: 1000, onTimeout: timeout });
        assert.equal(lockOwner(lock)?.pid, process.pid);
        assert.equal(lockOwner(lock)?.hostname, os.hostname());
        assert.deepEqual(fs.readdirSync(path.dirname(lock)), ["itg"], "no staging folder left behind");
        release();
        assert.equal(fs.existsSync(lock), false);
    });

    it("waits for a live owner past the old 3 s limit instead of breaking its lock", async function () {
        const lock = path.join(dir, "records.json.lock");
        const release = await acquireDirLock(lock, { waitMs: 1000, onTimeout: timeout });
        const got: (() => void)[] = [];
        const waiting = acquireDirLock(lock, { waitMs: 10_000, onTimeout: timeout }).then((r) => got.push(r));
        await new Promise((r) => setTimeout(r, 3_500));
        assert.equal(got.length, 0, "the live owner's lock was broken");
        assert.equal(lockOwner(lock)?.pid, process.pid);
        release();
        await waiting;
        assert.equal(got.length, 1, "the waiter got the lock once it was released");
        got[0]();
    });

    it("gives up with the caller's error when a live owner keeps it", async function () {
        const lock = path.join(dir, "busy");
        const release = await acquireDirLock(lock, { waitMs: 1000, onTimeout: timeout });
        await assert.rejects(acquireDirLock(lock, { waitMs: 200, onTimeout: () => new Error("stack busy") }), /stack busy/);
        release();
    });

    it("takes over the lock of a process that died, and says whose it was", async function () {
        const lock = path.join(dir, "tst");
        // A real process that has exited: its pid is known not to run.
        const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
        const pid = Number(dead.stdout);
        fs.mkdirSync(lock);
        fs.writeFileSync(path.join(lock, "owner.json"), JSON.stringify({ pid, hostname: os.hostname(), at: "2026-12-01T00:00:00Z" }));
        const stale: unknown[] = [];
        const release = await acquireDirLock(lock, { waitMs: 1000, onStale: (o) => stale.push(o?.pid), onTimeout: timeout });
        assert.deepEqual(stale, [pid]);
        assert.equal(lockOwner(lock)?.pid, process.pid);
        release();
    });

    it("a lock of another machine is never broken by this one", async function () {
        const lock = path.join(dir, "perf");
        fs.mkdirSync(lock);
        fs.writeFileSync(path.join(lock, "owner.json"), JSON.stringify({ pid: 1, hostname: `${os.hostname()}-other`, at: new Date().toISOString() }));
        await assert.rejects(acquireDirLock(lock, { waitMs: 200, onTimeout: timeout }), /timed out/);
    });
});
