/**
 * Sensitive configuration of a stage: operators seal values for a stage's namespace and the runner
 * commits the SealedSecret manifests to `environments/<stage>/secrets/<app>.yaml`, one commit per
 * operation. Values are sealed in memory and never written, logged or returned; only key names
 * leave this module. Only principals with the `secrets` right on the stage get this far.
 */
import { Checker, DNS_LABEL, DNS_LABEL_RULE, formatProblem } from "../config/validate";
import { opsPaths } from "../program/ops/paths";
import { SealingScope, encryptionLabel, sealValue, unsealValue } from "../secrets/seal";
import { SECRET_KEY, SECRET_KEY_RULE, StoredSecret, parseSecretsFile, renderSecretsFile } from "../secrets/store";
import type { PipelineStage } from "./core";
import { findStage } from "./core";
import { RunnerError } from "./errors";
import { Principal, requireRight } from "./rights";

/** The ops repo as secrets need it. */
export interface SecretsRepoPort {
    /** The stage's secrets files at the head of main: path -> content. */
    readSecrets(stage: string): Promise<Record<string, string>>;
    /**
     * One commit under the stage's secrets folder, computed on the current head (recomputed if the
     * branch moves): `compute` gets the current files and returns what to write and remove.
     */
    writeSecrets(
        stage: string,
        compute: (current: Record<string, string>) => { writes: Record<string, string>; deletes: string[] } | undefined,
        message: string,
    ): Promise<{ commit?: string }>;
}

/** The Sealed Secrets controller, reached through the cluster or directly. */
export interface ControllerPort {
    /** The controller's current public certificate (PEM). */
    certificate(): Promise<string>;
    /** Re-encrypts a SealedSecret manifest with the controller's newest key (its `/v1/rotate`). */
    rotate(manifest: string): Promise<string>;
}

/** What the secrets operations run on. */
export interface SecretsDeps {
    readonly pipeline: () => Promise<PipelineStage[]>;
    readonly repo: SecretsRepoPort;
    /** The controller of the platform's cluster; undefined when the platform has no cluster (render mode). */
    readonly controller: () => Promise<ControllerPort | undefined>;
    readonly newId: () => string;
}

/** Values to seal: key -> bytes (read by the caller from files or stdin, never from arguments). */
export type SecretValues = Readonly<Record<string, Buffer>>;

/** `secret set`. */
export interface SetRequest {
    readonly app: string;
    readonly stage: string;
    /** Secret name; default: the app's name. */
    readonly name?: string;
    /** Namespace; default: the stage's first namespace. */
    readonly namespace?: string;
    readonly scope: SealingScope;
    /** Replace every key of the secret instead of merging (needed to change its scope). */
    readonly replace: boolean;
    readonly values: SecretValues;
    /** The controller's certificate (PEM) for offline sealing; default: fetched from the cluster. */
    readonly certificate?: string;
    readonly reason?: string;
}

/** The answer of a secrets operation: names and keys only. */
export interface SecretsResult {
    readonly requestId: string;
    readonly stage: string;
    readonly message: string;
    readonly opsCommit?: string;
    readonly secrets: { app: string; name: string; namespace: string; scope: SealingScope; keys: string[] }[];
}

/** Largest total size of a Secret's data, as Kubernetes allows. */
const MAX_SECRET_BYTES = 1024 * 1024;

const SCOPE_FLAG: Record<SealingScope, string> = { strict: "", "namespace-wide": "--namespace-wide", "cluster-wide": "--cluster-wide" };

function fileOf(stage: string, app: string): string {
    return `${opsPaths.secrets(stage)}${app}.yaml`;
}

function appOf(stage: string, file: string): string {
    return file.slice(opsPaths.secrets(stage).length).replace(/\.ya?ml$/, "");
}

/** Every sealed secret of a stage, by app. */
function inventory(stage: string, files: Record<string, string>): { app: string; file: string; secrets: StoredSecret[] }[] {
    return Object.keys(files)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
        .map((f) => ({ app: appOf(stage, f), file: f, secrets: parseSecretsFile(files[f], f) }));
}

