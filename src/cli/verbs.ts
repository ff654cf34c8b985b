/**
 * The runner's verbs on the command line. Each verb turns flags into the same request object the
 * HTTP API takes, calls the runner, and prints a readable result or (with --json) the JSON answer.
 * Engine progress goes to stderr so stdout stays machine-readable.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import type { CommitDetails } from "../git/engine";
import { EXIT } from "../runner/error-map";
import { RunnerError, classify, exitCode, publicError } from "../runner/errors";
import { describeBackend, platformStackName } from "../runner/adapters/backend";
import type { Deployment } from "../runner/deployed";
import type { AuditEntry } from "../runner/runner";
import { DNS_LABEL, DNS_LABEL_RULE } from "../config/validate";
import { ArgoCdClient } from "../runner/argocd";
import { type Command, Commands, cliOwner } from "../runner/commands";
import type { ParsedVerb } from "./program";
import { AssembledRunner, argoCdUrl, cliActor, createRunner, defaultUser, newRequestId, tokenActor } from "../runner/index";

/** A stage named on the command line, checked before any right is (bad input is `invalid`, whoever asks). */
function stageArg(value: unknown, required = false): string | undefined {
    if (value === undefined && !required) return undefined;
    if (typeof value !== "string" || !DNS_LABEL.test(value)) throw new RunnerError("invalid", `stage = ${JSON.stringify(value ?? null)}: ${value === undefined ? "is required" : DNS_LABEL_RULE}`);
    return value;
}

/** `app@version` split and checked for shape (the request parser checks the parts). */
function appAtVersion(arg: string | undefined): { app?: string; version?: string } {
    if (!arg) throw new RunnerError("invalid", "missing <app>@<version>");
    const at = arg.lastIndexOf("@");
    if (at <= 0) throw new RunnerError("invalid", `"${arg}" must be <app>@<version>`);
    return { app: arg.slice(0, at), version: arg.slice(at + 1) };
}

/** `--timeout` of `wait` and `sync --wait`: whole seconds, default 600. */
function timeoutSeconds(value: unknown): number {
    const timeout = value === undefined ? 600 : Number(value);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400) {
        throw new RunnerError("invalid", `--timeout = ${JSON.stringify(value)}: must be a whole number of seconds from 1 to 86400`);
    }
    return timeout;
}

/** `--for` of `wait` and `sync --wait`. */
function untilArg(value: unknown): "deployed" | "synced" {
    const until = value ?? "deployed";
    if (until !== "deployed" && until !== "synced") throw new RunnerError("invalid", `--for = ${JSON.stringify(until)}: must be "deployed" (synced and Healthy) or "synced"`);
    return until;
}

