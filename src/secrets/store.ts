/**
 * The stage's sealed secrets as files of the ops repo (`environments/<stage>/secrets/<app>.yaml`,
 * one YAML document per SealedSecret of the app), and the references app values make to them.
 * Pure: parsing, rendering and planning only; nothing here can decrypt a value.
 */
import YAML from "yaml";

import { SealingScope, scopeAnnotations } from "./seal";

/** A SealedSecret as the runner reads it from the ops repo. */
export interface StoredSecret {
    readonly name: string;
    readonly namespace: string;
    readonly scope: SealingScope;
    /** Key -> base64 ciphertext. */
    readonly encryptedData: Readonly<Record<string, string>>;
}

/** Rule for Secret data keys, as Kubernetes checks them. */
export const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;
/** The rule's wording for errors. */
export const SECRET_KEY_RULE = "must be 1 to 253 letters, digits, '-', '_' or '.'";

/** The scope a SealedSecret declares through its annotations. */
export function scopeOf(annotations: Record<string, string> | undefined): SealingScope {
    if (annotations?.["sealedsecrets.bitnami.com/cluster-wide"] === "true") return "cluster-wide";
    if (annotations?.["sealedsecrets.bitnami.com/namespace-wide"] === "true") return "namespace-wide";
    return "strict";
}

/** Parses one app's secrets file; `file` names it in errors. */
export function parseSecretsFile(text: string, file: string): StoredSecret[] {
    const out: StoredSecret[] = [];
    for (const doc of YAML.parseAllDocuments(text)) {
        if (doc.errors.length) throw new Error(`${file}: not valid YAML: ${doc.errors[0].message}`);
        const o = doc.toJS() as Record<string, unknown> | null;
        if (o === null || o === undefined) continue;
        const meta = (o.metadata ?? {}) as { name?: string; namespace?: string; annotations?: Record<string, string> };
        const spec = (o.spec ?? {}) as { encryptedData?: Record<string, string> };
        if (o.kind !== "SealedSecret" || typeof meta.name !== "string") {
            throw new Error(`${file}: every document must be a SealedSecret with metadata.name`);
        }
        out.push({ name: meta.name, namespace: meta.namespace ?? "", scope: scopeOf(meta.annotations), encryptedData: { ...(spec.encryptedData ?? {}) } });
    }
    return out;
}

/** Renders an app's secrets file: the SealedSecret manifests sorted by name, one document each. */
export function renderSecretsFile(app: string, secrets: readonly StoredSecret[]): string {
    const docs = [...secrets]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((s) => {
            const annotations = scopeAnnotations(s.scope);
            const metadata = { name: s.name, namespace: s.namespace, ...(Object.keys(annotations).length ? { annotations } : {}) };
            const encryptedData = Object.fromEntries(Object.keys(s.encryptedData).sort().map((k) => [k, s.encryptedData[k]]));
            const manifest = { apiVersion: "bitnami.com/v1alpha1", kind: "SealedSecret", metadata, spec: { encryptedData, template: { metadata, type: "Opaque" } } };
            return YAML.stringify(manifest, { lineWidth: 0 });
        });
    return `# Sealed secrets of ${app}, written by \`stages secret\`: only the cluster's controller can decrypt them.\n${docs.join("---\n")}`;
}

/** A place in an app's values that names a Secret. */
export interface SecretRef {
    readonly name: string;
    /** The key, when the reference names one (`secretKeyRef`). */
    readonly key?: string;
    /** Dotted path of the reference in the values, for messages. */
    readonly at: string;
}

/**
 * The secrets an app's values refer to. Recognised shapes (anywhere in the values):
 * `existingSecret: <name>` (the common Helm chart convention), `secretKeyRef: {name, key}` and
 * `secretRef: {name}` (the shapes of a container's `env` and `envFrom`).
 */
export function secretRefs(values: unknown, at = ""): SecretRef[] {
    const out: SecretRef[] = [];
    const here = (k: string | number) => (at ? `${at}.${k}` : String(k));
    if (Array.isArray(values)) {
        values.forEach((v, i) => out.push(...secretRefs(v, here(i))));
    } else if (values && typeof values === "object") {
        for (const [k, v] of Object.entries(values as Record<string, unknown>)) {
            if (k === "existingSecret" && typeof v === "string" && v) out.push({ name: v, at: here(k) });
            else if (k === "secretKeyRef" && v && typeof v === "object" && typeof (v as { name?: unknown }).name === "string") {
                const r = v as { name: string; key?: unknown };
                out.push({ name: r.name, ...(typeof r.key === "string" ? { key: r.key } : {}), at: here(k) });
            } else if (k === "secretRef" && v && typeof v === "object" && typeof (v as { name?: unknown }).name === "string") {
                out.push({ name: (v as { name: string }).name, at: here(k) });
            } else out.push(...secretRefs(v, here(k)));
        }
    }
    return out;
}

/**
 * Problems with an app's references in a stage: every referenced secret (and key) must be among
 * the stage's sealed secrets. Each problem names the app, the stage and the secret.
 */
export function missingSecrets(app: string, stage: string, values: unknown, available: readonly StoredSecret[]): string[] {
    const problems: string[] = [];
    for (const ref of secretRefs(values)) {
        const s = available.find((x) => x.name === ref.name);
        if (!s) {
            problems.push(
                `app ${app} refers to secret "${ref.name}" (values ${ref.at}), which stage ${stage} does not have: ` +
                    `seal it first with \`stages secret set ${app} --stage ${stage} --name ${ref.name} KEY=@file\``,
            );
        } else if (ref.key !== undefined && !(ref.key in s.encryptedData)) {
            problems.push(`app ${app} refers to key "${ref.key}" of secret "${ref.name}" (values ${ref.at}), which stage ${stage}'s secret does not hold`);
        }
    }
    return problems;
}
