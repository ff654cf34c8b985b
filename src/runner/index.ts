/**
 * Assembles a runner for this machine: the environment (toolchain, backend, data folder), the
 * Automation API engine, the ops repo, the file store and the runner settings file.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Checker, formatProblem } from "../config/validate";
import { AutomationEngine } from "./adapters/automation";
import { RunnerEnvironment, runnerEnvironment } from "./adapters/environment";
import { ArgoCdApplications, ArgoCdClient } from "./argocd";
import { KubeApplications } from "./deployed";
import { KubeClient } from "../kube/client";
import { DirectController, ProxiedController } from "./adapters/controller";
import { GitOpsRepo } from "./adapters/ops-repo";
import { type Actor, checkRequester } from "./core";
import { RunnerError } from "./errors";
import { DEFAULT_USER_VERBS, Grant, TokenEntry, parseGrants, platformTokenEntries, tokenPrincipal } from "./rights";
import { newRequestId } from "./ids";
import { LEASE_MS } from "./lease";
import { Runner } from "./runner";
import { openStore } from "./request-log";
import { Secrets } from "./secrets";

export { importRecordsFile, openStore } from "./request-log";
import type { RequestStore } from "../service/store";

/** Settings of a runner (`<data>/runner.json`). */
export interface RunnerSettings {
    /** Local users of the CLI: their teams (stage ownership) and whether they may override the stage order. */
    readonly users: Record<string, { teams: string[]; overrideOrder: boolean; grants?: Grant[] }>;
    /** Tokens accepted besides the platform's generated ones, stored as SHA-256 hashes with their rights. */
    readonly tokens: TokenEntry[];
    /** Cluster of merge-request environments; absent kubeconfig: rendered under `<data>/rendered/mr-<n>`. */
    readonly mrCluster: { kubeconfig?: string; context?: string; skipAwait: boolean };
    /** How long a request waits for a stack locked by another update. */
    readonly lockWaitSeconds: number;
    /**
     * How long a running request's claim on its stack lasts unless renewed (renewed every quarter):
     * a replica that dies or is cut off from the database gives its requests up after this long.
     * Every process of a deployment must use the same value (it is also the age after which a
     * Pulumi lock of another host is taken for a dead replica's; see backend-locks.ts).
     */
    readonly leaseSeconds: number;
    /**
     * Argo CD's API for the runner's reads: its URL (default: the platform's `argocdUrl` output)
     * and a file holding the token of the runner's read-only account. Without a token the runner
     * reads the Applications through the platform's cluster instead.
     */
    readonly argocd: { readonly url?: string; readonly tokenFile?: string };
}

/** Reads and validates `<data>/runner.json` (absent: no users, render mode, 600 s). */
export function readSettings(dataDir: string): RunnerSettings {
    const file = path.join(dataDir, "runner.json");
    const raw: unknown = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    const c = new Checker();
    const o = c.object("runner.json", raw, ["users", "tokens", "mrCluster", "lockWaitSeconds", "leaseSeconds", "argocd"]);
    const users: RunnerSettings["users"] = {};
    for (const [name, u] of Object.entries(c.object("users", o.users, Object.keys((o.users as object) ?? {})))) {
        const uo = c.object(`users.${name}`, u, ["teams", "overrideOrder", "rights"]);
        users[name] = {
            teams: c.strings(`users.${name}.teams`, uo.teams, []),
            overrideOrder: c.boolean(`users.${name}.overrideOrder`, uo.overrideOrder, false),
            ...(uo.rights !== undefined ? { grants: parseGrants(c, `users.${name}.rights`, uo.rights) } : {}),
        };
    }
    const tokens: TokenEntry[] = [];
    if (o.tokens !== undefined && !Array.isArray(o.tokens)) c.fail("tokens", o.tokens, "must be a list of {name, sha256, rights}");
    for (const [i, t] of (Array.isArray(o.tokens) ? o.tokens : []).entries()) {
        const to = c.object(`tokens[${i}]`, t, ["name", "sha256", "rights", "teams", "overrideOrder"]);
        tokens.push({
            name: c.string(`tokens[${i}].name`, to.name, undefined, /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, "must be 1 to 64 letters, digits, '.', '_', '@' or '-'"),
            sha256: c.string(`tokens[${i}].sha256`, to.sha256, undefined, /^[0-9a-f]{64}$/, "must be the token's SHA-256 as 64 lowercase hex digits (never the token itself)"),
            grants: parseGrants(c, `tokens[${i}].rights`, to.rights),
            teams: c.strings(`tokens[${i}].teams`, to.teams, []),
            overrideOrder: c.boolean(`tokens[${i}].overrideOrder`, to.overrideOrder, false),
        });
    }
    const m = c.object("mrCluster", o.mrCluster, ["kubeconfig", "context", "skipAwait"]);
    const settings: RunnerSettings = {
        users,
        tokens,
        mrCluster: {
            ...(m.kubeconfig !== undefined ? { kubeconfig: expandHome(c.string("mrCluster.kubeconfig", m.kubeconfig)) } : {}),
            ...(m.context !== undefined ? { context: c.string("mrCluster.context", m.context) } : {}),
            skipAwait: c.boolean("mrCluster.skipAwait", m.skipAwait, false),
        },
        lockWaitSeconds: c.integer("lockWaitSeconds", o.lockWaitSeconds, 600, 1, 86_400),
        leaseSeconds: c.integer("leaseSeconds", o.leaseSeconds, LEASE_MS / 1000, 4, 3600),
        argocd: (() => {
            const a = c.object("argocd", o.argocd, ["url", "tokenFile"]);
            return {
                ...(a.url !== undefined ? { url: c.url("argocd.url", a.url) } : {}),
                ...(a.tokenFile !== undefined ? { tokenFile: expandHome(c.string("argocd.tokenFile", a.tokenFile)) } : {}),
            };
        })(),
    };
    if (c.problems.length) throw new RunnerError("invalid", `${file}: ` + c.problems.map(formatProblem).join("; "));
    return settings;
}

