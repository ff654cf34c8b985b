/**
 * A small toolkit for parsers that collect every problem before failing: each check records
 * `{ key, value, rule }` and returns a usable value, so one pass reports everything wrong.
 */

/** One thing wrong with an input. */
export interface Problem {
    /** Where: a config key or request field, e.g. `gitops-stages:stages[1].name`. */
    readonly key: string;
    /** The offending value, shortened for display; undefined when the value is missing. */
    readonly value?: string;
    /** The rule it breaks, phrased as what is required. */
    readonly rule: string;
}

/** One problem as a line: `key = value: rule` (the value left out when missing). */
export function formatProblem(p: Problem): string {
    return `${p.key}${p.value === undefined ? "" : ` = ${p.value}`}: ${p.rule}`;
}

/** Invalid input: lists every problem, one per line. */
export class ValidationError extends Error {
    constructor(
        /** What was being validated, e.g. "platform configuration". */
        readonly subject: string,
        readonly problems: readonly Problem[],
    ) {
        super(
            `invalid ${subject} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
                problems.map((p) => `  ${formatProblem(p)}`).join("\n"),
        );
        this.name = "ValidationError";
    }
}

/** Renders a value for an error message: JSON, cut at 60 characters. */
export function show(value: unknown): string {
    let s: string;
    try {
        s = JSON.stringify(value) ?? String(value);
    } catch {
        s = String(value);
    }
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** DNS label (RFC 1123): what Kubernetes requires of namespace names and we require of stage and app names. */
export const DNS_LABEL = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** The rule text that goes with {@link DNS_LABEL}. */
export const DNS_LABEL_RULE =
    "must be a DNS label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters";

/** A request id or idempotency key: what may name a request in a URL, a commit trailer and the request log. */
export const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** The rule text that goes with {@link REQUEST_ID}. */
export const REQUEST_ID_RULE = "must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit";

/** A git commit id, abbreviated or full. */
export const COMMIT = /^[0-9a-f]{7,64}$/;
/** The rule text that goes with {@link COMMIT}. */
export const COMMIT_RULE = "must be a git commit id (7 to 64 hex characters)";

/**
 * Who asked, as commits and the audit trail record it: one line (a newline would let a caller write
 * trailers of its own, such as a forged `Request-Id`), 1 to 200 characters, no leading space.
 */
export const REQUESTER = /^\S[^\n\r\0]{0,199}$/;
/** The rule {@link REQUESTER} checks, as error messages say it. */
export const REQUESTER_RULE = "must be one line of 1 to 200 characters, not starting with a space";

/** Semantic version 2.0.0, without a leading "v". */
export const SEMVER =
    /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
/** The rule text that goes with {@link SEMVER}. */
export const SEMVER_RULE = "must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)";

type Plain = Record<string, unknown>;

/** Collects problems while reading a value tree. */
export class Checker {
    readonly problems: Problem[] = [];

    /** Records a problem. */
    fail(key: string, value: unknown, rule: string): void {
        this.problems.push({ key, value: value === undefined ? undefined : show(value), rule });
    }

    /** Throws a {@link ValidationError} if anything was recorded. */
    throwIfAny(subject: string): void {
        if (this.problems.length > 0) throw new ValidationError(subject, this.problems);
    }

    /** An object with only the given keys; unknown keys are problems. Missing -> `{}`. */
    object(key: string, value: unknown, allowed: readonly string[]): Plain {
        if (value === undefined || value === null) return {};
        if (typeof value !== "object" || Array.isArray(value)) {
            this.fail(key, value, "must be an object");
            return {};
        }
        for (const k of Object.keys(value)) {
            if (!allowed.includes(k)) {
                this.fail(`${key}.${k}`, undefined, `is not a known setting (known: ${allowed.join(", ")})`);
            }
        }
        return value as Plain;
    }

    /** A string matching `pattern` (when given); missing -> `fallback` (a problem if no fallback). */
    string(key: string, value: unknown, fallback?: string, pattern?: RegExp, rule?: string): string {
        if (value === undefined || value === null) {
            if (fallback === undefined) this.fail(key, undefined, "is required");
            return fallback ?? "";
        }
        if (typeof value !== "string") {
            this.fail(key, value, "must be a string");
            return fallback ?? "";
        }
        if (pattern && !pattern.test(value)) {
            this.fail(key, value, rule ?? `must match ${pattern}`);
        }
        return value;
    }

    /** A boolean; missing -> `fallback`. */
    boolean(key: string, value: unknown, fallback: boolean): boolean {
        if (value === undefined || value === null) return fallback;
        if (typeof value !== "boolean") {
            this.fail(key, value, "must be true or false");
            return fallback;
        }
        return value;
    }

    /** An integer in [min, max]; missing -> `fallback`. */
    integer(key: string, value: unknown, fallback: number, min: number, max: number): number {
        if (value === undefined || value === null) return fallback;
        if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
            this.fail(key, value, `must be a whole number from ${min} to ${max}`);
            return fallback;
        }
        return value;
    }

    /** One of the given strings; missing -> `fallback`. */
    oneOf<T extends string>(key: string, value: unknown, options: readonly T[], fallback: T): T {
        if (value === undefined || value === null) return fallback;
        if (typeof value !== "string" || !(options as readonly string[]).includes(value)) {
            this.fail(key, value, `must be one of ${options.map((o) => `"${o}"`).join(", ")}`);
            return fallback;
        }
        return value as T;
    }

    /** An array; missing -> `fallback`. Elements are read by `each`. */
    array<T>(key: string, value: unknown, fallback: T[], each: (key: string, item: unknown, index: number) => T): T[] {
        if (value === undefined || value === null) return fallback;
        if (!Array.isArray(value)) {
            this.fail(key, value, "must be a list");
            return fallback;
        }
        return value.map((item, i) => each(`${key}[${i}]`, item, i));
    }

    /** A list of strings each matching `pattern`. */
    strings(key: string, value: unknown, fallback: string[], pattern?: RegExp, rule?: string): string[] {
        return this.array(key, value, fallback, (k, item) => this.string(k, item, "", pattern, rule));
    }

    /** An http(s) URL; missing -> `fallback`. */
    url(key: string, value: unknown, fallback?: string): string {
        const s = this.string(key, value, fallback);
        if (s && value !== undefined) {
            const wrong = urlProblem(s);
            if (wrong) this.fail(key, wrong.shown, wrong.rule);
        }
        return s;
    }
}

/**
 * A URL as it may be shown back: everything between its scheme and its last `@` masked (a user
 * name or password, however the rest is malformed; masking too much is the safe side).
 */
export function maskUrl(s: string): string {
    return s.includes("@") ? s.replace(/^(\s*[A-Za-z][A-Za-z0-9+.-]*:(?:\/\/)?)?[\s\S]*@/, (_m, scheme: string | undefined) => `${scheme ?? ""}***@`) : s;
}

/**
 * What is wrong with a URL a caller gives (undefined: nothing): the rule it breaks and how to show
 * the value (a URL with credentials is shown without them).
 */
export function urlProblem(s: string): { rule: string; shown: string } | undefined {
    // Whatever is wrong, a user name or password in it is never shown back.
    const shown = maskUrl(s);
    // URL parsing drops newlines and tabs silently; the text itself goes into commit trailers,
    // where a newline would start a trailer of the caller's own.
    if (/[\s\0]/.test(s)) return { rule: "must be a URL without spaces, newlines or control characters", shown };
    let u: URL;
    try {
        u = new URL(s);
    } catch {
        return { rule: "must be an http:// or https:// URL", shown };
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") return { rule: "must be an http:// or https:// URL", shown };
    // URLs end up in commits, stack config and update metadata: never a credential.
    if (u.username || u.password) return { rule: "must not carry a user name or password", shown: `${u.protocol}//***@${u.host}${u.pathname}` };
    return undefined;
}
