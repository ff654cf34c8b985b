/**
 * The GitHub token and the push URL it makes: used by the stage program and the runner, which must
 * not load the GitHub provider's SDK for them (every `stages` command loads the stage program).
 */
import * as pulumi from "@pulumi/pulumi";

/** The GitHub token: the GitHub provider's own `github:token` config (secret), else GITHUB_TOKEN. */
export function githubToken(env: NodeJS.ProcessEnv): pulumi.Output<string> | undefined {
    return new pulumi.Config("github").getSecret("token") ?? (env.GITHUB_TOKEN ? pulumi.secret(env.GITHUB_TOKEN) : undefined);
}

/** `https://x-access-token:<token>@host/owner/repo.git`, the form GitHub accepts for token pushes. */
export function tokenRemote(httpCloneUrl: string, token: string): string {
    const u = new URL(httpCloneUrl);
    u.username = "x-access-token";
    u.password = token;
    return u.toString();
}
