/**
 * The engine's processes as the runner runs them: the inline program's calls to an engine that
 * went away, recognised and kept from ending the process (see {@link guardEngineDisconnects}); a
 * cancelled engine run that does not end, killed (see {@link stopsHard}).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import type { PulumiCommand } from "@pulumi/pulumi/automation";

import { isLeaseLoss } from "../lease";

/** Whether an error is an inline program's call to an engine that went away (gRPC UNAVAILABLE or CANCELLED). */
export function isEngineDisconnect(e: unknown): boolean {
    const code = (e as { code?: unknown } | null)?.code;
    return e instanceof Error && (code === 14 || code === 1) && /^(14 UNAVAILABLE|1 CANCELLED)\b/.test(e.message);
}

let guarded = false;

/**
 * The stack's program runs inline, in this process. When the engine goes away mid-update (a
 * cancelled update, a killed engine), the program's pending calls to it fail, and Pulumi's runtime
 * leaves some of those promises unhandled, which would end this process: the CLI with exit 1
 * instead of its cancellation answer, the service with every request in flight. The update's own
 * result reports the failure; these echoes of it are logged and dropped. Any other unhandled
 * rejection still ends the process, as without this guard.
 */
export function guardEngineDisconnects(log: (line: string) => void): void {
    if (guarded) return;
    guarded = true;
    process.on("unhandledRejection", (reason) => {
        if (isEngineDisconnect(reason)) {
            log(`the program's call to the engine failed after the engine went away: ${(reason as Error).message}`);
            return;
        }
        throw reason;
    });
}


/** The Automation API's (internal) way of running the CLI, which {@link stopsHard} replaces. */
type RunCommand = (args: string[], cwd: string, env: Record<string, string>, onOutput?: (text: string) => void, onError?: (text: string) => void, signal?: AbortSignal) => Promise<unknown>;

const HARD = Symbol.for("gitops-stages.stopsHard");

/**
 * Makes an engine run cancelled for a lost lease end for sure. The Automation API answers an
 * abort by sending the CLI SIGINT and waiting: Pulumi then finishes the resource operations in
 * flight and writes its state. A runner that lost its claim on the stack (its lease ran out: cut
 * off from the database, or too slow to renew) must not touch the stack afterwards, not even when
 * its link comes back minutes later with a write still pending; so when the abort's reason is a
 * lost lease (`isLeaseLoss`) and the CLI has not exited `graceMs` after the SIGINT, the CLI and
 * every process it started (its plugins, their git) are stopped and killed. What such a kill
 * leaves (Pulumi's lock, a pending operation) the stack's next update recovers, as after any crash
 * (backend-locks.ts). Other cancellations (Ctrl-C, a service's shutdown) get four graces (a
 * quarter of a lease) for Pulumi's graceful stop, which releases its lock, before the same kill:
 * a lease renewed until the SIGINT lapses three quarters of a lease later at the earliest, so even
 * if it is lost meanwhile (the first reason is the one an abort keeps), the engine is gone first.
 *
 * The replaced method (`run`) is internal to the Automation API, the one place it starts the CLI;
 * its behaviour is kept (arguments, environment, PATH, the error classes made from the CLI's
 * stderr): `@pulumi/pulumi` is pinned, and every engine test runs commands through it. Only runs
 * given a signal take this path. The grace is the first engine's of the process (one CLI).
 */
export function stopsHard(command: PulumiCommand, graceMs: number): void {
    const target = command as unknown as { run?: RunCommand; [HARD]?: boolean } | undefined;
    if (!target?.run || target[HARD]) return;
    target[HARD] = true;
    const original = target.run.bind(command) as RunCommand;
    target.run = (args, cwd, env, onOutput, onError, signal) => (signal ? runKillable(command.command, args, cwd, env, onOutput, onError, signal, graceMs) : original(args, cwd, env, onOutput, onError));
}

