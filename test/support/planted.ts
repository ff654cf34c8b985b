/**
 * Planted secret values: tests register the tokens, passphrases and secret values they create, and
 * the reporter (test/support/reporter.js) checks at the end of the run that none of them appears
 * in anything the run printed.
 */
declare global {
    var __gitopsStagesPlanted: string[] | undefined;
}

/** Registers a secret value for the end-of-run leak scan; returns it. */
export function plant<T extends string>(value: T): T {
    (globalThis.__gitopsStagesPlanted ??= []).push(value);
    return value;
}
