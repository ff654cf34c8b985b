/**
 * Argo CD's REST API, as far as the runner and the stages' owners use it: read an Application (and
 * ask for a refresh), and sync one with the caller's own token. Argo CD decides with its own RBAC
 * and sync windows; its refusals reach the caller as the runner's error kinds, with Argo CD's
 * message and never the token.
 *
 * Hand-written over `fetch` because Argo CD publishes no JavaScript client: its API is gRPC with a
 * grpc-gateway REST mapping (`/api/v1/...`), and these three calls are all we need of it.
 */
import type { ApplicationStatus, ApplicationsPort } from "./deployed";
import { RunnerError } from "./errors";

/** An Application as Argo CD's API returns it (the fields we read). */
export interface ApplicationResource {
    readonly metadata?: { readonly name?: string };
    /** The operation requested and not yet taken up by the controller (a sync just asked for). */
    readonly operation?: { readonly initiatedBy?: { readonly username?: string; readonly automated?: boolean } };
    readonly status?: ApplicationStatus;
}

/** Where an Argo CD client's URL and token came from, named in errors so the fix is plain. */
export interface ArgoCdSource {
    /** The setting that gave the URL (e.g. `runner.json argocd.url`, `--argocd-url`). */
    readonly urlFrom: string;
    /** The setting that gave the token (e.g. `ARGOCD_AUTH_TOKEN`); never the token itself. */
    readonly tokenFrom: string;
}

/** A client of one Argo CD API server with one bearer token. */
export class ArgoCdClient {
    private readonly base: string;

    constructor(
        url: string,
        private readonly token: string,
        private readonly source: ArgoCdSource,
        private readonly timeoutMs = 30_000,
    ) {
        let parsed: URL;
        try {
            parsed = new URL(url);
        } catch {
            throw new RunnerError("invalid", `${source.urlFrom} = ${JSON.stringify(url)}: must be an http(s) URL of Argo CD's API server`);
        }
        if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new RunnerError("invalid", `${source.urlFrom} = ${JSON.stringify(url)}: must be an http(s) URL of Argo CD's API server`);
        this.base = parsed.toString().replace(/\/+$/, "");
        if (!token) throw new RunnerError("unauthorized", `no Argo CD token: set ${source.tokenFrom}`);
    }

    /** The API server's URL (for messages). */
    get url(): string {
        return this.base;
    }

    /** An Application, or undefined when Argo CD has none of that name. */
    async application(name: string, refresh = false): Promise<ApplicationResource | undefined> {
        return this.call<ApplicationResource>("GET", `/api/v1/applications/${encodeURIComponent(name)}${refresh ? "?refresh=normal" : ""}`, undefined, true);
    }

    /**
     * Starts a sync of an Application at its target revision (what Argo CD's UI "Sync" does), as
     * the token's account: Argo CD checks `get`, the sync windows, then `sync`, and records the
     * account as the operation's initiator.
     */
    async sync(name: string, opts: { prune?: boolean } = {}): Promise<ApplicationResource> {
        const app = await this.call<ApplicationResource>("POST", `/api/v1/applications/${encodeURIComponent(name)}/sync`, { name, prune: opts.prune ?? false });
        if (!app) throw new RunnerError("not-found", `Argo CD at ${this.base} has no Application ${name}`);
        return app;
    }

    private async call<T>(method: string, route: string, body?: unknown, absentIsUndefined = false): Promise<T | undefined> {
        let res: Response;
        try {
            res = await fetch(this.base + route, {
                method,
                headers: { authorization: `Bearer ${this.token}`, accept: "application/json", ...(body !== undefined ? { "content-type": "application/json" } : {}) },
                ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
                signal: AbortSignal.timeout(this.timeoutMs),
            });
        } catch (e) {
            const cause = (e as { cause?: { code?: string; message?: string } }).cause;
            const why = cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
            throw new RunnerError("unavailable", `cannot reach Argo CD at ${this.base} (${why}): check ${this.source.urlFrom}`);
        }
        const text = await res.text();
        if (res.ok) return JSON.parse(text) as T;
        // grpc-gateway's error body: {"error", "code", "message"}; the message is Argo CD's own words.
        let message = text.trim().slice(0, 500);
        try {
            const parsed = JSON.parse(text) as { message?: string; error?: string };
            message = parsed.message ?? parsed.error ?? message;
        } catch {
            // not JSON (a proxy's page): keep the start of the text
        }
        if (res.status === 404 && absentIsUndefined) return undefined;
        const said = `Argo CD at ${this.base} answered ${res.status}: ${message || res.statusText}`;
        if (res.status === 401) throw new RunnerError("unauthorized", `${said} (the token from ${this.source.tokenFrom} is not valid there)`);
        if (res.status === 403) {
            // A sync window's refusal is a policy answer (try later), not a missing right.
            if (/blocked by sync window/i.test(message)) throw new RunnerError("refused", said, "sync-window");
            throw new RunnerError("forbidden", said);
        }
        if (res.status === 404) throw new RunnerError("not-found", said);
        if (res.status === 400 || res.status === 409 || res.status === 412) throw new RunnerError("conflict", said, "argocd");
        if (res.status === 503 || res.status === 502 || res.status === 504) throw new RunnerError("unavailable", `${said}: check ${this.source.urlFrom}`);
        throw new RunnerError("internal", said);
    }
}

/** Applications read through Argo CD's API with the runner's read-only account. */
export class ArgoCdApplications implements ApplicationsPort {
    constructor(private readonly client: ArgoCdClient) {}

    async application(stage: string): Promise<ApplicationStatus | undefined> {
        const app = await this.client.application(stage);
        return app ? (app.status ?? {}) : undefined;
    }

    async refresh(stage: string): Promise<void> {
        await this.client.application(stage, true);
    }
}