function runKillable(command: string, args: string[], cwd: string, additionalEnv: Record<string, string>, onOutput: ((t: string) => void) | undefined, onError: ((t: string) => void) | undefined, signal: AbortSignal, graceMs: number): Promise<unknown> {
    // As the Automation API runs it: non-interactive, the CLI's own folder first on PATH (its bundled plugins).
    const argv = args.includes("--non-interactive") ? args : [...args, "--non-interactive"];
    const env: NodeJS.ProcessEnv = { ...process.env, ...additionalEnv, PULUMI_AUTOMATION_API: "true" };
    if (path.isAbsolute(command)) env.PATH = `${path.dirname(command)}${path.delimiter}${additionalEnv.PATH ?? process.env.PATH ?? ""}`;
    // Its result and error classes, as the replaced method makes them (the error factory is not in the typings).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const automation = require("@pulumi/pulumi/automation") as { CommandResult: new (stdout: string, stderr: string, code: number, err?: Error) => unknown; createCommandError: (r: unknown) => Error };
    return new Promise((resolve, reject) => {
        // In the runner's own process group: a kill of the runner's group (a lost machine, kill -9
        // of a CLI and its children) takes the engine along, as the Automation API's run did.
        const child = spawn(command, argv, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        // Decoded as streams, so a character split between two chunks stays whole.
        child.stdout.setEncoding("utf8");
        child.stderr.setEncoding("utf8");
        child.stdout.on("data", (t: string) => {
            stdout += t;
            onOutput?.(t);
        });
        child.stderr.on("data", (t: string) => {
            stderr += t;
            onError?.(t);
        });
        let killer: NodeJS.Timeout | undefined;
        const abort = () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill("SIGINT");
            // A lost lease: killed after the grace. Any other cancellation (Ctrl-C, a shutdown) has
            // four graces to stop by itself: its lease, renewed meanwhile, could still be lost
            // later, and by then the engine must be gone (see the comment above).
            killer = setTimeout(() => killTree(child.pid!), isLeaseLoss(signal.reason) ? graceMs : 4 * graceMs);
        };
        if (signal.aborted) abort();
        else signal.addEventListener("abort", abort, { once: true });
        child.once("error", (e) => {
            signal.removeEventListener("abort", abort);
            clearTimeout(killer);
            reject(automation.createCommandError(new automation.CommandResult("", e.message, -2, e)));
        });
        child.once("close", (code) => {
            signal.removeEventListener("abort", abort);
            clearTimeout(killer);
            // Trimmed as the replaced method's process library trims them.
            const result = new automation.CommandResult(stdout.replace(/\r?\n$/, ""), stderr.replace(/\r?\n$/, ""), code ?? -1);
            if (code === 0) resolve(result);
            else reject(automation.createCommandError(result));
        });
    });
}

/**
 * The processes descending from `pid`, from Linux's /proc (none elsewhere): the plugins the CLI
 * started. Read by hand: Node has no process-tree API, and the CLI's plugins share the runner's
 * process group (so a group kill would take the runner too).
 */
export function descendants(pid: number): number[] {
    let entries: string[];
    try {
        entries = fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e));
    } catch {
        return [];
    }
    const children = new Map<number, number[]>();
    for (const e of entries) {
        try {
            const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
            // pid (comm) state ppid ...: the command name may hold spaces and parentheses.
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
        } catch {
            // ended meanwhile
        }
    }
    const out: number[] = [];
    const walk = (p: number) => {
        for (const c of children.get(p) ?? []) {
            out.push(c);
            walk(c);
        }
    };
    walk(pid);
    return out;
}

/**
 * Kills a process and everything below it. Each process found is stopped (SIGSTOP) first, and the
 * tree looked at again until no new one appears, so a child started meanwhile (a plugin's `git
 * push`) cannot slip out between the look and the kill; then all are killed.
 */
export function killTree(root: number): void {
    const frozen = new Set<number>();
    for (let round = 0; round < 20; round++) {
        const found = [root, ...descendants(root)].filter((p) => !frozen.has(p));
        if (found.length === 0) break;
        for (const pid of found) {
            try {
                process.kill(pid, "SIGSTOP");
            } catch {
                // already gone
            }
            frozen.add(pid);
        }
    }
    for (const pid of frozen) {
        try {
            process.kill(pid, "SIGKILL");
        } catch {
            // already gone
        }
    }
}
