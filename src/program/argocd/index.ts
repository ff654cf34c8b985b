/**
 * `ArgoCd`: Argo CD from its Helm chart, the ops repository's credentials, and per stage one
 * AppProject and one Application. What we author ourselves comes from the pure builders in
 * `specs.ts`; this component only wires them to resources.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

import * as YAML from "yaml";

import type { ChartSource, PlatformConfig } from "../../config/platform";
import { chartArgs } from "../kubernetes";
import { appProject, application, argocdValues, commonLabels, sealedSecretsValues } from "./specs";

/** Placeholder for generated secrets in a rendered record of chart values. */
export const REDACTED = "(generated secret: set when the chart is installed)";

/**
 * A ConfigMap recording the chart that would be installed and the values it would get, rendered
 * when the chart itself cannot be fetched, so the embedded default still shows what a cluster gets.
 */
export function pendingChartRecord(chartName: string, source: ChartSource, values: unknown, namespace: string) {
    return {
        metadata: {
            name: `gitops-stages-pending-chart-${chartName}`,
            namespace,
            labels: commonLabels("pending-chart"),
            annotations: { "gitops-stages.dev/chart": JSON.stringify(source) },
        },
        data: { "chart.json": JSON.stringify(source, null, 2) + "\n", "values.yaml": YAML.stringify(values) },
    };
}

/** Inputs of {@link ArgoCd}. */
export interface ArgoCdArgs {
    readonly config: PlatformConfig;
    readonly provider: k8s.Provider;
    /** URL under which Argo CD reads the ops repository. */
    readonly opsRepoUrl: pulumi.Input<string>;
    /** Private key for an SSH ops repository URL (GitHub deploy key); none for local repositories. */
    readonly opsRepoSshPrivateKey?: pulumi.Input<string>;
    /** Basic credentials for an HTTP(S) ops repository URL (the local host served over HTTP). */
    readonly opsRepoHttpCredentials?: pulumi.Input<{ username: string; password: string }>;
    /** bcrypt hash of the generated admin password. */
    readonly adminPasswordHash: pulumi.Input<string>;
    readonly webhookSecret: pulumi.Input<string>;
    /** Install the chart (false when it cannot be fetched in render mode: everything else still renders). */
    readonly installChart: boolean;
}

/** Argo CD with one Application per stage. */
export class ArgoCd extends pulumi.ComponentResource {
    /** Names of the Applications, in stage order. */
    readonly applications: pulumi.Output<string[]>;

    constructor(name: string, args: ArgoCdArgs, opts?: pulumi.ComponentResourceOptions) {
        super("gitops-stages:argocd:ArgoCd", name, {}, opts);
        const cfg = args.config;
        const ns = cfg.argocd.namespace;
        const child = { parent: this, provider: args.provider };

        const namespace = new k8s.core.v1.Namespace(`${name}-namespace`, { metadata: { name: ns, labels: commonLabels("argocd") } }, child);
        const dependsOn: pulumi.Resource[] = [namespace];
        if (!args.installChart) {
            const record = pendingChartRecord(
                "argo-cd",
                cfg.argocd.chart,
                argocdValues(cfg, { adminPasswordHash: REDACTED, webhookSecret: REDACTED }),
                ns,
            );
            new k8s.core.v1.ConfigMap(`${name}-pending-chart`, record, { ...child, dependsOn: [namespace] });
        } else {
            const values = pulumi
                .all([args.adminPasswordHash, args.webhookSecret])
                .apply(([adminPasswordHash, webhookSecret]) =>
                    argocdValues(cfg, { adminPasswordHash, webhookSecret }),
                );
            dependsOn.push(
                new k8s.helm.v4.Chart(
                    `${name}-chart`,
                    { ...chartArgs(cfg.argocd.chart), namespace: ns, values, skipAwait: cfg.cluster.skipAwait },
                    { ...child, dependsOn: [namespace] },
                ),
            );
        }

        new k8s.core.v1.Secret(
            `${name}-ops-repo`,
            {
                metadata: {
                    name: "gitops-stages-ops-repo",
                    namespace: ns,
                    // Argo CD picks up repository credentials by this label.
                    labels: { ...commonLabels("repository"), "argocd.argoproj.io/secret-type": "repository" },
                },
                stringData: pulumi.all([args.opsRepoUrl, args.opsRepoSshPrivateKey, args.opsRepoHttpCredentials]).apply(([url, key, http]) => ({
                    type: "git",
                    name: "ops",
                    url,
                    ...(key ? { sshPrivateKey: key } : {}),
                    ...(http ? { username: http.username, password: http.password } : {}),
                })),
            },
            { ...child, dependsOn: [namespace] },
        );

        const apps: pulumi.Output<string>[] = [];
        for (const stage of cfg.stages) {
            const project = pulumi.output(args.opsRepoUrl).apply((url) => appProject(cfg, stage, url));
            const proj = new k8s.apiextensions.CustomResource(
                `${name}-project-${stage.name}`,
                {
                    apiVersion: "argoproj.io/v1alpha1",
                    kind: "AppProject",
                    metadata: project.metadata,
                    spec: project.spec,
                },
                { ...child, dependsOn },
            );
            const app = pulumi.output(args.opsRepoUrl).apply((url) => application(cfg, stage, url));
            const res = new k8s.apiextensions.CustomResource(
                `${name}-app-${stage.name}`,
                { apiVersion: "argoproj.io/v1alpha1", kind: "Application", metadata: app.metadata, spec: app.spec },
                { ...child, dependsOn: [...dependsOn, proj] },
            );
            apps.push(res.metadata.name);
        }
        this.applications = pulumi.all(apps);
        this.registerOutputs({ applications: this.applications });
    }
}

/** Inputs of {@link SealedSecrets}. */
export interface SealedSecretsArgs {
    readonly config: PlatformConfig;
    readonly provider: k8s.Provider;
    readonly installChart: boolean;
}

/** The Sealed Secrets controller from its Helm chart. */
export class SealedSecrets extends pulumi.ComponentResource {
    constructor(name: string, args: SealedSecretsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("gitops-stages:sealedsecrets:SealedSecrets", name, {}, opts);
        const cfg = args.config;
        const ns = cfg.sealedSecrets.namespace;
        const child = { parent: this, provider: args.provider };
        const dependsOn: pulumi.Resource[] = [];
        // kube-system exists in every cluster and must never be deleted with this stack.
        if (ns !== "kube-system" && ns !== "default") {
            dependsOn.push(new k8s.core.v1.Namespace(`${name}-namespace`, { metadata: { name: ns, labels: commonLabels("sealed-secrets") } }, child));
        }
        if (args.installChart) {
            new k8s.helm.v4.Chart(
                `${name}-chart`,
                { ...chartArgs(cfg.sealedSecrets.chart), namespace: ns, values: sealedSecretsValues(cfg), skipAwait: cfg.cluster.skipAwait },
                { ...child, dependsOn },
            );
        } else {
            const record = pendingChartRecord("sealed-secrets", cfg.sealedSecrets.chart, sealedSecretsValues(cfg), ns);
            new k8s.core.v1.ConfigMap(`${name}-pending-chart`, record, { ...child, dependsOn });
        }
        this.registerOutputs({});
    }
}
