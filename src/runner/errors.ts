/**
 * The runner's error taxonomy. Every failure reaching a caller is one of these kinds; exit codes
 * and HTTP statuses are decided here, once, and known failures of the layers below (validation,
 * release conflicts, git) are given their kind here too, so the CLI and the service answer alike.
 */
import { ValidationError } from "../config/validate";
import { GitError } from "../git/engine";
import { ReleaseConflictError } from "../release/publish";
import { ERROR_MAP, type ErrorKind } from "./error-map";

export type { ErrorKind } from "./error-map";

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

/** Exit code of an error for the `stages` CLI (see error-map.ts); anything not classified is 1. */
export function exitCode(raw: unknown): number {
    const e = classify(raw);
    return e instanceof RunnerError ? ERROR_MAP[e.kind].exit : ERROR_MAP.internal.exit;
}

/** HTTP status of an error for the service (see error-map.ts). */
export function httpStatus(raw: unknown): number {
    const e = classify(raw);
    return e instanceof RunnerError ? ERROR_MAP[e.kind].http : ERROR_MAP.internal.http;
}

/** What a caller may see of an error: the message for runner errors, a request id only for anything else. */
export function publicError(raw: unknown, requestId: string): { kind: ErrorKind; message: string; reason?: string; requestId: string } {
    const e = classify(raw);
    if (e instanceof RunnerError) return { kind: e.kind, message: e.message, ...(e.reason ? { reason: e.reason } : {}), requestId };
    return { kind: "internal", message: `internal error; see the runner's log for request ${requestId}`, requestId };
}
