/**
 * The inline program's calls to an engine that went away: recognised, and kept from ending the
 * process (see {@link guardEngineDisconnects}).
 */

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

