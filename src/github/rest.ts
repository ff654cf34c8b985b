/**
 * The one client of GitHub's REST API that the runner and the service use at run time: commit
 * statuses (the ops repo's `validate` check) and Deployments with their statuses (what a stage's
 * owners' sync deployed, recorded on the dev repo). The platform stack's own GitHub resources go
 * through `@pulumi/github` instead.
 *
 * Hand-written over `fetch` rather than Octokit: three calls, and the current `@octokit/rest` is an
 * ES module only, which this CommonJS program would have to load dynamically; retries and the
 * scrubbing of the token out of every message are ours either way.
 */

/** A GitHub answer that was not a success (or no answer), with a message safe to show. */
export class GitHubError extends Error {
    constructor(
        message: string,
        /** The HTTP status, or 0 when GitHub could not be reached. */
        readonly status: number,
    ) {
        super(message);
        this.name = "GitHubError";
    }
}

/** A repository as `owner/name` on one API root. */
export interface GitHubRepo {
    /** The REST API root: https://api.github.com, or `https://<host>/api/v3` for GitHub Enterprise Server. */
    readonly api: string;
    /** `owner/name`. */
    readonly repository: string;
}

/** A client of one API root with one token. */
export class GitHubRest {
    constructor(
        private readonly token: string,
        private readonly opts: { timeoutMs?: number; attempts?: number; pauseMs?: number; redact?: (s: string) => string } = {},
    ) {}

    /** Hides the token (and what the caller's `redact` hides) in any text. */
    private scrub(text: string): string {
        const r = this.opts.redact ? this.opts.redact(text) : text;
        return this.token ? r.split(this.token).join("***") : r;
    }

    /**
     * Sends one request. A network error, a 5xx or a 429 is tried again (GitHub's secondary rate
     * limits and brief outages), after 1 s, then 2 s, ...; any other failure is final.
     */
    async request<T>(repo: GitHubRepo, method: "GET" | "POST", route: string, body?: unknown): Promise<T> {
        const url = `${repo.api.replace(/\/$/, "")}/repos/${repo.repository}${route}`;
        const attempts = this.opts.attempts ?? 3;
        for (let attempt = 1; ; attempt++) {
            let failure: GitHubError;
            try {
                const res = await fetch(url, {
                    method,
                    signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
                    headers: {
                        authorization: `Bearer ${this.token}`,
                        accept: "application/vnd.github+json",
                        "x-github-api-version": "2022-11-28",
                        ...(body !== undefined ? { "content-type": "application/json" } : {}),
                    },
                    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
                });
                const text = await res.text().catch(() => "");
                if (res.ok) return (text ? JSON.parse(text) : {}) as T;
                failure = new GitHubError(`GitHub answered ${res.status} for ${method} ${this.scrub(url)}: ${this.scrub(text.slice(0, 300))}`, res.status);
                if (res.status < 500 && res.status !== 429) throw failure;
            } catch (e) {
                if (e instanceof GitHubError && e.status !== 0 && e.status < 500 && e.status !== 429) throw e;
                failure = e instanceof GitHubError ? e : new GitHubError(`cannot reach GitHub at ${this.scrub(url)}: ${this.scrub(e instanceof Error ? e.message : String(e))}`, 0);
            }
            if (attempt >= attempts) throw new GitHubError(`${failure.message} (after ${attempt} attempts)`, failure.status);
            await new Promise((r) => setTimeout(r, (this.opts.pauseMs ?? 1000) * attempt));
        }
    }

    /** Sets a commit status (`POST /repos/{repo}/statuses/{sha}`). */
    async commitStatus(repo: GitHubRepo, sha: string, status: { state: "success" | "failure" | "pending" | "error"; context: string; description: string }): Promise<void> {
        await this.request(repo, "POST", `/statuses/${sha}`, status);
    }

    /**
     * Records a Deployment of `ref` to `environment` with its final status, as a deployment tool
     * does once the release runs there: `deployment_status` events start the workflows that react.
     * `auto_merge` and `required_contexts` are off: the release was built and checked already.
     * Idempotent by `payload.opsCommit`: a Deployment an earlier attempt made for the same ops
     * commit is reused, and a final status it already has is not posted again (each status starts
     * workflow runs).
     */
    async recordDeployment(
        repo: GitHubRepo,
        d: { ref: string; environment: string; description: string; payload: { opsCommit: string } & Record<string, unknown>; production: boolean; state: "success" | "failure"; logUrl?: string },
    ): Promise<{ id: number; existed: boolean }> {
        const query = `sha=${encodeURIComponent(d.ref)}&environment=${encodeURIComponent(d.environment)}&per_page=100`;
        const earlier = (await this.request<{ id: number; payload?: { opsCommit?: string } | string }[]>(repo, "GET", `/deployments?${query}`)).find(
            (x) => typeof x.payload === "object" && x.payload?.opsCommit === d.payload.opsCommit,
        );
        let id: number;
        if (earlier) {
            id = earlier.id;
            const statuses = await this.request<{ state: string }[]>(repo, "GET", `/deployments/${id}/statuses?per_page=100`);
            if (statuses.some((x) => x.state === d.state)) return { id, existed: true };
        } else {
            id = (
                await this.request<{ id: number }>(repo, "POST", "/deployments", {
                    ref: d.ref,
                    environment: d.environment,
                    description: d.description.slice(0, 140),
                    payload: d.payload,
                    auto_merge: false,
                    required_contexts: [],
                    production_environment: d.production,
                    transient_environment: false,
                })
            ).id;
        }
        await this.request(repo, "POST", `/deployments/${id}/statuses`, {
            state: d.state,
            environment: d.environment,
            description: d.description.slice(0, 140),
            ...(d.logUrl ? { log_url: d.logUrl } : {}),
        });
        return { id, existed: earlier !== undefined };
    }
}
