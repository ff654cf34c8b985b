/**
 * Who writes the ops repo for the platform and how the runner pushes to its protected main: used
 * by the platform program, the stage program and the runner. A module of its own, so that the
 * stage program (which every `stages` command loads) does not load the platform program's
 * providers (@pulumi/kubernetes, @pulumi/github) for two small things.
 */
import type { PushAs } from "../../git/engine";
import { userError } from "../errors";

/** Author of commits the platform stack makes. */
export const PLATFORM_AUTHOR = { name: "gitops-stages", email: "gitops-stages@noreply.invalid" };

/**
 * How the runner pushes to the protected ops main, from the platform stack's outputs
 * (`opsPushToken` on the local host, `opsChecks` on GitHub, whose status calls use `githubToken`).
 * Undefined for a platform stack that predates the protection: its ops repo has no hook either.
 */
export function opsPushAs(outputs: { opsPushToken?: unknown; opsChecks?: unknown }, githubToken: string | undefined): PushAs | undefined {
    if (typeof outputs.opsPushToken === "string" && outputs.opsPushToken) return { token: outputs.opsPushToken };
    const checks = outputs.opsChecks as { api?: unknown; repository?: unknown } | null | undefined;
    if (checks && typeof checks.api === "string" && typeof checks.repository === "string") {
        if (!githubToken) throw userError("GITHUB_TOKEN is required to report the validate check on the GitHub ops repo");
        return { checks: { api: checks.api, repository: checks.repository, token: githubToken } };
    }
    return undefined;
}
