/**
 * Checking input against TypeBox schemas, with the errors users know: one error listing the
 * problems, each as `key = value: rule`. TypeBox finds the problems, and the same schemas are what the
 * service's routes validate with and what its OpenAPI document is generated from. This module
 * only words TypeBox's findings: TypeBox's own messages ("Expected string to match '^[a-z]...'")
 * quote regular expressions, so a schema states its rule for people in `x-rule` (which the
 * OpenAPI document shows as well).
 */
import { FormatRegistry, type TSchema, Type } from "@sinclair/typebox";
import { type ValueError, ValueErrorType } from "@sinclair/typebox/errors";
import { Errors } from "@sinclair/typebox/errors";

import { COMMIT, COMMIT_RULE, DNS_LABEL, DNS_LABEL_RULE, type Problem, REQUEST_ID, REQUEST_ID_RULE, REQUESTER, REQUESTER_RULE, SEMVER, SEMVER_RULE, maskUrl, show, urlProblem } from "./validate";

/** The format of an http(s) URL without credentials, spaces or control characters (see {@link urlProblem}). */
export const HTTP_URL = "http-url";
FormatRegistry.Set(HTTP_URL, (v) => urlProblem(v) === undefined);

/** A string matching `pattern`, with the rule error messages give. */
export function Pattern(pattern: RegExp, rule: string, extra: Record<string, unknown> = {}) {
    return Type.String({ pattern: pattern.source, "x-rule": rule, ...extra });
}

/** A stage or app name. */
export const Label = Pattern(DNS_LABEL, DNS_LABEL_RULE);
/** A release's version. */
export const Semver = Pattern(SEMVER, SEMVER_RULE);
/** A git commit id. */
export const Commit = Pattern(COMMIT, COMMIT_RULE);
/** A request id or idempotency key. */
export const RequestId = Pattern(REQUEST_ID, REQUEST_ID_RULE);
/** Who asks, as a commit trailer records it. */
export const Requester = Pattern(REQUESTER, REQUESTER_RULE);
/** An http(s) URL (see {@link urlProblem}). */
export const HttpUrl = Type.String({ format: HTTP_URL });
/** A whole number in [min, max]. */
export function Whole(minimum: number, maximum: number, extra: Record<string, unknown> = {}) {
    return Type.Integer({ minimum, maximum, ...extra });
}
/** One of the given strings. */
export function OneOf<T extends string>(options: readonly T[], extra: Record<string, unknown> = {}) {
    return Type.Union(
        options.map((o) => Type.Literal(o)),
        extra,
    );
}

/** The JSON path of an error (`/source/commit`, `/keys/0`) as a key (`source.commit`, `keys[0]`), under `root` at the top. */
function keyOf(path: string, root: string): string {
    const parts = path.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    let key = "";
    for (const p of parts) key += /^\d+$/.test(p) ? `[${p}]` : key ? `.${p}` : p;
    return key || root;
}

function rangeRule(schema: TSchema): string {
    const min = schema.minimum as number | undefined;
    const max = schema.maximum as number | undefined;
    if (min !== undefined && max !== undefined) return `must be a whole number from ${min} to ${max}`;
    if (min !== undefined) return `must be a whole number from ${min}`;
    return "must be a whole number";
}

/** How keys are named in problems. */
export interface Naming {
    /** The value itself: an unknown top-level key is `<root>.<key>` ("request.force"); without a root, just the key. */
    readonly root?: string;
    /** Before every key (a stack config's namespace, `gitops-stages:`). */
    readonly prefix?: string;
    /** What the value is, in the rule for unknown top-level keys ("of a stage stack"). */
    readonly setting?: string;
}

