/**
 * The service's log: JSON lines on stdout through pino, the level as its name, the time in ISO
 * 8601, and redaction as a second line of defence: the service never puts a credential in a log
 * entry, and should one ever be passed (a header, a token field), pino writes "[redacted]".
 */
import pino from "pino";

/** One log entry as the service writes it: a level, a message and fields. */
export type LogEntry = Record<string, unknown> & { level?: string; msg?: string };

/** Paths pino censors in every entry. */
export const REDACTED_PATHS = [
    "authorization",
    "headers.authorization",
    "req.headers.authorization",
    "token",
    "*.token",
    "password",
    "*.password",
    "values",
    "*.values",
];

const LEVELS = new Set(["trace", "debug", "info", "warn", "error", "fatal"]);

/** A log function writing JSON lines to `stream` (default stdout). */
export function serviceLog(stream: NodeJS.WritableStream = process.stdout): (entry: LogEntry) => void {
    const logger = pino(
        {
            base: undefined,
            timestamp: pino.stdTimeFunctions.isoTime,
            formatters: { level: (label) => ({ level: label }) },
            redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
        },
        stream,
    );
    return ({ level, msg, ...fields }) => {
        const at = level && LEVELS.has(level) ? (level as pino.Level) : "info";
        logger[at](fields, msg ?? "");
    };
}