function summary(stage: string, files: Record<string, string>, app?: string): SecretsResult["secrets"] {
    return inventory(stage, files)
        .filter((e) => app === undefined || e.app === app)
        .flatMap((e) => e.secrets.map((s) => ({ app: e.app, name: s.name, namespace: s.namespace, scope: s.scope, keys: Object.keys(s.encryptedData).sort() })));
}

function trailers(who: Principal, requestId: string, extra: Record<string, string | undefined>): string {
    const lines = Object.entries({ Requester: who.name, ...extra, "Request-Id": requestId })
        .filter((e): e is [string, string] => e[1] !== undefined)
        .map(([k, v]) => `${k}: ${v}`);
    return lines.join("\n");
}

/** The operators' secrets workflow. */
export class Secrets {
    constructor(private readonly deps: SecretsDeps) {}

    /** The stage, once the principal is known to hold the right there (checked first: no hint of what exists). */
    private async stage(name: unknown, who: Principal): Promise<PipelineStage> {
        const c = new Checker();
        c.string("stage", name, undefined, DNS_LABEL, DNS_LABEL_RULE);
        if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("; "));
        requireRight(who, "secrets", name as string);
        return findStage(await this.deps.pipeline(), name as string).stage;
    }

    private async certificate(given: string | undefined): Promise<string> {
        if (given !== undefined) return given;
        const controller = await this.deps.controller();
        if (!controller) {
            throw new RunnerError(
                "invalid",
                "certificate: the platform has no cluster to fetch the Sealed Secrets controller's certificate from; pass --cert <file> (its public certificate, e.g. from `kubeseal --fetch-cert`)",
            );
        }
        return controller.certificate();
    }

    /** Seals values into one SealedSecret of an app in a stage and commits it. */
    async set(req: SetRequest, who: Principal, id?: string): Promise<SecretsResult> {
        const c = new Checker();
        c.string("app", req.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
        const name = c.string("name", req.name ?? req.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
        const keys = Object.keys(req.values);
        if (keys.length === 0) c.fail("values", keys, "must give at least one KEY=@file or KEY=-");
        let total = 0;
        for (const k of keys) {
            if (!SECRET_KEY.test(k)) c.fail(`values.${k}`, k, SECRET_KEY_RULE);
            if (req.values[k].length === 0) c.fail(`values.${k}`, "(empty)", "must not be empty");
            total += req.values[k].length;
        }
        if (total > MAX_SECRET_BYTES) c.fail("values", `${total} bytes`, "must total at most 1 MiB (the Kubernetes Secret limit)");
        if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("; "));
        const stage = await this.stage(req.stage, who);
        const namespace = req.namespace ?? stage.namespaces[0];
        if (!stage.namespaces.includes(namespace)) {
            throw new RunnerError("invalid", `namespace: "${namespace}" is not a namespace of stage ${stage.name} (${stage.namespaces.join(", ")})`);
        }
        const cert = await this.certificate(req.certificate);
        const label = encryptionLabel(namespace, name, req.scope);
        let sealed: Record<string, string>;
        try {
            sealed = Object.fromEntries(keys.map((k) => [k, sealValue(cert, req.values[k], label).toString("base64")]));
        } catch (e) {
            throw new RunnerError("invalid", `certificate: cannot seal with it (${e instanceof Error ? e.message : String(e)})`);
        }
        // The request log's id when the change was recorded there, so commit and log name the same request.
        const requestId = id ?? this.deps.newId();
        const file = fileOf(stage.name, req.app);
        const scopeNote = req.scope === "strict" ? "strict (name and namespace)" : `${req.scope} (requested with ${SCOPE_FLAG[req.scope]})`;
        const message = [
            `Seal ${keys.sort().join(", ")} in secret ${name} of ${req.app} in ${stage.name} (request ${requestId})`,
            "",
            ...(req.reason ? [req.reason, ""] : []),
            trailers(who, requestId, { Secret: `${namespace}/${name}`, Scope: scopeNote, Replace: req.replace ? "every key replaced" : undefined }),
        ].join("\n");
        const result = await this.deps.repo.writeSecrets(
            stage.name,
            (current) => {
                const all = inventory(stage.name, current);
                const clash = all.find((e) => e.app !== req.app && e.secrets.some((s) => s.name === name && s.namespace === namespace));
                if (clash) throw new RunnerError("conflict", `name: secret ${name} in namespace ${namespace} already belongs to app ${clash.app} in stage ${stage.name}`, "secret-owner");
                const mine = all.find((e) => e.app === req.app)?.secrets ?? [];
                const existing = mine.find((s) => s.name === name);
                if (existing && existing.scope !== req.scope && !req.replace) {
                    throw new RunnerError(
                        "conflict",
                        `scope: secret ${name} of ${req.app} in ${stage.name} is sealed ${existing.scope}; to reseal it ${req.scope}, give every key again with --replace`,
                        "secret-scope",
                    );
                }
                const encryptedData = req.replace || !existing ? sealed : { ...existing.encryptedData, ...sealed };
                const next: StoredSecret = { name, namespace, scope: req.scope, encryptedData };
                return { writes: { [file]: renderSecretsFile(req.app, [...mine.filter((s) => s.name !== name), next]) }, deletes: [] };
            },
            message,
        );
        const after = await this.deps.repo.readSecrets(stage.name);
        return { requestId, stage: stage.name, message: `sealed ${keys.length} key(s) into secret ${name} of ${req.app} in ${stage.name}`, ...(result.commit ? { opsCommit: result.commit } : {}), secrets: summary(stage.name, after, req.app) };
    }

    /** Names, namespaces, scopes and keys of a stage's sealed secrets (never values). */
    async list(stageName: string, app: string | undefined, who: Principal): Promise<SecretsResult> {
        const stage = await this.stage(stageName, who);
        const files = await this.deps.repo.readSecrets(stage.name);
        const secrets = summary(stage.name, files, app);
        return { requestId: this.deps.newId(), stage: stage.name, message: `${secrets.length} sealed secret(s) in ${stage.name}`, secrets };
    }

    /** Removes keys of a secret, a whole secret, or (without name and keys) every secret of an app. */
    async remove(req: { app: string; stage: string; name?: string; keys: readonly string[]; reason?: string }, who: Principal, id?: string): Promise<SecretsResult> {
        const c = new Checker();
        c.string("app", req.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
        if (req.name !== undefined) c.string("name", req.name, undefined, DNS_LABEL, DNS_LABEL_RULE);
        for (const k of req.keys) if (!SECRET_KEY.test(k)) c.fail(`keys`, k, SECRET_KEY_RULE);
        if (req.keys.length && req.name === undefined) c.fail("name", undefined, "is required when keys are named (--name <secret>)");
        if (c.problems.length) throw new RunnerError("invalid", c.problems.map(formatProblem).join("; "));
        const stage = await this.stage(req.stage, who);
        // The request log's id when the change was recorded there, so commit and log name the same request.
        const requestId = id ?? this.deps.newId();
        const file = fileOf(stage.name, req.app);
        const what = req.keys.length ? `${[...req.keys].sort().join(", ")} from secret ${req.name}` : req.name ? `secret ${req.name}` : "every secret";
        const message = [`Remove ${what} of ${req.app} in ${stage.name} (request ${requestId})`, "", ...(req.reason ? [req.reason, ""] : []), trailers(who, requestId, {})].join("\n");
        const result = await this.deps.repo.writeSecrets(
            stage.name,
            (current) => {
                const mine = inventory(stage.name, current).find((e) => e.app === req.app);
                if (!mine) throw new RunnerError("not-found", `app ${req.app} has no sealed secrets in ${stage.name}`);
                let next = mine.secrets;
                if (req.name !== undefined) {
                    const target = mine.secrets.find((s) => s.name === req.name);
                    if (!target) throw new RunnerError("not-found", `app ${req.app} has no secret ${req.name} in ${stage.name}`);
                    const missing = req.keys.filter((k) => !(k in target.encryptedData));
                    if (missing.length) throw new RunnerError("not-found", `secret ${req.name} of ${req.app} in ${stage.name} has no key ${missing.join(", ")}`);
                    const kept = Object.fromEntries(Object.entries(target.encryptedData).filter(([k]) => req.keys.length && !req.keys.includes(k)));
                    next = mine.secrets.filter((s) => s.name !== req.name);
                    if (Object.keys(kept).length) next = [...next, { ...target, encryptedData: kept }];
                } else next = [];
                return next.length ? { writes: { [file]: renderSecretsFile(req.app, next) }, deletes: [] } : { writes: {}, deletes: [mine.file] };
            },
            message,
        );
        const after = await this.deps.repo.readSecrets(stage.name);
        return { requestId, stage: stage.name, message: `removed ${what} of ${req.app} in ${stage.name}`, ...(result.commit ? { opsCommit: result.commit } : {}), secrets: summary(stage.name, after, req.app) };
    }

    /**
     * Re-encrypts every sealed secret of a stage for the controller's new key, as one commit: with
     * the controller's rotate endpoint (online), or offline with the old private keys (`privateKeys`,
     * PEM) and the new certificate. Values pass through memory only.
     */
    async reseal(req: { stage: string; certificate?: string; privateKeys?: readonly string[]; reason?: string }, who: Principal, id?: string): Promise<SecretsResult> {
        const stage = await this.stage(req.stage, who);
        const offline = (req.privateKeys?.length ?? 0) > 0;
        if (offline && req.certificate === undefined) throw new RunnerError("invalid", "certificate: offline resealing with --private-key needs the new certificate (--cert <file>)");
        const controller = offline ? undefined : await this.deps.controller();
        if (!offline && !controller) {
            throw new RunnerError("invalid", "private-key: the platform has no cluster whose controller could reseal; pass the old keys with --private-key <file> and the new certificate with --cert <file>");
        }
        // The request log's id when the change was recorded there, so commit and log name the same request.
        const requestId = id ?? this.deps.newId();
        const current = await this.deps.repo.readSecrets(stage.name);
        const resealed: Record<string, string> = {};
        for (const entry of inventory(stage.name, current)) {
            const secrets: StoredSecret[] = [];
            for (const s of entry.secrets) {
                if (controller) {
                    const answer = await controller.rotate(renderSecretsFile(entry.app, [s]).replace(/^#.*\n/, ""));
                    secrets.push(...parseSecretsFile(answer, `${entry.file} (as the controller resealed it)`));
                    continue;
                }
                const label = encryptionLabel(s.namespace, s.name, s.scope);
                const encryptedData: Record<string, string> = {};
                for (const [k, v] of Object.entries(s.encryptedData)) {
                    const plain = unsealWithAny(req.privateKeys ?? [], Buffer.from(v, "base64"), label);
                    if (!plain) throw new RunnerError("invalid", `private-key: none of the given keys opens key ${k} of secret ${s.name} (${entry.file})`);
                    encryptedData[k] = sealValue(req.certificate!, plain, label).toString("base64");
                    plain.fill(0);
                }
                secrets.push({ ...s, encryptedData });
            }
            resealed[entry.file] = renderSecretsFile(entry.app, secrets);
        }
        const files = Object.keys(resealed);
        const message = [
            `Reseal ${files.length} secrets file(s) of ${stage.name} for the controller's new key (request ${requestId})`,
            "",
            ...(req.reason ? [req.reason, ""] : []),
            trailers(who, requestId, { Method: offline ? "offline (old private keys, new certificate)" : "the controller's rotate endpoint" }),
        ].join("\n");
        const result = await this.deps.repo.writeSecrets(
            stage.name,
            (now) => {
                // Resealed from what we read: if an operator changed a file meanwhile, start again rather than undo their change.
                for (const f of files) if (now[f] !== current[f]) throw new RunnerError("conflict", `${f} changed while resealing; run reseal again`, "secret-moved");
                return files.length ? { writes: resealed, deletes: [] } : undefined;
            },
            message,
        );
        return { requestId, stage: stage.name, message: `resealed ${files.length} secrets file(s) of ${stage.name}`, ...(result.commit ? { opsCommit: result.commit } : {}), secrets: summary(stage.name, await this.deps.repo.readSecrets(stage.name)) };
    }
}

function unsealWithAny(keys: readonly string[], sealed: Buffer, label: Buffer): Buffer | undefined {
    for (const key of keys) {
        try {
            return unsealValue(key, sealed, label);
        } catch {
            // Not this key: rotation keeps several keys, any of them may have sealed the value.
        }
    }
    return undefined;
}
