/**
 * The Kubernetes side of a stack: a provider for the configured cluster, or one that renders
 * YAML to a folder when no cluster is configured; and the check that tells whether a Helm chart
 * can be fetched from where the configuration says.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import type { ChartSource } from "../config/platform";

/** Cluster settings shared by every stack role. */
export interface ClusterSettings {
    readonly kubeconfig?: string;
    readonly context?: string;
    readonly renderDir: string;
}

/** True when the stack renders manifests instead of applying them. */
export function isRenderMode(cluster: ClusterSettings): boolean {
    return cluster.kubeconfig === undefined;
}

/**
 * The stack's Kubernetes provider. Render mode is built explicitly and never given a kubeconfig:
 * the provider refuses the combination (and an ambient KUBECONFIG must not turn a render into an apply).
 */
export function clusterProvider(name: string, cluster: ClusterSettings, opts?: pulumi.ResourceOptions): k8s.Provider {
    if (isRenderMode(cluster)) {
        return new k8s.Provider(name, { renderYamlToDirectory: cluster.renderDir }, opts);
    }
    const kubeconfig = fs.readFileSync(cluster.kubeconfig!, "utf8");
    return new k8s.Provider(
        name,
        { kubeconfig: pulumi.secret(kubeconfig), context: cluster.context, enableServerSideApply: true },
        opts,
    );
}

/** Whether a chart can be fetched, and if not, why. */
export type ChartAvailability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** A chart and where its config lives, for messages. */
export interface ChartRef {
    /** Chart name as users know it, e.g. "argo-cd". */
    readonly name: string;
    readonly source: ChartSource;
    /** Config key that chooses the source, e.g. "gitops-stages:argocd.chart". */
    readonly configKey: string;
}

/** Human description of a chart source. */
export function describeChart(ref: ChartRef): string {
    const s = ref.source;
    switch (s.kind) {
        case "repository":
            return `${s.name} ${s.version} from ${s.repository}`;
        case "oci":
            return `${s.reference} ${s.version}`;
        case "path":
            return `${ref.name} from ${s.path}`;
    }
}

/** Probes a chart source: a local Chart.yaml, a repository index listing the version, or an OCI registry. */
export async function chartAvailability(source: ChartSource, timeoutMs = 3000): Promise<ChartAvailability> {
    try {
        switch (source.kind) {
            case "path":
                return fs.existsSync(path.join(source.path, "Chart.yaml"))
                    ? { ok: true }
                    : { ok: false, reason: `no Chart.yaml in ${source.path}` };
            case "repository": {
                const res = await fetch(`${source.repository.replace(/\/$/, "")}/index.yaml`, { signal: AbortSignal.timeout(timeoutMs) });
                if (!res.ok) return { ok: false, reason: `index.yaml answered HTTP ${res.status}` };
                const index = await res.text();
                return index.includes(`version: ${source.version}`)
                    ? { ok: true }
                    : { ok: false, reason: `version ${source.version} is not in the repository's index` };
            }
            case "oci": {
                const host = source.reference.replace(/^oci:\/\//, "").split("/")[0];
                await fetch(`https://${host}/v2/`, { signal: AbortSignal.timeout(timeoutMs) });
                return { ok: true };
            }
        }
    } catch (e) {
        const code = (e as { cause?: { code?: string } }).cause?.code;
        const known: Record<string, string> = {
            ENOTFOUND: "host not found (ENOTFOUND)",
            ECONNREFUSED: "connection refused (ECONNREFUSED)",
            EAI_AGAIN: "name resolution failed (EAI_AGAIN)",
        };
        if (e instanceof Error && e.name === "TimeoutError") return { ok: false, reason: `no answer within ${timeoutMs} ms` };
        return { ok: false, reason: (code && known[code]) ?? code ?? (e instanceof Error ? e.message : String(e)) };
    }
}

/** The error for a chart that cannot be fetched when a cluster needs it. */
export function chartUnavailableMessage(ref: ChartRef, reason: string): string {
    return (
        `cannot fetch the ${ref.name} chart (${describeChart(ref)}): ${reason}. ` +
        `Set ${ref.configKey} to a reachable mirror ({"repository", "name", "version"}), an OCI registry ({"oci", "version"}) or a local chart folder ({"path"}).`
    );
}

/** Helm chart arguments for a source. */
export function chartArgs(source: ChartSource): Pick<k8s.helm.v4.ChartArgs, "chart" | "version" | "repositoryOpts"> {
    switch (source.kind) {
        case "repository":
            return { chart: source.name, version: source.version, repositoryOpts: { repo: source.repository } };
        case "oci":
            return { chart: source.reference, version: source.version };
        case "path":
            return { chart: source.path };
    }
}