/**
 * The actor of a CLI call: the named user with the teams and rights runner.json gives them. A user
 * without configured rights may use every verb on every stage except `secrets`.
 */
export function cliActor(settings: RunnerSettings, name: string): Actor {
    // The name becomes the Requester trailer of commits: one line, as every requester.
    checkRequester(name, "user", " (from --as, $GITOPS_STAGES_USER or the OS user)");
    const u = settings.users[name];
    return { name, teams: u?.teams ?? [], canOverrideOrder: u?.overrideOrder ?? false, grants: u?.grants ?? [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }], local: true };
}

/**
 * The actor a bearer token stands for: a generated per-stage token of the platform stack (CI rights
 * on that stage) or a configured one. Unknown tokens are `unauthorized`, with no hint of what exists.
 */
export function tokenActor(settings: RunnerSettings, platformOutputs: Record<string, unknown>, token: string): Actor {
    const hashes = (platformOutputs.runnerTokenHashes ?? {}) as Record<string, string>;
    const who = tokenPrincipal(token, [...platformTokenEntries(hashes), ...settings.tokens]);
    if (!who) throw new RunnerError("unauthorized", "the token is not valid");
    return { name: who.name, grants: who.grants, teams: who.teams, canOverrideOrder: who.overrideOrder };
}

export { newRequestId } from "./ids";

/** A runner and what it runs on. */
export interface AssembledRunner {
    readonly runner: Runner;
    /** The operators' sensitive-configuration workflow. */
    readonly secrets: Secrets;
    /** The platform stack's outputs (for token checks). */
    readonly platformOutputs: () => Promise<Record<string, unknown>>;
    readonly environment: RunnerEnvironment;
    readonly settings: RunnerSettings;
    /** The request log's database (the service's own, when it passed it). */
    readonly log: RequestStore;
}

/** `~/...` as a shell would read it, so the paths people write in runner.json mean what they expect. */
function expandHome(p: string): string {
    return p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p;
}