/** An Argo CD token from a file (a secret: the error names the file, never its content). */
function readArgoCdTokenFile(file: string): string {
    try {
        const token = fs.readFileSync(path.resolve(file), "utf8").trim();
        if (!token) throw new RunnerError("invalid", `--argocd-token-file = ${JSON.stringify(file)}: the file is empty`);
        return token;
    } catch (e) {
        if (e instanceof RunnerError) throw e;
        throw new RunnerError("invalid", `--argocd-token-file = ${JSON.stringify(file)}: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n") + "\n";
}

/** Runs a runner verb, parsed by the command line's grammar (program.ts); returns the exit code. */
export async function runnerVerb(parsed: ParsedVerb, projectRoot: string): Promise<number> {
    const verb = parsed.verb;
    const json = parsed.values.json === true;
    const requestId = newRequestId();
    let logFile: string | undefined;
    let cancelling: NodeJS.Signals | undefined;
    let idle: (() => Promise<void>) | undefined;
    // Aborted by SIGINT/SIGTERM: a request still waiting for its stack then never begins.
    const abort = new AbortController();
    const out = (text: string) => process.stdout.write(text);
    try {
        const controllerUrl = (parsed.values.controllerUrl as string | undefined) ?? process.env.GITOPS_STAGES_CONTROLLER_URL;
        const assembled = await createRunner({ projectRoot, ...(controllerUrl ? { controllerUrl } : {}) });
        const { runner, environment } = assembled;
        idle = () => runner.idle();
        logFile = path.join(environment.dataDir, "runner.log");
        const progress = parsed.values.quiet === true || json ? undefined : (s: string) => process.stderr.write(s);
        const onSignal = (sig: NodeJS.Signals) => {
            // The engine's cancellation may signal our process group again; one cancellation is enough.
            if (cancelling) return;
            cancelling = sig;
            process.stderr.write(`\nstages: ${sig} received: cancelling the update in flight (Pulumi stops cleanly and releases the stack's lock)...\n`);
            abort.abort(new RunnerError("conflict", `cancelled by ${sig}`));
            runner.cancel(`interrupted by ${sig}`);
            // The request then ends through its own path (its outcome recorded in the request log,
            // then exit 130/143 below); only a process that hangs beyond that is ended here.
            const code = sig === "SIGINT" ? EXIT.cancelledByInterrupt : EXIT.cancelledByTerm;
            setTimeout(() => {
                process.stderr.write(`stages: cancelled by ${sig}\n`);
                process.exit(code);
            }, 30_000).unref();
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);

        const result = await dispatch(parsed, assembled, progress, abort.signal);
        if (json) out(JSON.stringify(result, null, 2) + "\n");
        else out((verb === "status" ? `state backend:  ${describeBackend(environment.backend)}\nplatform stack: ${platformStackName(environment.backend)}\n\n` : "") + render(verb, result));
        return 0;
    } catch (raw) {
        if (cancelling) {
            // The update failed because we cancelled it: that is the answer, not an internal error.
            await idle?.();
            process.stderr.write(`stages ${verb}: cancelled by ${cancelling}\n`);
            if (json) out(JSON.stringify({ error: { kind: "conflict", message: `cancelled by ${cancelling}`, requestId } }, null, 2) + "\n");
            return cancelling === "SIGINT" ? EXIT.cancelledByInterrupt : EXIT.cancelledByTerm;
        }
        const e = classify(raw);
        const pub = publicError(e, requestId);
        if (!(e instanceof RunnerError) && logFile) {
            fs.appendFileSync(logFile, `${new Date().toISOString()} ${requestId} ${verb}: ${e instanceof Error ? e.stack : String(e)}\n`);
        }
        if (json) out(JSON.stringify({ error: pub }, null, 2) + "\n");
        const detail = !(e instanceof RunnerError) && e instanceof Error ? engineErrorLines(e) : "";
        process.stderr.write(`stages ${verb}: ${pub.message}\n${detail}`);
        return exitCode(e);
    }
}

/** The `error:` lines of a failed engine command, which say what went wrong (without the engine's progress noise). */
function engineErrorLines(e: Error): string {
    const lines = String((e as { stderr?: string }).stderr ?? e.message)
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => /^error: /.test(l) && !/update failed|preview failed/.test(l));
    return [...new Set(lines)].map((l) => `  ${l}\n`).join("");
}

/**
 * Reads `KEY=@file` and `KEY=-` (stdin, once) into bytes. Values are never taken from arguments:
 * they would show in process lists and shell history. Errors name the key, never a value.
 */
