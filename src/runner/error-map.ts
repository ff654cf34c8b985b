/**
 * The one error map: each kind of failure with the `stages` CLI's exit code and the service's
 * HTTP status. The CLI, the service, the OpenAPI document and the CI client (which is shipped as
 * one file, bundled with this module) all read it here. No imports, so bundling it adds nothing.
 */

/** Each error kind's exit code (CLI and CI client) and HTTP status (service). */
export const ERROR_MAP = {
    /** Bad input: a field breaks its rule (400; 413 and 415 for a body too large or not JSON). */
    invalid: { exit: 2, http: 400 },
    /** No credentials, or credentials nobody issued. */
    unauthorized: { exit: 3, http: 401 },
    /** The principal lacks the right (or Argo CD's RBAC refused it). */
    forbidden: { exit: 3, http: 403 },
    /** A policy refused the request (stage order, hold, freeze window, approval, sync window). */
    refused: { exit: 3, http: 409 },
    "not-found": { exit: 4, http: 404 },
    /** The world changed under the request (a release already published differently, a refused push). */
    conflict: { exit: 5, http: 409 },
    /** Too many requests for this token (the service only; the CI client retries first). */
    "rate-limited": { exit: 5, http: 429 },
    timeout: { exit: 5, http: 504 },
    /** A service the request needs (Argo CD, the state backend, the service itself) did not answer. */
    unavailable: { exit: 5, http: 503 },
    internal: { exit: 1, http: 500 },
} as const;

/** Kinds of failures. */
export type ErrorKind = keyof typeof ERROR_MAP;

/** Every kind, in the map's order (for schemas and documents). */
export const ERROR_KINDS = Object.keys(ERROR_MAP) as ErrorKind[];

/** Exit codes that are not errors of a request. */
export const EXIT = { ok: 0, failure: 1, invalidInput: ERROR_MAP.invalid.exit, cancelledByInterrupt: 130, cancelledByTerm: 143 } as const;

/** The exit code of a kind named in an answer (unknown kinds, from a newer service, are failures). */
export function exitOfKind(kind: string | undefined): number {
    return kind !== undefined && Object.prototype.hasOwnProperty.call(ERROR_MAP, kind) ? ERROR_MAP[kind as ErrorKind].exit : EXIT.failure;
}
