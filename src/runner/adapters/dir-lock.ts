/**
 * A lock between processes of one machine: a folder that holds its owner (pid, host, time). The
 * folder is made whole under a temporary name and renamed into place, so a lock never exists
 * without its owner, whatever moment a process dies at. A lock is broken only when its owner is
 * a process of this machine that no longer runs; a live owner is waited for.
 *
 * Hand-written because the runner's two needs (a per-stack lock the crash recovery inspects, and a
 * short lock around the records file) want exactly this owner check, which the lock-file
 * libraries for Node (proper-lockfile and others) replace with a staleness timeout that breaks
 * locks of slow but live processes.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Who holds a lock. */
export interface LockOwner {
    readonly pid: number;
    readonly hostname: string;
    readonly at: string;
}

/** True when the process exists (EPERM: it exists but belongs to another user). */
export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
}

/** The owner of a lock folder, or undefined when it has none (left by an older version) or it is gone. */
export function lockOwner(dir: string): LockOwner | undefined {
    try {
        return JSON.parse(fs.readFileSync(path.join(dir, "owner.json"), "utf8")) as LockOwner;
    } catch {
        return undefined;
    }
}

/** Options of {@link acquireDirLock}. */
export interface DirLockOptions {
    /** Give up after this long (then `onTimeout` decides what is thrown). */
    readonly waitMs: number;
    readonly signal?: AbortSignal;
    /** Called when a dead owner's lock is removed. */
    readonly onStale?: (owner: LockOwner | undefined) => void;
    readonly onTimeout: () => Error;
}

/** A folder without an owner file older than this was left by a version that wrote the owner after the folder. */
const OWNERLESS_STALE_MS = 60_000;

/** Takes the lock at `dir`, waiting with backoff while a live process holds it; returns its release. */
export async function acquireDirLock(dir: string, opts: DirLockOptions): Promise<() => void> {
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    const deadline = Date.now() + opts.waitMs;
    let delay = 10;
    for (;;) {
        const staging = `${dir}.partial-${process.pid}-${randomBytes(4).toString("hex")}`;
        fs.mkdirSync(staging);
        fs.writeFileSync(path.join(staging, "owner.json"), JSON.stringify({ pid: process.pid, hostname: os.hostname(), at: new Date().toISOString() }));
        try {
            fs.renameSync(staging, dir);
            return () => fs.rmSync(dir, { recursive: true, force: true });
        } catch (e) {
            fs.rmSync(staging, { recursive: true, force: true });
            const code = (e as NodeJS.ErrnoException).code;
            if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
        }
        const owner = lockOwner(dir);
        const ownerless = !owner && (() => {
            try {
                return Date.now() - fs.statSync(dir).mtimeMs > OWNERLESS_STALE_MS;
            } catch {
                return false; // released meanwhile: try again at once
            }
        })();
        if ((owner && owner.hostname === os.hostname() && !alive(owner.pid)) || ownerless) {
            // Moved aside before removal, and checked: if another process broke the same stale lock
            // and took it meanwhile, what was moved is that live lock, and it goes back.
            const trash = `${dir}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
            try {
                fs.renameSync(dir, trash);
            } catch {
                continue; // gone already
            }
            const moved = lockOwner(trash);
            if (moved && owner && (moved.pid !== owner.pid || moved.at !== owner.at)) {
                try {
                    fs.renameSync(trash, dir);
                } catch {
                    // A third process took the lock in between; the moved lock's owner runs on
                    // without it. This needs three processes racing on one dead owner's lock.
                    fs.rmSync(trash, { recursive: true, force: true });
                }
                continue;
            }
            fs.rmSync(trash, { recursive: true, force: true });
            opts.onStale?.(owner);
            continue;
        }
        if (Date.now() > deadline) throw opts.onTimeout();
        await sleep(delay, opts.signal);
        delay = Math.min(delay * 2, 1000);
    }
}

/** Waits, or rejects with the signal's reason as soon as it is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const t = setTimeout(resolve, ms);
        signal?.addEventListener("abort", () => (clearTimeout(t), reject(signal.reason)), { once: true });
    });
}
