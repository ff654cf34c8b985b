/**
 * `stages ci`: the small client CI workflows call. It sends a request to the service
 * (`$GITOPS_STAGES_URL`, token in `$GITOPS_STAGES_TOKEN`), retries on 429/503 and connection
 * failures (honouring Retry-After), follows the request until it finishes, prints the answer as
 * JSON on stdout and a readable line on stderr, and exits with the CLI's codes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";

import { ERROR_MAP, EXIT, exitOfKind } from "../runner/error-map";

/** Reads a bundle folder into the upload form: `{ files: { "chart/...": text } }`. */
export function bundleFiles(dir: string): { files: Record<string, string> } {
    const files: Record<string, string> = {};
    const walk = (rel: string) => {
        for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
            const p = rel ? `${rel}/${e.name}` : e.name;
            if (e.isDirectory()) walk(p);
            else if (e.isFile()) files[p] = fs.readFileSync(path.join(dir, p), "utf8");
        }
    };
    walk("");
    return { files };
}

interface Answer {
    status: number;
    body: Record<string, unknown>;
}

/** Sends with retries on 429, 503 and connection failures. */
export async function send(base: string, token: string, method: string, route: string, body: unknown, opts: { retries: number; log: (l: string) => void; sleep?: (ms: number) => Promise<void> }): Promise<Answer> {
    const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    for (let attempt = 1; ; attempt++) {
        let status = 0;
        let retryAfter: number | undefined;
        let text = "";
        try {
            const res = await fetch(base.replace(/\/+$/, "") + route, {
                method,
                headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
                ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
            });
            status = res.status;
            retryAfter = res.headers.get("retry-after") ? Number(res.headers.get("retry-after")) : undefined;
            text = await res.text();
            if (status !== 429 && status !== 503) {
                let parsed: Record<string, unknown>;
                try {
                    parsed = JSON.parse(text) as Record<string, unknown>;
                } catch {
                    parsed = { error: { kind: "internal", message: `the service answered ${status} with a body that is not JSON` } };
                }
                return { status, body: parsed };
            }
        } catch (e) {
            text = e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e);
        }
        if (attempt > opts.retries) {
            return { status: status || 503, body: { error: { kind: status === 429 ? "rate-limited" : "unavailable", message: `gave up after ${attempt} attempts: ${status ? `HTTP ${status}` : text}` } } };
        }
        const wait = Math.min(30, retryAfter ?? 2 ** (attempt - 1)) * 1000;
        opts.log(`stages ci: ${status ? `HTTP ${status}` : `cannot reach ${base} (${text})`}; retrying in ${wait / 1000} s (attempt ${attempt + 1} of ${opts.retries + 1})`);
        await sleep(wait);
    }
}

/**
 * `stages ci wait`: reads the stage's deployment (asking Argo CD to refresh first) every 2 s until
 * it is `deployed`; `failed` and `unknown` end it at once, the deadline as a timeout (exit 5).
 */
