/**
 * A merge-request environment (`mr-<n>`): namespace `mr-<n>` and the MR build's chart with its
 * `mr` values and image, deployed directly by the runner (not through Argo CD). Every object
 * carries the MR number, source commit and expiry, so `stages mr reap` and people can tell what it
 * is and when it goes away.
 */
import * as path from "node:path";

import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";

import { MrConfig, mrExpiry } from "../config/stage";
import { ValidationError } from "../config/validate";
import { buildBundle, readBundleDir } from "../release/bundle";
import { commonLabels } from "./argocd/specs";
import { clusterProvider } from "./kubernetes";
import { imageValues } from "./stage/files";

/** Labels and annotations of everything in a merge-request environment. */
export function mrMetadata(cfg: MrConfig): { labels: Record<string, string>; annotations: Record<string, string> } {
    return {
        labels: { ...commonLabels("merge-request"), "gitops-stages.dev/mr": String(cfg.number), "gitops-stages.dev/app": cfg.app },
        annotations: {
            "gitops-stages.dev/source-commit": cfg.sourceCommit,
            "gitops-stages.dev/expires-at": mrExpiry(cfg),
            "gitops-stages.dev/created-at": cfg.createdAt,
        },
    };
}

/** Declares a merge-request stack and returns its outputs. */
export function mrProgram(cfg: MrConfig): Record<string, unknown> {
    const files = readBundleDir(cfg.bundle);
    // The MR build is validated like a release (chart, values files, paths), under a pre-release version.
    buildBundle({ app: cfg.app, version: `0.0.0-mr.${cfg.number}`, image: cfg.image, source: { commit: cfg.sourceCommit } }, files);
    const valuesText = files["values/mr.yaml"] ?? files["values/mr.yml"];
    if (!valuesText) {
        throw new ValidationError("merge-request bundle", [{ key: "bundle:values/mr.yaml", rule: "is required for a merge-request environment" }]);
    }
    const own = (YAML.parse(valuesText.toString("utf8")) as Record<string, unknown> | null) ?? {};
    const values = { ...own, image: { ...(typeof own.image === "object" && own.image ? own.image : {}), ...imageValues(cfg.image) } };

    const meta = mrMetadata(cfg);
    const provider = clusterProvider("cluster", cfg.cluster);
    const name = `mr-${cfg.number}`;
    // The MR environment is wholly ours: an update takes back fields someone edited by hand
    // (server-side apply would otherwise stop at the other field manager's conflict).
    const force = { "pulumi.com/patchForce": "true" };
    const namespace = new k8s.core.v1.Namespace("namespace", { metadata: { name, labels: meta.labels, annotations: { ...meta.annotations, ...force } } }, { provider });
    // Stamp every object of the release with the MR's labels and annotations.
    const stamp: pulumi.ResourceTransform = (args) => {
        if (!args.type.startsWith("kubernetes:") || args.type.startsWith("kubernetes:helm.sh")) return undefined;
        const props = { ...args.props };
        const md = { ...(props.metadata ?? {}) };
        md.labels = { ...(md.labels ?? {}), ...meta.labels };
        md.annotations = { ...(md.annotations ?? {}), ...meta.annotations, ...force };
        props.metadata = md;
        return { props, opts: args.opts };
    };
    const release = new k8s.helm.v4.Chart(
        "release",
        { chart: path.join(cfg.bundle, "chart"), name: cfg.app, namespace: namespace.metadata.name, values, skipAwait: cfg.cluster.skipAwait },
        { provider, dependsOn: [namespace], transforms: [stamp] },
    );
    return {
        mr: cfg.number,
        app: cfg.app,
        namespace: namespace.metadata.name,
        image: cfg.image,
        sourceCommit: cfg.sourceCommit,
        createdAt: cfg.createdAt,
        expiresAt: mrExpiry(cfg),
        resources: release.resources.apply((rs) => rs.length),
    };
}
