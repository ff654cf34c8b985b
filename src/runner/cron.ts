/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week) evaluated in a time
 * zone, for freeze windows: a window is open when one of its start times lies within `duration`
 * before now. Pure.
 */

/** A parsed cron field: the set of allowed values. */
type Field = Set<number>;

const RANGES: [number, number][] = [
    [0, 59],
    [0, 23],
    [1, 31],
    [1, 12],
    [0, 6],
];

function parseField(text: string, [lo, hi]: [number, number]): Field {
    const out = new Set<number>();
    for (const part of text.split(",")) {
        const [range, stepText] = part.split("/");
        const step = stepText === undefined ? 1 : Number(stepText);
        let from = lo;
        let to = hi;
        if (range !== "*") {
            const [a, b] = range.split("-");
            from = Number(a);
            to = b === undefined ? (stepText === undefined ? from : hi) : Number(b);
        }
        if (![from, to, step].every(Number.isInteger) || step < 1 || from < lo || to > hi || from > to) {
            throw new Error(`invalid cron field "${text}" (allowed ${lo}-${hi})`);
        }
        for (let v = from; v <= to; v += step) out.add(v === 7 && hi === 6 ? 0 : v);
    }
    return out;
}

/** A parsed cron expression. */
export interface Cron {
    readonly fields: readonly Field[];
    /** True when day-of-month and day-of-week are both restricted (cron then matches either). */
    readonly domOrDow: boolean;
}

/** Parses "m h dom mon dow"; throws with the offending field. */
export function parseCron(expr: string): Cron {
    const parts = expr.trim().split(/\s+/);
    if (parts.length !== 5) throw new Error(`cron expression "${expr}" must have 5 fields`);
    // Day of week accepts 7 for Sunday.
    const fields = parts.map((p, i) => parseField(p, i === 4 ? [0, 7] : RANGES[i]));
    fields[4] = new Set([...fields[4]].map((d) => (d === 7 ? 0 : d)));
    return { fields, domOrDow: parts[2] !== "*" && parts[4] !== "*" };
}

/** Wall-clock fields of an instant in a time zone. */
export function zonedParts(t: Date, timeZone: string): { minute: number; hour: number; day: number; month: number; weekday: number } {
    const f = new Intl.DateTimeFormat("en-US", {
        timeZone,
        hourCycle: "h23",
        minute: "numeric",
        hour: "numeric",
        day: "numeric",
        month: "numeric",
        weekday: "short",
    });
    const parts = Object.fromEntries(f.formatToParts(t).map((p) => [p.type, p.value]));
    const weekday = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].indexOf(parts.weekday);
    return { minute: Number(parts.minute), hour: Number(parts.hour), day: Number(parts.day), month: Number(parts.month), weekday };
}

/** True when the cron expression matches the minute containing `t` in `timeZone`. */
export function cronMatches(c: Cron, t: Date, timeZone: string): boolean {
    const z = zonedParts(t, timeZone);
    const [m, h, dom, mon, dow] = c.fields;
    if (!m.has(z.minute) || !h.has(z.hour) || !mon.has(z.month)) return false;
    return c.domOrDow ? dom.has(z.day) || dow.has(z.weekday) : dom.has(z.day) && dow.has(z.weekday);
}

/** Parses "90m", "2h" or "1h30m" into minutes. */
export function durationMinutes(text: string): number {
    const m = /^(?:(\d+)h)?(?:(\d+)m)?$/.exec(text);
    if (!m || (!m[1] && !m[2])) throw new Error(`invalid duration "${text}"`);
    return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

/** The start of the window open at `now`, or undefined when it is closed. */
export function windowOpenSince(schedule: string, duration: string, timeZone: string, now: Date): Date | undefined {
    const c = parseCron(schedule);
    const minutes = durationMinutes(duration);
    const start = Math.floor(now.getTime() / 60_000) * 60_000;
    for (let i = 0; i < minutes; i++) {
        const t = new Date(start - i * 60_000);
        if (cronMatches(c, t, timeZone)) return t;
    }
    return undefined;
}
