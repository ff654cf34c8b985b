/**
 * The runner's error taxonomy. Every failure reaching a caller is one of these kinds; exit codes
 * and HTTP statuses are decided here, once.
 */

/** Kinds of runner errors. */
export type ErrorKind = "invalid" | "unauthorized" | "forbidden" | "not-found" | "refused" | "conflict" | "timeout" | "internal";

/** A failure with a kind and a message safe to show to the caller. */
export class RunnerError extends Error {
    constructor(
        readonly kind: ErrorKind,
        message: string,
        /** Machine-readable reason for refusals (e.g. "stage-order", "hold", "freeze", "approval"). */
        readonly reason?: string,
    ) {
        super(message);
        this.name = "RunnerError";
    }
}

/** Exit codes of the `stages` CLI: 2 invalid input, 3 refused by policy, 4 not found, 5 conflict or timeout, 1 anything else. */
export function exitCode(e: unknown): number {
    if (!(e instanceof RunnerError)) return 1;
    switch (e.kind) {
        case "invalid":
            return 2;
        case "refused":
        case "unauthorized":
        case "forbidden":
            return 3;
        case "not-found":
            return 4;
        case "conflict":
        case "timeout":
            return 5;
        case "internal":
            return 1;
    }
}

/** HTTP status of an error (for the service). */
export function httpStatus(e: unknown): number {
    if (!(e instanceof RunnerError)) return 500;
    return { invalid: 400, unauthorized: 401, forbidden: 403, "not-found": 404, refused: 409, conflict: 409, timeout: 504, internal: 500 }[e.kind];
}

/** What a caller may see of an error: the message for runner errors, a request id only for anything else. */
export function publicError(e: unknown, requestId: string): { kind: ErrorKind; message: string; reason?: string; requestId: string } {
    if (e instanceof RunnerError) return { kind: e.kind, message: e.message, ...(e.reason ? { reason: e.reason } : {}), requestId };
    return { kind: "internal", message: `internal error; see the runner's log for request ${requestId}`, requestId };
}