/** Builds the runner for a project and data folder. */
export async function createRunner(opts: {
    projectRoot: string;
    dataDir?: string;
    env?: NodeJS.ProcessEnv;
    log?: (line: string) => void;
    /** The clock (for expiry of merge-request environments, freeze windows, timestamps). */
    now?: () => Date;
    /** The Sealed Secrets controller's URL, instead of reaching it through the platform's cluster. */
    controllerUrl?: string;
    /** Where approvals and answers are kept (the service passes its request log); default: {@link openStore}. */
    store?: RequestStore;
}): Promise<AssembledRunner> {
    const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
    const environment = await runnerEnvironment({ projectRoot: opts.projectRoot, dataDir: opts.dataDir, env: opts.env, log: () => undefined });
    const settings = readSettings(environment.dataDir);
    const store = opts.store ?? (await openStore((opts.env ?? process.env).GITOPS_STAGES_DATABASE, environment.dataDir));
    const engine = new AutomationEngine(environment, { lockWaitMs: settings.lockWaitSeconds * 1000, log, foreignLockMs: settings.leaseSeconds * 1000, hardStopMs: (settings.leaseSeconds * 1000) / 16 });
    const ops = GitOpsRepo.fromPlatform(() => engine.platformOutputs(), opts.env ?? process.env, (key) => engine.platformSecret(key));
    const runner = new Runner({
        engine,
        store,
        ops,
        now: opts.now ?? (() => new Date()),
        newId: newRequestId,
        log,
        mrCluster: (n) => ({ ...settings.mrCluster, renderDir: path.join(environment.dataDir, "rendered", `mr-${n}`) }),
        applications: async () => {
            const token = runnerArgoCdToken(settings, opts.env ?? process.env);
            if (token) {
                const at = await argoCdUrl(settings, () => engine.platformOutputs());
                return new ArgoCdApplications(new ArgoCdClient(at.url, token.value, { urlFrom: at.from, tokenFrom: token.from }));
            }
            const c = (await engine.platformOutputs()).argocdCluster as { namespace: string; kubeconfig?: string; context?: string } | undefined;
            if (!c) throw new RunnerError("not-found", "the platform stack has no argocdCluster output (it predates this version): run pulumi up on stack platform");
            return c.kubeconfig ? new KubeApplications(KubeClient.fromKubeconfig(c.kubeconfig, c.context), c.namespace) : undefined;
        },
    });
    const secrets = new Secrets({
        pipeline: () => engine.pipeline(),
        repo: ops,
        newId: newRequestId,
        controller: async () => {
            if (opts.controllerUrl) return new DirectController(opts.controllerUrl);
            const c = (await engine.platformOutputs()).sealedSecretsController as { namespace: string; name: string; kubeconfig?: string; context?: string } | undefined;
            if (!c?.kubeconfig) return undefined;
            return new ProxiedController(KubeClient.fromKubeconfig(c.kubeconfig, c.context), c.namespace, c.name);
        },
    });
    return { runner, secrets, platformOutputs: () => engine.platformOutputs(), environment, settings, log: store };
}

/**
 * The runner's own Argo CD token (its read-only account): `$GITOPS_STAGES_ARGOCD_TOKEN`, else the
 * file runner.json's `argocd.tokenFile` names; undefined when neither is set.
 */
export function runnerArgoCdToken(settings: RunnerSettings, env: NodeJS.ProcessEnv): { value: string; from: string } | undefined {
    if (env.GITOPS_STAGES_ARGOCD_TOKEN) return { value: env.GITOPS_STAGES_ARGOCD_TOKEN.trim(), from: "$GITOPS_STAGES_ARGOCD_TOKEN" };
    if (!settings.argocd.tokenFile) return undefined;
    const from = `runner.json argocd.tokenFile (${settings.argocd.tokenFile})`;
    try {
        return { value: fs.readFileSync(settings.argocd.tokenFile, "utf8").trim(), from };
    } catch (e) {
        throw new RunnerError("invalid", `${from}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
}

/** Argo CD's URL: `override` (a flag), else runner.json's `argocd.url`, else the platform's `argocdUrl` output; with where it came from. */
export async function argoCdUrl(settings: RunnerSettings, platformOutputs: () => Promise<Record<string, unknown>>, override?: { url: string; from: string }): Promise<{ url: string; from: string }> {
    if (override) return override;
    if (settings.argocd.url) return { url: settings.argocd.url, from: "runner.json argocd.url" };
    const url = (await platformOutputs()).argocdUrl;
    if (typeof url !== "string" || !url) throw new RunnerError("not-found", "the platform stack has no argocdUrl output: run pulumi up on stack platform, or set runner.json argocd.url");
    return { url, from: "the platform's argocd.url (gitops-stages:argocd.url), or runner.json argocd.url" };
}

/** The user running the CLI: --as, else $GITOPS_STAGES_USER, else the OS user. */
export function defaultUser(env: NodeJS.ProcessEnv = process.env): string {
    return env.GITOPS_STAGES_USER ?? os.userInfo().username;
}
