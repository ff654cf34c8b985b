/**
 * Who may do what: rights are verbs granted on stages. CLI users get theirs from runner.json,
 * tokens (CI's and operators') from the platform stack's generated per-stage tokens and from
 * configured token hashes. Pure: the same checks serve the CLI and the service.
 */
import { createHash, timingSafeEqual } from "node:crypto";

import { Checker, DNS_LABEL, DNS_LABEL_RULE } from "../config/validate";
import { RunnerError } from "./errors";

/** Every verb a right can name. `mr` covers deploy, destroy and reap of merge-request environments. */
export const VERBS = ["promote", "preview", "rollback", "hold", "approve", "status", "history", "drift", "mr", "secrets"] as const;

/** A verb of the runner, as rights name it. */
export type Verb = (typeof VERBS)[number];

/** What CI of the dev repo may do with a stage's generated token: never `secrets`, never rollbacks or holds. */
export const CI_VERBS: readonly Verb[] = ["promote", "preview", "status", "history", "mr"];

/** What a CLI user without configured rights may do: everything but sensitive configuration. */
export const DEFAULT_USER_VERBS: readonly Verb[] = VERBS.filter((v) => v !== "secrets");

/** Verbs granted on stages; `"*"` stands for every stage. */
export interface Grant {
    readonly stages: readonly string[];
    readonly verbs: readonly Verb[];
}

/** Anyone holding rights: a CLI user or a token. */
export interface Principal {
    readonly name: string;
    readonly grants: readonly Grant[];
}

/** True when some grant gives `verb` on `stage` (or, for verbs without a stage, on any stage). */
export function allows(grants: readonly Grant[], verb: Verb, stage?: string): boolean {
    return grants.some((g) => g.verbs.includes(verb) && (stage === undefined || g.stages.includes("*") || g.stages.includes(stage)));
}

/**
 * Throws `forbidden` unless the principal holds the right. The message names what was asked, never
 * what exists or what the principal could do instead.
 */
export function requireRight(who: Principal, verb: Verb, stage?: string): void {
    if (!allows(who.grants, verb, stage)) {
        throw new RunnerError("forbidden", `${who.name} is not allowed to ${verb}${stage ? ` in stage ${stage}` : ""}`, "rights");
    }
}

/** Parses a list of grants (`[{stages: ["tst"] | ["*"], verbs: [...]}]`), reporting problems to `c`. */
export function parseGrants(c: Checker, key: string, raw: unknown): Grant[] {
    if (!Array.isArray(raw)) {
        c.fail(key, raw, "must be a list of {stages, verbs}");
        return [];
    }
    return raw.map((item, i) => {
        const o = c.object(`${key}[${i}]`, item, ["stages", "verbs"]);
        const stages = c.strings(`${key}[${i}].stages`, o.stages, []);
        stages.forEach((s, j) => {
            if (s !== "*" && !DNS_LABEL.test(s)) c.fail(`${key}[${i}].stages[${j}]`, s, `must be "*" or a stage name: ${DNS_LABEL_RULE}`);
        });
        if (stages.length === 0) c.fail(`${key}[${i}].stages`, o.stages, 'must name at least one stage (or "*")');
        const verbs = c.strings(`${key}[${i}].verbs`, o.verbs, []);
        verbs.forEach((v, j) => {
            if (!(VERBS as readonly string[]).includes(v)) c.fail(`${key}[${i}].verbs[${j}]`, v, `must be one of ${VERBS.join(", ")}`);
        });
        if (verbs.length === 0) c.fail(`${key}[${i}].verbs`, o.verbs, "must name at least one verb");
        return { stages, verbs: verbs as Verb[] };
    });
}

/** The stored form of a token: its SHA-256, hex. Tokens themselves are never stored by the runner. */
export function hashToken(token: string): string {
    return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A token the runner accepts: a name for logs and commits, its hash, and its rights. */
export interface TokenEntry {
    readonly name: string;
    readonly sha256: string;
    readonly grants: readonly Grant[];
    /** Teams the token acts for (stage ownership, for approvals). */
    readonly teams?: readonly string[];
    /** May skip the stage order (recorded in the commit), like a CLI user with overrideOrder. */
    readonly overrideOrder?: boolean;
}

/** The platform stack's generated tokens (stage -> hash): CI rights on their own stage only. */
export function platformTokenEntries(hashes: Readonly<Record<string, string>>): TokenEntry[] {
    return Object.entries(hashes).map(([stage, sha256]) => ({ name: `ci-${stage}`, sha256, grants: [{ stages: [stage], verbs: CI_VERBS }] }));
}

/**
 * The principal a bearer token stands for, or undefined for an unknown token. Every entry is
 * compared in constant time, so timing tells nothing about which hashes exist.
 */
export function tokenPrincipal(token: string, entries: readonly TokenEntry[]): (Principal & { teams: readonly string[]; overrideOrder: boolean }) | undefined {
    const presented = Buffer.from(hashToken(token), "hex");
    let found: TokenEntry | undefined;
    for (const e of entries) {
        const stored = Buffer.from(e.sha256, "hex");
        if (stored.length === presented.length && timingSafeEqual(stored, presented) && !found) found = e;
    }
    return found ? { name: found.name, grants: found.grants, teams: found.teams ?? [], overrideOrder: found.overrideOrder ?? false } : undefined;
}