/** One TypeBox error as a problem. */
function problemOf(e: ValueError, naming: Naming): Problem {
    const root = naming.root ?? "";
    const prefix = naming.prefix ?? "";
    const key = prefix + keyOf(e.path, root);
    const s = e.schema;
    const ruled = (fallback: string) => (typeof s["x-rule"] === "string" ? s["x-rule"] : fallback);
    // A secret (`writeOnly`: sent, never shown back) is named, never quoted; a URL (`x-url`) is shown without credentials.
    const value = s["x-url"] === true && typeof e.value === "string" ? maskUrl(e.value) : e.value;
    const shown = (rule: string): Problem => (s.writeOnly === true ? { key, rule } : { key, value: show(value), rule });
    switch (e.type) {
        case ValueErrorType.ObjectRequiredProperty:
            return { key, rule: "is required" };
        case ValueErrorType.ObjectAdditionalProperties: {
            // A map's key that breaks its pattern (an app name): the map states the rule.
            if (typeof s["x-key-rule"] === "string") return { key, rule: s["x-key-rule"] };
            // The path names the unknown key; at the top, it is named under the root ("request.force").
            const top = e.path.split("/").length === 2;
            const at = top && root ? `${prefix}${root}.${keyOf(e.path, root)}` : key;
            return { key: at, rule: `is not a known setting${top && naming.setting ? ` ${naming.setting}` : ""} (known: ${Object.keys((s.properties as object | undefined) ?? {}).join(", ")})` };
        }
        case ValueErrorType.String:
            return shown("must be a string");
        case ValueErrorType.StringFormat: {
            if (s.format === HTTP_URL && typeof e.value === "string") {
                const wrong = urlProblem(e.value)!;
                return { key, value: show(wrong.shown), rule: wrong.rule };
            }
            return shown(ruled(`must be a ${String(s.format)}`));
        }
        case ValueErrorType.StringPattern:
            return shown(ruled(`must match ${String(s.pattern)}`));
        case ValueErrorType.StringMaxLength:
            return shown(ruled(`must be at most ${String(s.maxLength)} characters`));
        case ValueErrorType.StringMinLength:
            return shown(ruled(`must be at least ${String(s.minLength)} characters`));
        case ValueErrorType.Boolean:
            return shown("must be true or false");
        case ValueErrorType.Integer:
        case ValueErrorType.IntegerMinimum:
        case ValueErrorType.IntegerMaximum:
        case ValueErrorType.Number:
        case ValueErrorType.NumberMinimum:
        case ValueErrorType.NumberMaximum:
            return shown(ruled(rangeRule(s)));
        case ValueErrorType.Union: {
            const options = (s.anyOf as TSchema[] | undefined) ?? [];
            if (options.length && options.every((o) => o.const !== undefined)) return shown(`must be one of ${options.map((o) => JSON.stringify(o.const)).join(", ")}`);
            return shown(ruled("is not of an allowed shape"));
        }
        case ValueErrorType.Literal:
            return shown(`must be ${JSON.stringify(s.const)}`);
        case ValueErrorType.Array:
            return shown("must be a list");
        case ValueErrorType.Object:
            return shown("must be an object");
        default:
            return shown(ruled(e.message));
    }
}

/** How many problems one error lists. */
export const MAX_PROBLEMS = 20;

/** A value without its `undefined` properties: in JSON, and so in every request, a key set to nothing is a key left out. */
function defined(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(defined);
    if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return v;
    return Object.fromEntries(Object.entries(v).flatMap(([k, x]) => (x === undefined ? [] : [[k, defined(x)]])));
}

/** Whether a list of problems was cut at {@link MAX_PROBLEMS} (rules past the schema should then wait). */
export function capped(problems: readonly Problem[]): boolean {
    return problems.length > MAX_PROBLEMS;
}

/**
 * The problems of `value` against `schema`, one per key, in the order a reader checks: unknown
 * keys first, then the schema's properties in their order; keys named as `naming` says. At most
 * {@link MAX_PROBLEMS} are listed, then one line says there are more (a body of a million bad
 * items must not become an answer of a million lines).
 */
export function problemsOf(schema: TSchema, raw: unknown, naming: Naming = { root: "request" }): Problem[] {
    const value = defined(raw);
    const seen = new Set<string>();
    const found: { problem: Problem; rank: number; at: number }[] = [];
    const order = Object.keys((schema.properties as object | undefined) ?? {});
    let at = 0;
    for (const e of Errors(schema, value)) {
        if (found.length === MAX_PROBLEMS) {
            found.push({ problem: { key: "…", rule: `and more problems than the ${MAX_PROBLEMS} listed; fix these first` }, rank: Number.MAX_SAFE_INTEGER, at: at++ });
            break;
        }
        const problem = problemOf(e, naming);
        // TypeBox reports a missing key twice (required, then its type): the first says it.
        if (seen.has(problem.key)) continue;
        seen.add(problem.key);
        const top = e.path.split("/")[1] ?? "";
        const rank = e.type === ValueErrorType.ObjectAdditionalProperties && e.path.split("/").length === 2 ? -1 : order.indexOf(top);
        found.push({ problem, rank, at: at++ });
    }
    return found.sort((a, b) => a.rank - b.rank || a.at - b.at).map((f) => f.problem);
}
