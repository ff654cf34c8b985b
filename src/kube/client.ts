/**
 * A small Kubernetes API client: reads a kubeconfig (client certificates, bearer tokens, CA data
 * inline or in files) and sends JSON requests over HTTPS with Node's own TLS. It serves the few
 * calls the runner makes to a cluster (the Sealed Secrets controller's certificate and key
 * rotation through the API server's service proxy) and the cluster test tier's read-backs.
 */
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import YAML from "yaml";

/** Where and how to reach an API server. */
export interface KubeTarget {
    readonly server: string;
    readonly ca?: Buffer;
    readonly cert?: Buffer;
    readonly key?: Buffer;
    readonly token?: string;
    readonly insecure: boolean;
}

/** A failed API call: the HTTP status and the server's message (never the request's credentials). */
export class KubeError extends Error {
    constructor(
        readonly status: number,
        message: string,
        /** The server's Status object, when it sent one. */
        readonly body?: unknown,
    ) {
        super(message);
        this.name = "KubeError";
    }
}

/** Reads a kubeconfig and picks `context` (default: its current-context). */
export function loadKubeconfig(file: string, context?: string): KubeTarget {
    const doc = YAML.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
    const named = <T>(list: unknown, name: string, what: string): T => {
        const found = (Array.isArray(list) ? list : []).find((e: { name?: string }) => e?.name === name) as Record<string, unknown> | undefined;
        if (!found) throw new Error(`kubeconfig ${file}: no ${what} named "${name}"`);
        return found[what] as T;
    };
    const ctxName = context ?? (doc["current-context"] as string | undefined);
    if (!ctxName) throw new Error(`kubeconfig ${file}: no context given and no current-context set`);
    const ctx = named<{ cluster: string; user: string }>(doc.contexts, ctxName, "context");
    const cluster = named<Record<string, string | boolean>>(doc.clusters, ctx.cluster, "cluster");
    const user = named<Record<string, string>>(doc.users, ctx.user, "user") ?? {};
    const base = path.dirname(file);
    const material = (data: unknown, ref: unknown): Buffer | undefined => {
        if (typeof data === "string") return Buffer.from(data, "base64");
        if (typeof ref === "string") return fs.readFileSync(path.resolve(base, ref));
        return undefined;
    };
    const tokenFile = user.tokenFile ? fs.readFileSync(path.resolve(base, user.tokenFile), "utf8").trim() : undefined;
    return {
        server: String(cluster.server).replace(/\/+$/, ""),
        ca: material(cluster["certificate-authority-data"], cluster["certificate-authority"]),
        cert: material(user["client-certificate-data"], user["client-certificate"]),
        key: material(user["client-key-data"], user["client-key"]),
        token: user.token ?? tokenFile,
        insecure: cluster["insecure-skip-tls-verify"] === true,
    };
}

/** A JSON client for one API server. */
export class KubeClient {
    private readonly agent: https.Agent;

    constructor(private readonly target: KubeTarget) {
        this.agent = new https.Agent({ ca: target.ca, cert: target.cert, key: target.key, rejectUnauthorized: !target.insecure, keepAlive: false });
    }

    /** A client from a kubeconfig file. */
    static fromKubeconfig(file: string, context?: string): KubeClient {
        return new KubeClient(loadKubeconfig(file, context));
    }

    /** Sends a request; JSON bodies are encoded, JSON answers decoded, anything else returned as text. */
    async request(method: string, apiPath: string, body?: unknown, contentType = "application/json"): Promise<unknown> {
        const url = new URL(this.target.server + apiPath);
        const payload = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
        const headers: Record<string, string> = { accept: "application/json, */*" };
        if (payload) {
            headers["content-type"] = contentType;
            headers["content-length"] = String(payload.length);
        }
        if (this.target.token) headers.authorization = `Bearer ${this.target.token}`;
        const { status, text, type } = await new Promise<{ status: number; text: string; type: string }>((resolve, reject) => {
            const req = https.request(url, { method, headers, agent: this.agent, timeout: 30_000 }, (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), type: String(res.headers["content-type"] ?? "") }));
                res.on("error", reject);
            });
            req.on("timeout", () => req.destroy(new Error(`${method} ${url.pathname}: no answer within 30 s`)));
            req.on("error", reject);
            req.end(payload);
        });
        const parsed: unknown = type.includes("json") && text ? JSON.parse(text) : text;
        if (status < 200 || status >= 300) {
            const message = (parsed as { message?: string })?.message ?? (typeof parsed === "string" ? parsed.trim().slice(0, 500) : "");
            throw new KubeError(status, `${method} ${url.pathname}: ${status} ${message}`.trim(), parsed);
        }
        return parsed;
    }

    /** GET a path; undefined when the object does not exist (404). */
    async get<T = Record<string, unknown>>(apiPath: string): Promise<T | undefined> {
        try {
            return (await this.request("GET", apiPath)) as T;
        } catch (e) {
            if (e instanceof KubeError && e.status === 404) return undefined;
            throw e;
        }
    }

    /** Closes idle connections. */
    close(): void {
        this.agent.destroy();
    }
}
