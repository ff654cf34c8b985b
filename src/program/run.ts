/**
 * The Pulumi program of every gitops-stages stack. The stack's name decides its role:
 * `platform` bootstraps the pipeline, `mr-<n>` is a merge-request environment, and any other
 * DNS-label name is a long-lived stage (`itg`, `tst`, ...). The runner runs the same function as
 * an inline Automation API program (`runStack`).
 */
import * as pulumi from "@pulumi/pulumi";

import { parsePlatformConfig } from "../config/platform";
import { parseMrConfig, parseStageConfig } from "../config/stage";
import { DNS_LABEL, ValidationError } from "../config/validate";
import { stageProgram } from "./stage";
import { userError } from "./errors";
import { projectDir, rawProjectConfig } from "./read-config";

/** Runs the program for the current stack and returns its outputs. */
export async function runStack(): Promise<Record<string, unknown>> {
    try {
        return await run();
    } catch (e) {
        // A RunError is shown as its message alone: configuration problems need no stack trace
        // (and formatting one through source maps takes seconds).
        if (e instanceof ValidationError) throw userError(e.message);
        throw e;
    }
}

async function run(): Promise<Record<string, unknown>> {
    const stack = pulumi.getStack();
    if (stack === "platform" || stack.startsWith("platform-")) {
        const cfg = parsePlatformConfig(rawProjectConfig(), { projectDir: projectDir(), stack });
        // Loaded for their stacks only: they bring the Kubernetes and GitHub SDKs, which a stage's
        // update (the runner's most frequent) does not use. `require`, not `import()`: run by
        // `pulumi up` through ts-node, this file keeps a dynamic import native, which resolves no
        // extensionless TypeScript path.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { platform } = require("./platform") as typeof import("./platform");
        return platform(cfg);
    }
    if (/^mr-\d+$/.test(stack)) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { mrProgram } = require("./mr") as typeof import("./mr");
        return mrProgram(parseMrConfig(rawProjectConfig(), stack, projectDir()));
    }
    if (DNS_LABEL.test(stack)) return stageProgram(stack, parseStageConfig(rawProjectConfig()));
    throw userError(`stack "${stack}" has no role: name it "platform", a stage name (a DNS label) or "mr-<number>"`);
}

