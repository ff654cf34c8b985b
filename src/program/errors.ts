/**
 * Errors the user must act on (bad configuration, missing release, unreachable chart). They are
 * shown as their message alone, and carry no stack: `@pulumi/pulumi` formats an error's stack for
 * its tracing even when it prints only the message, and resolving that stack through source maps
 * took over 10 seconds of a failing run.
 */
import * as pulumi from "@pulumi/pulumi";

/** A RunError without a stack trace. */
export function userError(message: string): pulumi.RunError {
    const e = new pulumi.RunError(message);
    e.stack = undefined;
    return e;
}
