/**
 * The Pulumi program of every gitops-stages stack. The stack's name decides its role:
 * `platform` bootstraps the pipeline; stage and merge-request stacks follow in their own modules.
 */
import * as pulumi from "@pulumi/pulumi";

import { parsePlatformConfig } from "../config/platform";
import { ValidationError } from "../config/validate";
import { platform } from "./platform";
import { projectDir, rawProjectConfig } from "./read-config";

/** Runs the program for the current stack and returns its outputs. */
async function main(): Promise<Record<string, unknown>> {
    try {
        return await run();
    } catch (e) {
        // A RunError is shown as its message alone: configuration problems need no stack trace
        // (and formatting one through source maps takes seconds).
        if (e instanceof ValidationError) throw new pulumi.RunError(e.message);
        throw e;
    }
}

async function run(): Promise<Record<string, unknown>> {
    const stack = pulumi.getStack();
    if (stack === "platform" || stack.startsWith("platform-")) {
        const cfg = parsePlatformConfig(rawProjectConfig(), { projectDir: projectDir(), stack });
        return platform(cfg);
    }
    throw new pulumi.RunError(`stack "${stack}" has no role yet: name the platform stack "platform" (stage and merge-request stacks come with the runner)`);
}

export = main;