export function readSecretValues(args: readonly string[], readStdin: () => Buffer, readFile: (f: string) => Buffer = fs.readFileSync): Record<string, Buffer> {
    const values: Record<string, Buffer> = {};
    let stdinUsed = false;
    for (const arg of args) {
        const eq = arg.indexOf("=");
        const key = eq > 0 ? arg.slice(0, eq) : "";
        const source = eq > 0 ? arg.slice(eq + 1) : "";
        if (!key) throw new RunnerError("invalid", `values: each value must be KEY=@file or KEY=- (stdin), got an argument without "KEY="`);
        if (key in values) throw new RunnerError("invalid", `values.${key}: given twice`);
        if (source === "-") {
            if (stdinUsed) throw new RunnerError("invalid", `values.${key}: only one key can read stdin`);
            stdinUsed = true;
            values[key] = readStdin();
        } else if (source.startsWith("@") && source.length > 1) {
            try {
                values[key] = readFile(path.resolve(source.slice(1)));
            } catch (e) {
                throw new RunnerError("invalid", `values.${key}: cannot read ${source.slice(1)} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
            }
        } else {
            throw new RunnerError("invalid", `values.${key}: values are never taken from the command line (process lists and shell history would show them); use ${key}=@file or ${key}=-`);
        }
    }
    return values;
}

function readPem(file: string, what: string): string {
    try {
        return fs.readFileSync(path.resolve(file), "utf8");
    } catch (e) {
        throw new RunnerError("invalid", `${what}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
}

async function dispatch(parsed: ParsedVerb, assembled: AssembledRunner, onOutput: ((s: string) => void) | undefined, signal: AbortSignal): Promise<unknown> {
    const { runner, settings } = assembled;
    const values = parsed.values;
    // A bearer token (as CI holds one) acts with that token's rights instead of the local user's.
    const principal = async () => {
        const token = process.env.GITOPS_STAGES_TOKEN;
        if (token && values.as !== undefined) throw new RunnerError("invalid", "--as: cannot be combined with GITOPS_STAGES_TOKEN (the token names who acts)");
        return token ? tokenActor(settings, await assembled.platformOutputs(), token) : cliActor(settings, (values.as as string | undefined) ?? defaultUser());
    };
    // Every verb acts as its principal, authenticated first as the service does; its rights are
    // checked with the service's own check once the request parsed (bad input is `invalid` whoever
    // asks), and its name is the requester that commits and the audit trail record.
    if (parsed.verb === "sync") {
        // An owner's sync is Argo CD's to allow (its RBAC, its sync windows), with the owner's own
        // Argo CD token: the runner's principals and rights play no part, so none is resolved.
        const stage = stageArg(values.stage, true)!;
        const waitMs = values.wait ? timeoutSeconds(values.timeout) * 1000 : undefined;
        if (!values.wait && values.timeout !== undefined) throw new RunnerError("invalid", "--timeout: only with --wait");
        if (!values.wait && values.for !== undefined) throw new RunnerError("invalid", "--for: only with --wait");
        const until = untilArg(values.for);
        const tokenFile = values.argocdTokenFile as string | undefined;
        const token = tokenFile !== undefined ? { value: readArgoCdTokenFile(tokenFile), from: `--argocd-token-file (${tokenFile})` } : process.env.ARGOCD_AUTH_TOKEN ? { value: process.env.ARGOCD_AUTH_TOKEN.trim(), from: "$ARGOCD_AUTH_TOKEN" } : undefined;
        if (!token) throw new RunnerError("unauthorized", "stages sync acts as you in Argo CD: give your Argo CD token in $ARGOCD_AUTH_TOKEN or --argocd-token-file <file> (`argocd account generate-token`, or the token of your SSO session)");
        const flagUrl = values.argocdUrl as string | undefined;
        const at = await argoCdUrl(settings, assembled.platformOutputs, flagUrl !== undefined ? { url: flagUrl, from: "--argocd-url" } : undefined);
        const client = new ArgoCdClient(at.url, token.value, { urlFrom: at.from, tokenFrom: token.from });
        return runner.sync(stage, client, { ...(waitMs !== undefined ? { waitMs } : {}), until });
    }
    const who = await principal();
    const command = toCommand(parsed);
    // Exactly what the service does with a request, but run here and now: the same parsing,
    // requester, rights and policy (src/runner/commands.ts). Changes are recorded in the request
    // log and run under its lock of the stack, which a service on the same database honours too.
    const log = { store: assembled.log, owner: cliOwner(), lockWaitMs: settings.lockWaitSeconds * 1000, leaseMs: settings.leaseSeconds * 1000, notice: (line: string) => process.stderr.write(`stages: ${line}\n`) };
    return new Commands(assembled).execute(command, who, { ...(onOutput ? { onOutput } : {}), log, signal });
}

/**
 * A command line as a command of the command layer: options become the fields the HTTP API takes.
 * Only what the command line spells its own way is read here (`<app>@<version>`, files, stdin).
 */
function toCommand({ verb, sub, values: v, positionals }: ParsedVerb): Command {
    const opt = (key: string, flag: string) => (v[flag] !== undefined ? { [key]: v[flag] } : {});
    switch (verb) {
        case "promote":
        case "preview": {
            const { app, version } = appAtVersion(positionals[0]);
            return {
                verb,
                input: {
                    app,
                    version,
                    to: v.to,
                    ...opt("image", "image"),
                    source: { commit: v.commit, ...(v.mr !== undefined ? { mr: numberFlag(v.mr) } : {}), ...(v.ciRun !== undefined ? { ciRunUrl: v.ciRun } : {}) },
                    ...opt("reason", "reason"),
                    ...opt("idempotencyKey", "idempotencyKey"),
                    ...opt("claimedRequester", "claimedRequester"),
                    overrideOrder: v.overrideOrder === true,
                },
                ...(v.bundle !== undefined ? { bundle: { dir: path.resolve(v.bundle as string) } } : {}),
            };
        }
        case "rollback":
            return { verb, input: { app: positionals[0], stage: v.stage, ...opt("to", "to"), ...opt("reason", "reason"), ...opt("idempotencyKey", "idempotencyKey"), ...opt("claimedRequester", "claimedRequester") } };
        case "hold":
        case "release":
            return { verb, input: { app: positionals[0], stage: v.stage, ...opt("reason", "reason"), ...opt("claimedRequester", "claimedRequester") } };
        case "approve":
            return { verb, input: { ...appAtVersion(positionals[0]), stage: v.stage } };
        case "status":
        case "drift":
            return { verb, input: { ...opt("stage", "stage") } };
        case "wait":
            return { verb, input: { stage: v.stage, timeoutSeconds: timeoutSeconds(v.timeout), until: untilArg(v.for), ...(positionals[0] !== undefined ? { release: positionals[0] } : {}) } };
        case "history":
            return { verb, input: { stage: positionals[0], ...opt("commit", "commit") } };
        case "mr":
            if (sub === "deploy") {
                return {
                    verb: "mr-deploy",
                    input: { mr: numberFlag(v.mr), app: v.app, image: v.image, sourceCommit: v.commit, ...(v.ttlHours !== undefined ? { ttlHours: numberFlag(v.ttlHours) } : {}) },
                    ...(v.bundle !== undefined ? { bundle: { dir: path.resolve(v.bundle as string) } } : {}),
                };
            }
            if (sub === "destroy") return { verb: "mr-destroy", input: { mr: numberFlag(positionals[0]) } };
            return { verb: "mr-reap", input: {} };
        case "secret":
            if (sub === "set") {
                if (v.namespaceWide && v.clusterWide) throw new RunnerError("invalid", "scope: choose one of --namespace-wide and --cluster-wide");
                const [app, ...pairs] = positionals;
                return {
                    verb: "secret-set",
                    input: {
                        app,
                        stage: v.stage,
                        ...opt("name", "name"),
                        ...opt("namespace", "namespace"),
                        scope: v.clusterWide ? "cluster-wide" : v.namespaceWide ? "namespace-wide" : "strict",
                        replace: v.replace === true,
                        ...(v.cert !== undefined ? { certificate: readPem(v.cert as string, "cert") } : {}),
                        ...opt("reason", "reason"),
                    },
                    values: readSecretValues(pairs, () => fs.readFileSync(0)),
                };
            }
            if (sub === "list") return { verb: "secret-list", input: { stage: v.stage, ...(positionals[0] !== undefined ? { app: positionals[0] } : {}) } };
            if (sub === "rm") {
                const [app, ...keys] = positionals;
                return { verb: "secret-rm", input: { app, stage: v.stage, keys, ...opt("name", "name"), ...opt("reason", "reason") } };
            }
            return {
                verb: "secret-reseal",
                input: { stage: v.stage, ...(v.cert !== undefined ? { certificate: readPem(v.cert as string, "cert") } : {}), privateKeys: ((v.privateKey as string[] | undefined) ?? []).map((f) => readPem(f, "private-key")), ...opt("reason", "reason") },
            };
    }
    throw new RunnerError("invalid", `unknown verb "${verb}"`);
}

/** A number flag as the API's number; text that is not one stays text, so the command names it in its error. */
function numberFlag(value: unknown): unknown {
    return typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
}

function render(verb: string, result: unknown): string {
    if (verb === "status") {
        const rows = result as { stage: string; apps: Record<string, { version: string; hold?: { by: string } | null; promotedAt: string; requester: string }>; deployment: Deployment }[];
        const apps = [...new Set(rows.flatMap((r) => Object.keys(r.apps)))].sort();
        const lines = [["app", ...rows.map((r) => r.stage)]];
        for (const app of apps) {
            lines.push([app, ...rows.map((r) => {
                const e = r.apps[app];
                return e ? `${e.version}${e.hold ? " (held)" : ""}` : "-";
            })]);
        }
        // Desired (the ops repo, above) against deployed (what Argo CD reports).
        lines.push(["(deployed)", ...rows.map((r) => r.deployment.state)]);
        const last = rows.flatMap((r) => Object.entries(r.apps).map(([app, e]) => `  ${r.stage}/${app}: ${e.version} by ${e.requester} at ${e.promotedAt}${e.hold ? `, held by ${e.hold.by}` : ""}`));
        const deployed = rows.map((r) => {
            const d = r.deployment;
            const op = d.operation ? ` (last operation ${d.operation}${d.operationBy ? ` by ${d.operationBy}` : ""}${d.operationFinishedAt ? ` at ${d.operationFinishedAt}` : ""})` : "";
            return `  ${r.stage}: ${d.state}: ${d.message}${op}`;
        });
        return table(lines) + (last.length ? `\nlast changes:\n${last.join("\n")}\n` : "") + `\nin the cluster (Argo CD):\n${deployed.join("\n")}\n`;
    }
    if (verb === "wait") {
        const d = result as Deployment;
        return `${d.state}: ${d.message}\n`;
    }
    if (verb === "sync") {
        return `${(result as { message: string }).message}\n`;
    }
    if (verb === "history" && !Array.isArray(result)) {
        const c = result as CommitDetails;
        const head = [`commit ${c.commit}`, `Author: ${c.author}`, `Date:   ${c.date}`, "", ...c.message.trimEnd().split("\n").map((l) => `    ${l}`), ""];
        const files = c.files.map((f) => `${f.status}\t${f.path}`);
        return [...head, ...files, "", c.patch.trimEnd(), ...(c.truncated ? ["(patch cut at the size limit)"] : []), ""].join("\n");
    }
    if (verb === "history") {
        const rows = result as AuditEntry[];
        const lines = [["#", "when", "operation", "result", "change", "requester", "request", "ops commit", "source commit", "CI run", "took"]];
        for (const [i, h] of rows.entries()) {
            const c = h.change;
            lines.push([String(h.version || rows.length - i), h.startTime, h.kind, h.result, c ? `${c.kind} ${c.app}${c.version ? ` ${c.version}` : ""}` : "-", c?.requester ?? "-", c?.requestId ?? "-", h.opsCommit?.slice(0, 12) ?? "-", c?.sourceCommit?.slice(0, 12) ?? "-", c?.ciRunUrl ?? "-", h.durationMs !== undefined ? `${(h.durationMs / 1000).toFixed(1)}s` : "-"]);
        }
        return table(lines);
    }
    if (verb === "drift") {
        const rows = result as { stack: string; changes: Record<string, number>; details: string[] }[];
        return rows.map((r) => `${r.stack}: ${r.details.length ? `drift\n${r.details.map((d) => `  ${d}`).join("\n")}` : "no drift"}`).join("\n") + "\n";
    }
    if (verb === "secret") {
        const r = result as { message: string; opsCommit?: string; requestId: string; secrets: { app: string; name: string; namespace: string; scope: string; keys: string[] }[] };
        const rows = [["app", "secret", "namespace", "scope", "keys"], ...r.secrets.map((s) => [s.app, s.name, s.namespace, s.scope, s.keys.join(",")])];
        return [r.message, ...(r.opsCommit ? [`ops repo commit: ${r.opsCommit}`] : []), `request: ${r.requestId}`, ""].join("\n") + (r.secrets.length ? table(rows) : "");
    }
    if (verb === "approve") {
        const a = result as { app: string; version: string; stage: string; by: string; at: string };
        return `${a.by} approved ${a.app} ${a.version} for ${a.stage} at ${a.at}\n`;
    }
    const r = result as { message?: string; opsCommit?: string; requestId?: string; state?: string; recovered?: string; changes?: Record<string, number>; files?: Record<string, { removed: string[]; added: string[] }> };
    const lines = [r.message ?? JSON.stringify(result)];
    if (r.recovered) lines.push(r.recovered);
    if (r.requestId) lines.push(`request: ${r.requestId}${r.state ? ` (${r.state})` : ""}`);
    if (r.opsCommit) lines.push(`ops repo commit: ${r.opsCommit}`);
    if (r.changes && Object.keys(r.changes).length) lines.push(`resources: ${Object.entries(r.changes).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    for (const [file, d] of Object.entries(r.files ?? {})) {
        lines.push(`--- ${file}`, ...d.removed.map((l) => `- ${l}`), ...d.added.map((l) => `+ ${l}`));
    }
    return lines.join("\n") + "\n";
}
