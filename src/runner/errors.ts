/**
 * The runner's error taxonomy. Every failure reaching a caller is one of these kinds; exit codes
 * and HTTP statuses are decided here, once, and known failures of the layers below (validation,
 * release conflicts, git) are given their kind here too, so the CLI and the service answer alike.
 */
import { ValidationError } from "../config/validate";
import { GitError } from "../git/engine";
import { ReleaseConflictError } from "../release/publish";

/** Kinds of runner errors. */
export type ErrorKind = "invalid" | "unauthorized" | "forbidden" | "not-found" | "refused" | "conflict" | "timeout" | "unavailable" | "internal";

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

/** Translates known failures into the runner's taxonomy; anything else stays as it is (internal). */
export function classify(e: unknown): unknown {
    if (e instanceof RunnerError) return e;
    if (e instanceof ValidationError) return new RunnerError("invalid", e.message);
    if (e instanceof ReleaseConflictError) return new RunnerError("conflict", e.message, "release-conflict");
    if (e instanceof GitError) return new RunnerError("conflict", e.message, "git");
    if ((e as { code?: string })?.code?.startsWith?.("ERR_PARSE_ARGS")) return new RunnerError("invalid", (e as Error).message);
    return e;
}

/** Exit codes of the `stages` CLI: 2 invalid input, 3 refused by policy, 4 not found, 5 conflict, timeout or a service it needs unreachable, 1 anything else. */
export function exitCode(raw: unknown): number {
    const e = classify(raw);
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
        case "unavailable":
            return 5;
        case "internal":
            return 1;
    }
}

/** HTTP status of an error (for the service). */
export function httpStatus(raw: unknown): number {
    const e = classify(raw);
    if (!(e instanceof RunnerError)) return 500;
    return { invalid: 400, unauthorized: 401, forbidden: 403, "not-found": 404, refused: 409, conflict: 409, timeout: 504, unavailable: 503, internal: 500 }[e.kind];
}

/** What a caller may see of an error: the message for runner errors, a request id only for anything else. */
export function publicError(raw: unknown, requestId: string): { kind: ErrorKind; message: string; reason?: string; requestId: string } {
    const e = classify(raw);
    if (e instanceof RunnerError) return { kind: e.kind, message: e.message, ...(e.reason ? { reason: e.reason } : {}), requestId };
    return { kind: "internal", message: `internal error; see the runner's log for request ${requestId}`, requestId };
}
