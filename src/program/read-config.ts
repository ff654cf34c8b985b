/**
 * Reads this project's raw configuration for the pure parsers: every `gitops-stages:<key>` value,
 * JSON-decoded where it is JSON (objects and lists are stored that way), otherwise the string.
 */
import * as pulumi from "@pulumi/pulumi";

import { NAMESPACE } from "../config/platform";

/** Raw config values of the project namespace, keyed without the namespace. */
export function rawProjectConfig(all: Record<string, string> = pulumi.runtime.allConfig()): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(all)) {
        const [ns, ...rest] = key.split(":");
        if (ns !== NAMESPACE) continue;
        const name = rest.join(":").replace(/^config:/, "");
        try {
            out[name] = JSON.parse(value);
        } catch {
            out[name] = value;
        }
    }
    return out;
}

/** The folder relative config paths are resolved against: the project root (Pulumi.yaml). */
export function projectDir(): string {
    try {
        return pulumi.runtime.getRootDirectory() || process.cwd();
    } catch {
        return process.cwd();
    }
}
