/**
 * What the runner reads of a `file://` state backend directly: its lock files (to recover a lock
 * left by a process that died, which Pulumi itself never breaks) and a stack's checkpoint (a
 * stack's outputs without starting the CLI). Pulumi has no API for either on this backend.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";

import { alive } from "./processes";

const NS = "gitops-stages";

/** Who holds a lock of the file backend, as its lock file says. */
export interface LockOwner {
    pid: number;
    hostname: string;
    timestamp?: string;
}

/** Locks of a stack in a `file://` backend that belong to dead processes of this machine. */
export function staleBackendLocks(backendUrl: string, stack: string): { file: string; owner: LockOwner }[] {
    if (!backendUrl.startsWith("file://")) return [];
    const dir = path.join(backendUrl.slice("file://".length), ".pulumi", "locks", "organization", NS, stack);
    if (!fs.existsSync(dir)) return [];
    return fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".json"))
        .flatMap((f) => {
            try {
                const owner = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as LockOwner;
                return owner.hostname === os.hostname() && !alive(owner.pid) ? [{ file: path.join(dir, f), owner }] : [];
            } catch {
                return [];
            }
        });
}


const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function masked(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(masked);
    if (v && typeof v === "object") {
        if ((v as Record<string, unknown>)[SECRET_SIG] !== undefined) return "[secret]";
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
    if (!backendUrl.startsWith("file://")) return undefined;
    const root = path.join(backendUrl.slice("file://".length), ".pulumi", "stacks");
    for (const base of [path.join(root, "gitops-stages", stack), path.join(root, stack)]) {
        for (const [file, gz] of [[`${base}.json`, false], [`${base}.json.gz`, true]] as const) {
            if (!fs.existsSync(file)) continue;
            const raw = fs.readFileSync(file);
            const doc = JSON.parse((gz ? zlib.gunzipSync(raw) : raw).toString("utf8")) as { checkpoint?: { latest?: { resources?: { type: string; outputs?: Record<string, unknown> }[] } } };
            const root = doc.checkpoint?.latest?.resources?.find((r) => r.type === "pulumi:pulumi:Stack");
            return masked(root?.outputs ?? {}) as Record<string, unknown>;
        }
    }
    return undefined;
}