async function waitDeployed(base: string, token: string, stage: string, release: string | undefined, minutes: number, until: "deployed" | "synced", opts: { retries: number; log: (l: string) => void }): Promise<number> {
    // The CLI's bound (86400 s), in minutes.
    if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 1440) {
        opts.log("stages ci wait: --timeout-minutes must be a number of minutes from more than 0 to 1440");
        return ERROR_MAP.invalid.exit;
    }
    // With a release, the service checks the stage holds it (404 if not: nothing to wait for).
    const route = `/v1/deployments/${encodeURIComponent(stage)}${release ? `?release=${encodeURIComponent(release)}` : ""}`;
    const deadline = Date.now() + minutes * 60_000;
    let answer = await send(base, token, "GET", `${route}${release ? "&" : "?"}refresh=true`, undefined, opts);
    let shown = "";
    for (;;) {
        const error = answer.body.error as { kind?: string; message?: string } | undefined;
        if (answer.status >= 400 || error) {
            opts.log(`stages ci wait: ${error?.kind ?? "error"}: ${error?.message ?? `HTTP ${answer.status}`}`);
            return exitOfKind(error?.kind ?? "internal");
        }
        const d = answer.body as { state?: string; message?: string; reason?: string };
        if (d.state !== shown) opts.log(`stages ci wait: ${stage} ${d.state}: ${d.message}`);
        shown = String(d.state);
        // The last answer goes to stdout whatever the outcome, as for every other verb.
        const done = (code: number) => (process.stdout.write(JSON.stringify(answer.body, null, 2) + "\n"), code);
        if (d.state === "deployed" || (d.state === "synced" && until === "synced")) return done(0);
        if (d.state === "failed") return done(ERROR_MAP.conflict.exit);
        // Argo CD refused the runner's read: waiting will not change that.
        if (d.state === "unknown" && d.reason === "denied") return done(ERROR_MAP.forbidden.exit);
        if (d.state === "unknown" && d.reason !== "unreadable") return done(ERROR_MAP["not-found"].exit);
        if (Date.now() > deadline) {
            opts.log(`stages ci wait: ${stage} not ${until} after ${minutes} minutes: ${d.message}`);
            return done(ERROR_MAP.timeout.exit);
        }
        await new Promise((r) => setTimeout(r, 2000));
        answer = await send(base, token, "GET", route, undefined, opts);
    }
}

