/**
 * The few calls the runner makes to a cluster (Argo CD's Applications, the Sealed Secrets
 * controller's certificate and key rotation through the API server's service proxy) and the
 * cluster test tier's read-backs: JSON over HTTPS. The kubeconfig, its context and every way it
 * authenticates are the official Kubernetes client library's (@kubernetes/client-node): client
 * certificates, tokens, exec credential plugins (EKS, GKE, AKS), OIDC. The request itself stays a
 * plain HTTPS call on a raw API path, which is what these few calls are (a service proxy path, a
 * custom resource read as JSON); the library's typed API classes would wrap the same paths.
 */
import * as https from "node:https";

import type { KubeConfig } from "@kubernetes/client-node";

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

/**
 * A kubeconfig and its context, read by the Kubernetes client library: every way a kubeconfig
 * authenticates (client certificates, tokens and token files, exec credential plugins as EKS, GKE
 * and AKS use, OIDC) and trusts its server (CA data or file, insecure-skip-tls-verify).
 */
export function loadKubeconfig(file: string, context?: string): KubeConfig {
    // Loaded here, when a kubeconfig is used, not with this module: the library takes about 0.7 s
    // to load, which every `stages` command would pay, most of them never reaching a cluster.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { KubeConfig } = require("@kubernetes/client-node") as typeof import("@kubernetes/client-node");
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    if (context !== undefined) {
        if (!kc.getContextObject(context)) throw new Error(`kubeconfig ${file}: no context named "${context}"`);
        kc.setCurrentContext(context);
    }
    if (!kc.getCurrentContext()) throw new Error(`kubeconfig ${file}: no context given and no current-context set`);
    if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${file}: the context "${kc.getCurrentContext()}" names no cluster the file has`);
    return kc;
}

/** A JSON client for one API server. */
export class KubeClient {
    private readonly server: string;

    constructor(private readonly config: KubeConfig) {
        const cluster = config.getCurrentCluster();
        if (!cluster) throw new Error(`kubeconfig: the context "${config.getCurrentContext()}" names no cluster`);
        this.server = cluster.server.replace(/\/+$/, "");
    }

    /** A client from a kubeconfig file. */
    static fromKubeconfig(file: string, context?: string): KubeClient {
        return new KubeClient(loadKubeconfig(file, context));
    }

    /** Sends a request; JSON bodies are encoded, JSON answers decoded, anything else returned as text. */
    async request(method: string, apiPath: string, body?: unknown, contentType = "application/json"): Promise<unknown> {
        const url = new URL(this.server + apiPath);
        const payload = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
        const headers: Record<string, string> = { accept: "application/json, */*" };
        if (payload) {
            headers["content-type"] = contentType;
            headers["content-length"] = String(payload.length);
        }
        // The library fills in how this kubeconfig trusts its server and authenticates: CA,
        // client certificate, a token, or one an exec plugin or OIDC provider issues (and renews).
        // The library also gives each request its agent (with the kubeconfig's proxy, if any).
        const options: https.RequestOptions = { method, headers, timeout: 30_000 };
        await this.config.applyToHTTPSOptions(options);
        const { status, text, type } = await new Promise<{ status: number; text: string; type: string }>((resolve, reject) => {
            const req = https.request(url, options, (res) => {
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

    /** Nothing stays open between requests (each has its own agent); kept so callers need not know. */
    close(): void {
        return;
    }
}
