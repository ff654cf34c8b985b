/**
 * The Sealed Secrets controller's HTTP endpoints (`/v1/cert.pem`, `/v1/rotate`), reached directly
 * (a URL, e.g. a port-forward) or, as kubeseal does, through the API server's service proxy.
 */
import { KubeClient } from "../../kube/client";
import { RunnerError } from "../errors";
import type { ControllerPort } from "../secrets";

/**
 * The controller's /v1/rotate answer as a manifest: the controller marshals the resealed object
 * without its type (no `apiVersion` or `kind`), which only ever is a SealedSecret.
 */
export function rotated(answer: string): string {
    let o: unknown;
    try {
        o = JSON.parse(answer);
    } catch {
        throw new RunnerError("refused", `the Sealed Secrets controller's rotate answer is not JSON: ${answer.trim().slice(0, 200)}`, "controller");
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw new RunnerError("refused", "the Sealed Secrets controller's rotate answer is not an object", "controller");
    const r = o as Record<string, unknown>;
    if ((r.kind ?? "SealedSecret") !== "SealedSecret") throw new RunnerError("refused", `the Sealed Secrets controller's rotate answer is a ${String(r.kind)}, not a SealedSecret`, "controller");
    return JSON.stringify({ ...r, apiVersion: r.apiVersion ?? "bitnami.com/v1alpha1", kind: "SealedSecret" });
}

/** The controller at a base URL. */
export class DirectController implements ControllerPort {
    constructor(private readonly base: string) {}

    private async call(pathname: string, body?: string): Promise<string> {
        const url = this.base.replace(/\/+$/, "") + pathname;
        let res: Response;
        try {
            res = await fetch(url, body === undefined ? {} : { method: "POST", body, headers: { "content-type": "application/json" } });
        } catch (e) {
            throw new RunnerError("timeout", `cannot reach the Sealed Secrets controller at ${this.base}: ${e instanceof Error ? e.message : String(e)}`);
        }
        const text = await res.text();
        if (!res.ok) throw new RunnerError("refused", `the Sealed Secrets controller answered ${res.status} to ${pathname}: ${text.trim().slice(0, 300)}`, "controller");
        return text;
    }

    certificate(): Promise<string> {
        return this.call("/v1/cert.pem");
    }

    async rotate(manifest: string): Promise<string> {
        return rotated(await this.call("/v1/rotate", manifest));
    }
}

/** The controller as a Service of the cluster, through the API server's proxy. */
export class ProxiedController implements ControllerPort {
    constructor(
        private readonly client: KubeClient,
        private readonly namespace: string,
        private readonly name: string,
    ) {}

    private async call(pathname: string, body?: string): Promise<string> {
        const proxy = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/services/http:${encodeURIComponent(this.name)}:http/proxy${pathname}`;
        try {
            const answer = await this.client.request(body === undefined ? "GET" : "POST", proxy, body);
            return typeof answer === "string" ? answer : JSON.stringify(answer);
        } catch (e) {
            throw new RunnerError(
                "refused",
                `cannot reach the Sealed Secrets controller ${this.namespace}/${this.name} through the cluster: ${e instanceof Error ? e.message : String(e)}`,
                "controller",
            );
        }
    }

    certificate(): Promise<string> {
        return this.call("/v1/cert.pem");
    }

    async rotate(manifest: string): Promise<string> {
        return rotated(await this.call("/v1/rotate", manifest));
    }
}