/** Runs `stages ci <verb>`; returns the exit code. */
export async function ciVerb(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
    const log = (l: string) => process.stderr.write(l + "\n");
    const [verb, ...rest] = argv;
    let parsed;
    try {
        parsed = parseArgs({
            args: rest,
            options: {
                to: { type: "string" },
                stage: { type: "string" },
                commit: { type: "string" },
                bundle: { type: "string" },
                image: { type: "string" },
                "ci-run": { type: "string" },
                mr: { type: "string" },
                app: { type: "string" },
                reason: { type: "string" },
                "claimed-requester": { type: "string" },
                "idempotency-key": { type: "string" },
                "ttl-hours": { type: "string" },
                retries: { type: "string", default: "6" },
                "timeout-minutes": { type: "string", default: "60" },
                for: { type: "string", default: "deployed" },
            },
            allowPositionals: true,
            strict: true,
        });
    } catch (e) {
        // An unknown option or a flag without its value: bad input, said as such.
        log(`stages ci${verb ? ` ${verb}` : ""}: ${(e as Error).message}`);
        return ERROR_MAP.invalid.exit;
    }
    const { values, positionals } = parsed;
    if (values["claimed-requester"] !== undefined && verb !== "promote" && verb !== "preview") {
        log(`stages ci ${verb}: --claimed-requester: only promote and preview take it`);
        return ERROR_MAP.invalid.exit;
    }
    const base = env.GITOPS_STAGES_URL;
    const token = env.GITOPS_STAGES_TOKEN;
    if (!base || !token) {
        log(`stages ci: ${!base ? "GITOPS_STAGES_URL" : "GITOPS_STAGES_TOKEN"} is not set (the service's URL and this job's token)`);
        return ERROR_MAP.invalid.exit;
    }
    const ciRunUrl = values["ci-run"] ?? (env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}` : undefined);
    const opts = { retries: Number(values.retries), log };
    const claimedRequester = values["claimed-requester"] ?? env.GITHUB_ACTOR;
    let route: string;
    let body: Record<string, unknown> | undefined;
    switch (verb) {
        case "promote":
        case "preview": {
            const spec = positionals[0] ?? "";
            const at = spec.lastIndexOf("@");
            if (at <= 0) {
                log(`stages ci ${verb}: the first argument must be <app>@<version>`);
                return ERROR_MAP.invalid.exit;
            }
            const app = spec.slice(0, at);
            const version = spec.slice(at + 1);
            route = `/v1/${verb}`;
            body = {
                app,
                version,
                to: values.to,
                source: { commit: values.commit, ...(values.mr ? { mr: Number(values.mr) } : {}), ...(ciRunUrl ? { ciRunUrl } : {}) },
                ...(values.bundle ? { bundle: bundleFiles(values.bundle), image: values.image } : {}),
                ...(values.reason ? { reason: values.reason } : {}),
                // Who merged, as the CI says: the service keeps it as this job's claim, apart from
                // the requester, which is always the job's token.
                ...(claimedRequester ? { claimedRequester } : {}),
                // A retried request must not run twice: the key makes the service answer the first.
                ...(verb === "promote" ? { idempotencyKey: values["idempotency-key"] ?? `ci-${app}-${version}-${values.to}-${String(values.commit).slice(0, 12)}` } : {}),
            };
            break;
        }
        case "mr-deploy":
            route = "/v1/mr/deploy";
            body = {
                mr: Number(values.mr),
                app: values.app,
                bundle: values.bundle ? bundleFiles(values.bundle) : undefined,
                image: values.image,
                sourceCommit: values.commit,
                ...(values["ttl-hours"] ? { ttlHours: Number(values["ttl-hours"]) } : {}),
            };
            break;
        case "mr-destroy":
            route = "/v1/mr/destroy";
            body = { mr: Number(positionals[0] ?? values.mr) };
            break;
        case "status":
            route = `/v1/status${values.stage ? `?stage=${encodeURIComponent(values.stage)}` : ""}`;
            break;
        case "wait":
            if (!values.stage) {
                log("stages ci wait: --stage is required");
                return ERROR_MAP.invalid.exit;
            }
            if (values.for !== "deployed" && values.for !== "synced") {
                log(`stages ci wait: --for must be "deployed" (synced and Healthy) or "synced", got ${JSON.stringify(values.for)}`);
                return ERROR_MAP.invalid.exit;
            }
            return waitDeployed(base, token, values.stage, positionals[0], Number(values["timeout-minutes"]), values.for, opts);
        default:
            log(`stages ci: unknown verb "${verb ?? ""}" (promote, preview, mr-deploy, mr-destroy, status, wait)`);
            return ERROR_MAP.invalid.exit;
    }
    let answer = await send(base, token, body === undefined ? "GET" : "POST", route, body, opts);
    const deadline = Date.now() + Number(values["timeout-minutes"]) * 60_000;
    let shown = "";
    while (answer.status === 202 || (answer.status === 200 && ["queued", "running"].includes(String(answer.body.state)))) {
        const state = String(answer.body.state);
        if (state !== shown) log(`stages ci: request ${String(answer.body.requestId)} ${state}`);
        shown = state;
        if (Date.now() > deadline) {
            log(`stages ci: request ${String(answer.body.requestId)} still ${state} after ${values["timeout-minutes"]} minutes; it keeps running on the service`);
            return ERROR_MAP.timeout.exit;
        }
        await new Promise((r) => setTimeout(r, 1000));
        answer = await send(base, token, "GET", `/v1/requests/${String(answer.body.requestId)}`, undefined, opts);
    }
    process.stdout.write(JSON.stringify(answer.body, null, 2) + "\n");
    const error = (answer.body.error ?? undefined) as { kind?: string; message?: string; reason?: string } | undefined;
    if (answer.status >= 400 || error) {
        log(`stages ci ${verb}: ${error?.kind ?? "error"}${error?.reason ? ` (${error.reason})` : ""}: ${error?.message ?? `HTTP ${answer.status}`}`);
        return exitOfKind(error?.kind ?? "internal");
    }
    const result = (answer.body.result ?? answer.body) as { message?: string };
    log(`stages ci ${verb}: ${String(answer.body.state ?? "ok")}${result.message ? `: ${result.message}` : ""}`);
    return EXIT.ok;
}
