import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** What a finished child process left behind. */
export interface ExecResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

/** Options for {@link run}. */
export interface ExecOptions {
    readonly cwd?: string;
    readonly env?: NodeJS.ProcessEnv;
    /** Called every `heartbeatMs` while the process runs, with the elapsed milliseconds. */
    readonly onHeartbeat?: (elapsedMs: number) => void;
    readonly heartbeatMs?: number;
    readonly input?: string;
}

/**
 * Runs a program to completion and collects its output. Never rejects for a non-zero exit
 * (the caller decides what that means); rejects only when the program cannot be started.
 */
export function run(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const child = spawn(file, args, {
            cwd: options.cwd,
            env: options.env ?? process.env,
            stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout?.on("data", (b: Buffer) => out.push(b));
        child.stderr?.on("data", (b: Buffer) => err.push(b));
        let timer: NodeJS.Timeout | undefined;
        if (options.onHeartbeat) {
            const beat = options.onHeartbeat;
            timer = setInterval(() => beat(Date.now() - started), options.heartbeatMs ?? 30_000);
        }
        if (options.input !== undefined && child.stdin) {
            child.stdin.end(options.input);
        }
        child.on("error", (e) => {
            if (timer) clearInterval(timer);
            reject(e);
        });
        child.on("close", (code, signal) => {
            if (timer) clearInterval(timer);
            resolve({
                code: code ?? (signal ? 128 : 1),
                stdout: Buffer.concat(out).toString("utf8"),
                stderr: Buffer.concat(err).toString("utf8"),
            });
        });
    });
}

/** Finds an executable on PATH, as `command -v` does; undefined when absent. */
export function which(name: string, pathVar: string = process.env.PATH ?? ""): string | undefined {
    for (const dir of pathVar.split(path.delimiter)) {
        if (!dir) continue;
        const candidate = path.join(dir, name);
        try {
            fs.accessSync(candidate, fs.constants.X_OK);
            if (fs.statSync(candidate).isFile()) return candidate;
        } catch {
            // not here; keep looking
        }
    }
    return undefined;
}
