/**
 * What the runner reads of a `file://` state backend directly: a stack's checkpoint (whether the
 * stack exists, its outputs) and its newest update record, each without starting the CLI (its
 * locks: backend-locks.ts).
 * Pulumi has no API for these on this backend; each CLI start costs a few hundred milliseconds.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";

const NS = "gitops-stages";

/** The key every special value of a checkpoint carries (secrets, assets, archives, resource references)... */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
/** ...and its value for a secret. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Whether a checkpoint value is a secret. */
function isSecret(v: unknown): boolean {
    return v !== null && typeof v === "object" && (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

function masked(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(masked);
    if (v && typeof v === "object") {
        if (isSecret(v)) return "[secret]";
        return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, masked(x)]));
    }
    return v;
}

/**
 * A stack's outputs read from a `file://` backend's checkpoint (secrets masked as "[secret]"), or
 * undefined when that is not possible (another backend, no such file): then the CLI answers. The
 * backend writes checkpoints whole (to a temporary file, then renamed), so a read never sees half.
 */
export function checkpointOutputs(backendUrl: string, stack: string): Record<string, unknown> | undefined {
    const map = checkpointOutputMap(backendUrl, stack);
    return map === undefined ? undefined : Object.fromEntries(Object.entries(map).map(([k, o]) => [k, o.value]));
}

/**
 * The newest of a file's forms the backend may write (plain, gzip, zstd: compression can be
 * switched on at any time, leaving older files plain), or undefined when there is none.
 */
function newestForm(base: string): { file: string; form: "json" | "gz" | "zst" } | undefined {
    const found = (["json", "gz", "zst"] as const)
        .map((form) => ({ file: form === "json" ? base : `${base}.${form}`, form }))
        .flatMap((f) => {
            try {
                return [{ ...f, at: fs.statSync(f.file).mtimeMs }];
            } catch {
                return [];
            }
        })
        .sort((a, b) => b.at - a.at);
    return found[0];
}

/** A JSON file of the backend in a form Node reads (plain or gzip); undefined for zstd (the CLI reads it). */
function readForm(f: { file: string; form: "json" | "gz" | "zst" }): unknown {
    if (f.form === "zst") return undefined;
    const raw = fs.readFileSync(f.file);
    return JSON.parse((f.form === "gz" ? zlib.gunzipSync(raw) : raw).toString("utf8"));
}

/** The checkpoint file of a stack in a `file://` backend, if the stack exists there. */
function checkpointFile(backendUrl: string, stack: string): { file: string; form: "json" | "gz" | "zst" } | undefined {
    const root = path.join(backendUrl.slice("file://".length), ".pulumi", "stacks");
    for (const base of [path.join(root, NS, stack), path.join(root, stack)]) {
        const found = newestForm(`${base}.json`);
        if (found) return found;
    }
    return undefined;
}

/** Whether a stack exists in a `file://` backend (its checkpoint is there); undefined for other backends. */
export function checkpointExists(backendUrl: string, stack: string): boolean | undefined {
    if (!backendUrl.startsWith("file://")) return undefined;
    return checkpointFile(backendUrl, stack) !== undefined;
}

/**
 * A stack's outputs as the Automation API gives them (value, and whether the output is secret;
 * secret values masked as "[secret]", never decrypted), from a `file://` backend's checkpoint;
 * undefined when that is not possible.
 */
export function checkpointOutputMap(backendUrl: string, stack: string): Record<string, { value: unknown; secret: boolean }> | undefined {
    if (!backendUrl.startsWith("file://")) return undefined;
    const found = checkpointFile(backendUrl, stack);
    if (!found) return undefined;
    const doc = readForm(found) as { checkpoint?: { latest?: { resources?: { type: string; outputs?: Record<string, unknown> }[] } } } | undefined;
    if (doc === undefined) return undefined;
    const outputs = doc.checkpoint?.latest?.resources?.find((r) => r.type === "pulumi:pulumi:Stack")?.outputs ?? {};
    return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { value: masked(v), secret: isSecret(v) }]));
}

/** An update record of a `file://` backend's history folder (`<stack>-<nanoseconds>.history.json[.gz|.zst]`). */
export interface UpdateRecord {
    readonly kind: string;
    readonly startTime: number;
    readonly endTime?: number;
    readonly message: string;
    readonly result: string;
    readonly resourceChanges?: Record<string, number>;
    readonly environment?: Record<string, string>;
    readonly config?: Record<string, unknown>;
}

/** The newest update record of a stack in a `file://` backend (what `pulumi stack history --page-size 1` shows), or undefined. */
export function latestUpdateRecord(backendUrl: string, stack: string): UpdateRecord | undefined {
    if (!backendUrl.startsWith("file://")) return undefined;
    const dir = path.join(backendUrl.slice("file://".length), ".pulumi", "history", NS, stack);
    let names: string[];
    try {
        names = fs.readdirSync(dir);
    } catch {
        return undefined;
    }
    // Named by the time the record was written, in nanoseconds: the newest has the greatest
    // number (the CLI orders them the same way), whatever its compression.
    const pattern = new RegExp(`^${stack}-(\\d+)\\.history\\.json(\\.gz|\\.zst)?$`);
    let newest: { stamp: bigint; file: string; form: "json" | "gz" | "zst" } | undefined;
    for (const n of names) {
        const m = pattern.exec(n);
        if (!m) continue;
        const stamp = BigInt(m[1]);
        if (!newest || stamp > newest.stamp) newest = { stamp, file: path.join(dir, n), form: m[2] === ".gz" ? "gz" : m[2] === ".zst" ? "zst" : "json" };
    }
    return newest ? (readForm(newest) as UpdateRecord | undefined) : undefined;
}
