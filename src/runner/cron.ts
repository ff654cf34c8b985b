/**
 * Freeze and sync windows: a cron schedule in an IANA time zone and a duration, as Argo CD's sync
 * windows take them. A window is open when its latest start lies within `duration` before now.
 * Schedules are evaluated by croner (names such as FRI and JAN, time zones, daylight-saving
 * changes); this module only narrows what croner accepts to what Argo CD's cron parser accepts
 * too, so a window our config takes is one Argo CD takes. One difference remains, by design: Argo
 * CD shifts a schedule by the zone's offset of the current moment, we evaluate it in the zone at
 * the window's own time, so near a daylight-saving change the two can disagree for an hour.
 */
import { Cron } from "croner";

/**
 * One field as robfig/cron's parser reads it with the fields Argo CD enables (minute, hour,
 * day-of-month, month, day-of-week, and no descriptors such as @daily): lists of `*`, `?`,
 * numbers or three-letter names, with ranges and steps; no L, W or #.
 */
const FIELD = /^(\*|\?|\d+|[A-Za-z]{3})(-(\d+|[A-Za-z]{3}))?(\/\d+)?(,(\*|\?|\d+|[A-Za-z]{3})(-(\d+|[A-Za-z]{3}))?(\/\d+)?)*$/;

/** The rule schedules follow, as error messages say it. */
export const SCHEDULE_RULE =
    "must be a cron schedule Argo CD accepts: 5 fields (minute hour day-of-month month day-of-week) of numbers, names such as FRI or JAN, ranges, lists and steps (day of week 0-6; no descriptors such as @daily, no L, W or #)";

/** The rule time zones follow. */
export const TIME_ZONE_RULE = "must be an IANA time zone, spelled as in the tz database, such as UTC or Europe/Paris";

/** The rule durations follow. */
export const DURATION_RULE = 'must be a duration such as "1h", "30m" or "1h30m"';

/** Parses a schedule; throws an Error whose message says what is wrong. */
export function parseSchedule(schedule: string, timeZone = "UTC"): Cron {
    const fields = schedule.trim().split(/\s+/);
    if (fields.length !== 5 || !fields.every((f) => FIELD.test(f))) throw new Error(`schedule "${schedule}" ${SCHEDULE_RULE}`);
    // robfig/cron numbers the days of the week 0-6 (croner would also take 7 for Sunday).
    if (/(^|[,-])7(\D|$)/.test(fields[4])) throw new Error(`schedule "${schedule}" ${SCHEDULE_RULE}`);
    checkTimeZone(timeZone);
    // `?` means "any" in robfig/cron; croner takes `*`.
    const expr = fields.map((f) => f.replace(/\?/g, "*")).join(" ");
    try {
        // legacyMode: day-of-month and day-of-week restricted together match either, as in robfig/cron.
        return new Cron(expr, { timezone: timeZone, mode: "5-part", paused: true, legacyMode: true });
    } catch (e) {
        throw new Error(`schedule "${schedule}": ${(e as Error).message.replace(/^CronPattern: /, "")}`);
    }
}

/**
 * Throws unless `timeZone` is an IANA zone. The runtime's zone database answers; a name it knows
 * only in another letter case is refused too, since Go's time.LoadLocation, which Argo CD uses,
 * is case-sensitive (and falls back to UTC, silently, on a name it does not know).
 */
export function checkTimeZone(timeZone: string): void {
    let resolved: string;
    try {
        resolved = new Intl.DateTimeFormat("en-US", { timeZone }).resolvedOptions().timeZone;
    } catch {
        throw new Error(`time zone "${timeZone}" ${TIME_ZONE_RULE}`);
    }
    if (resolved !== timeZone && resolved.toLowerCase() === timeZone.toLowerCase()) throw new Error(`time zone "${timeZone}" ${TIME_ZONE_RULE} (did you mean ${resolved}?)`);
}

/** True when the schedule starts a window in the minute containing `t`. */
export function scheduleMatches(schedule: string, timeZone: string, t: Date): boolean {
    const minute = new Date(Math.floor(t.getTime() / 60_000) * 60_000);
    return parseSchedule(schedule, timeZone).match(minute);
}

/** Parses "90m", "2h" or "1h30m" into minutes. */
export function durationMinutes(text: string): number {
    const m = /^(?:(\d+)h)?(?:(\d+)m)?$/.exec(text);
    if (!m || (!m[1] && !m[2])) throw new Error(`duration "${text}" ${DURATION_RULE}`);
    return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

/** The start of the window open at `now`, or undefined when it is closed. */
export function windowOpenSince(schedule: string, duration: string, timeZone: string, now: Date): Date | undefined {
    const minutes = durationMinutes(duration);
    // The latest start at or before now; a later start always closes later, so it alone decides.
    const [start] = parseSchedule(schedule, timeZone).previousRuns(1, new Date(now.getTime() + 1000));
    return start && now.getTime() < start.getTime() + minutes * 60_000 ? start : undefined;
}
