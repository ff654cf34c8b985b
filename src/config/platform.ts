/**
 * The platform stack's configuration: types, defaults, and a pure parser that reports every
 * problem at once. `read` (in the program) gathers the raw values; `parsePlatformConfig` decides.
 */
import * as os from "node:os";
import * as path from "node:path";

import { DURATION_RULE, SCHEDULE_RULE, TIME_ZONE_RULE, checkTimeZone, durationMinutes, parseSchedule } from "../runner/cron";
import { Checker, DNS_LABEL, DNS_LABEL_RULE, SEMVER, SEMVER_RULE } from "./validate";

/** Config namespace of every key (the Pulumi project name). */
export const NAMESPACE = "gitops-stages";

/** How Argo CD syncs a stage. */
export type SyncMode = "automatic" | "manual";

/** An Argo CD sync window (https://argo-cd.readthedocs.io/en/stable/user-guide/sync_windows/). */
export interface SyncWindow {
    readonly kind: "allow" | "deny";
    /** Cron expression of the window's start. */
    readonly schedule: string;
    /** Length, e.g. "1h" or "30m". */
    readonly duration: string;
    readonly timeZone: string;
    /** Whether a manual sync may still happen inside a deny window. */
    readonly manualSync: boolean;
}

/** One long-lived stage. */
export interface Stage {
    readonly name: string;
    readonly sync: SyncMode;
    /** Team slugs whose members own the stage (CODEOWNERS, Argo CD sync right, Environment reviewers). */
    readonly owners: readonly string[];
    /** Namespaces the stage's Application may deploy into; the first is its default. */
    readonly namespaces: readonly string[];
    /** Whether CI needs the owners' review (GitHub Environment) before promoting into this stage. */
    readonly requireReview: boolean;
    /** Runner queue policy: "coalesce" answers older waiting requests of an app "superseded". */
    readonly queue: "fifo" | "coalesce";
    readonly syncWindows: readonly SyncWindow[];
    /** Runner freeze windows: promotions are refused inside a deny window and, if any allow window exists, outside all of them. Rollbacks pass. */
    readonly freezeWindows: readonly SyncWindow[];
    /** Whether a promotion into this stage needs an approval recorded by one of its owners (`stages approve`). */
    readonly requireApproval: boolean;
    /**
     * Annotations of the stage's Argo CD Application (e.g. notification subscriptions
     * `notifications.argoproj.io/subscribe.on-sync-failed.slack: <channel>`). Key syntax is the
     * API server's to judge: it rejects a malformed key with the field named.
     */
    readonly annotations: Readonly<Record<string, string>>;
}

/** Where a Helm chart comes from. */
export type ChartSource =
    | { readonly kind: "repository"; readonly repository: string; readonly name: string; readonly version: string }
    | { readonly kind: "oci"; readonly reference: string; readonly version: string }
    | { readonly kind: "path"; readonly path: string };

/** The git host of both repositories. */
export type GitHost =
    | {
          readonly kind: "local";
          /** Folder holding the bare repositories. */
          readonly path: string;
          /** URL under which Argo CD reaches these repositories (e.g. a git daemon); default file://<path>. */
          readonly serveUrl?: string;
      }
    | {
          readonly kind: "github";
          /** Organisation (or user) owning the repositories. */
          readonly owner: string;
          /** API base URL for GitHub Enterprise Server; undefined for github.com. */
          readonly baseUrl?: string;
          /**
           * The runner's identity ("/<login>" of a machine user, or a GitHub App's node ID): the
           * only actor allowed to push to the ops repo's main without a pull request, because every
           * promotion is one direct commit.
           */
          readonly runnerActor: string;
      };

/** One repository's settings. */
export interface RepositorySettings {
    readonly name: string;
    readonly description: string;
    readonly visibility: "private" | "internal" | "public";
    /** Status checks that must pass before merging into main. */
    readonly requiredChecks: readonly string[];
}

/** An Argo CD local account: API tokens only (`apiKey`), with the rights of its teams. */
export interface ArgoCdAccount {
    readonly name: string;
    readonly teams: readonly string[];
}

/**
 * The runner's own Argo CD account, which the platform always declares: read-only (Argo CD's
 * `role:readonly`), so the runner can see what is deployed and ask for refreshes, never sync.
 */
export const RUNNER_ARGOCD_ACCOUNT = "gitops-stages-runner";

/** The whole platform configuration after defaults. */
export interface PlatformConfig {
    readonly gitHost: GitHost;
    readonly repositories: { readonly dev: RepositorySettings; readonly ops: RepositorySettings };
    readonly teams: { readonly platformAdmins: string; readonly developers: string };
    readonly stages: readonly Stage[];
    readonly argocd: {
        readonly namespace: string;
        readonly chart: ChartSource;
        /** External URL of Argo CD: the ops repo webhook posts to `<url>/api/webhook`. */
        readonly url: string;
        /**
         * Argo CD local accounts (API tokens only), each bound to the roles of the teams named:
         * for automation and for sites whose owners do not sign in through SSO.
         */
        readonly accounts: readonly ArgoCdAccount[];
    };
    readonly sealedSecrets: { readonly namespace: string; readonly chart: ChartSource };
    readonly cluster: {
        /** Path of a kubeconfig; undefined means render mode. */
        readonly kubeconfig?: string;
        readonly context?: string;
        /** Folder for rendered manifests (render mode). */
        readonly renderDir: string;
        /** Skip waiting for workloads to become ready (clusters without nodes, CI API servers). */
        readonly skipAwait: boolean;
    };
    readonly runner: { readonly url: string };
}

/** Pinned upstream chart of Argo CD (chart 9.1.0 ships Argo CD 3.2). */
export const ARGOCD_CHART: ChartSource = {
    kind: "repository",
    repository: "https://argoproj.github.io/argo-helm",
    name: "argo-cd",
    version: "9.1.0",
};

/** Pinned upstream chart of the Sealed Secrets controller. */
export const SEALED_SECRETS_CHART: ChartSource = {
    kind: "repository",
    repository: "https://bitnami-labs.github.io/sealed-secrets",
    name: "sealed-secrets",
    version: "2.17.7",
};

/** The default pipeline of the design brief. */
export const DEFAULT_STAGES: readonly Stage[] = [
    stage("itg", "automatic", false, "coalesce"),
    stage("tst", "manual", false, "fifo"),
    stage("perf", "manual", true, "fifo"),
    stage("prod", "manual", true, "fifo"),
];

function stage(name: string, sync: SyncMode, requireReview: boolean, queue: "fifo" | "coalesce"): Stage {
    return { name, sync, owners: [`${name}-owners`], namespaces: [name], requireReview, queue, syncWindows: [], freezeWindows: [], requireApproval: false, annotations: {} };
}

const GITHUB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const GITHUB_NAME_RULE = "must be a GitHub name: letters, digits, '.', '_' and '-', at most 100 characters";
const TEAM_SLUG = /^[a-z0-9][a-z0-9_-]{0,99}$/;
/** Argo CD account names: they become argocd-cm keys (`accounts.<name>`) and RBAC subjects, so no dots, commas or spaces. */
const ACCOUNT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ACCOUNT_NAME_RULE = "must be 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit";
const TEAM_SLUG_RULE = "must be a team slug: lowercase letters, digits, '_' and '-'";

/** Where relative paths in the config are resolved, and defaults that depend on the machine. */
export interface ParseContext {
    /** Folder of the project (Pulumi.yaml); relative paths are resolved against it. */
    readonly projectDir: string;
    /** Stack name, for default folders. */
    readonly stack: string;
    /** The home folder `~/` stands for; default the user's. */
    readonly homeDir?: string;
}

const k = (key: string): string => `${NAMESPACE}:${key}`;

/** A configured path: absolute as given, `~/...` in the home folder (as a shell would), else relative to the project. */
function resolvePath(ctx: ParseContext, p: string): string {
    if (p === "~" || p.startsWith("~/")) return path.join(ctx.homeDir ?? os.homedir(), p.slice(1));
    return p.startsWith("/") ? p : `${ctx.projectDir.replace(/\/$/, "")}/${p}`;
}

function parseChart(c: Checker, key: string, raw: unknown, fallback: ChartSource, ctx: ParseContext): ChartSource {
    if (raw === undefined || raw === null) return fallback;
    const o = c.object(key, raw, ["repository", "name", "version", "oci", "path"]);
    const given = ["repository", "oci", "path"].filter((f) => o[f] !== undefined);
    if (given.length !== 1) {
        c.fail(key, raw, 'must set exactly one of "repository" (with "name" and "version"), "oci" (with "version") or "path"');
        return fallback;
    }
    if (o.path !== undefined) {
        for (const f of ["name", "version"]) {
            if (o[f] !== undefined) c.fail(`${key}.${f}`, o[f], 'is not used with "path" (the chart folder carries its version)');
        }
        return { kind: "path", path: resolvePath(ctx, c.string(`${key}.path`, o.path)) };
    }
    const version = c.string(`${key}.version`, o.version, undefined, SEMVER, SEMVER_RULE);
    if (o.oci !== undefined) {
        const reference = c.string(`${key}.oci`, o.oci, undefined, /^oci:\/\/\S+$/, "must be an oci:// reference");
        return { kind: "oci", reference, version };
    }
    return {
        kind: "repository",
        repository: c.url(`${key}.repository`, o.repository),
        name: c.string(`${key}.name`, o.name, undefined, /^[a-z0-9][a-z0-9-]*$/, "must be a chart name"),
        version,
    };
}

function parseRepository(c: Checker, key: string, raw: unknown, role: "dev" | "ops"): RepositorySettings {
    const o = c.object(key, raw, ["name", "description", "visibility", "requiredChecks"]);
    return {
        name: c.string(`${key}.name`, o.name, `app-${role}`, GITHUB_NAME, GITHUB_NAME_RULE),
        description: c.string(
            `${key}.description`,
            o.description,
            role === "dev" ? "Application code, chart, per-stage values and CI" : "Desired state of every environment",
        ),
        visibility: c.oneOf(`${key}.visibility`, o.visibility, ["private", "internal", "public"], "private"),
        requiredChecks: requiredChecks(c, key, o.requiredChecks, role),
    };
}

/**
 * Required status checks of main. On ops the runner pushes each promotion directly and reports
 * `validate` itself after running that check's rules on its commit; a check it cannot run would
 * refuse every promotion, so ops requires `validate` and nothing else.
 */
function requiredChecks(c: Checker, key: string, raw: unknown, role: "dev" | "ops"): string[] {
    const checks = c.strings(`${key}.requiredChecks`, raw, role === "dev" ? ["ci"] : ["validate"]);
    if (role === "ops" && (checks.length !== 1 || checks[0] !== "validate")) {
        c.fail(`${key}.requiredChecks`, raw, 'must be ["validate"] on the ops repo: the runner reports only that check on its own commits, so any other would refuse every promotion');
        return ["validate"];
    }
    return checks;
}

function parseSyncWindow(c: Checker, key: string, raw: unknown): SyncWindow {
    const o = c.object(key, raw, ["kind", "schedule", "duration", "timeZone", "manualSync"]);
    const window = {
        kind: c.oneOf(`${key}.kind`, o.kind, ["allow", "deny"], "deny"),
        schedule: c.string(`${key}.schedule`, o.schedule),
        duration: c.string(`${key}.duration`, o.duration),
        timeZone: c.string(`${key}.timeZone`, o.timeZone, "UTC"),
        manualSync: c.boolean(`${key}.manualSync`, o.manualSync, false),
    };
    // Checked here, as Argo CD would read them, so that a window that passes the config never makes
    // a promotion fail later (the runner evaluates freeze windows with the same functions).
    const check = (field: string, value: unknown, rule: string, fn: () => unknown) => {
        if (typeof value !== "string") return;
        try {
            fn();
        } catch {
            c.fail(`${key}.${field}`, value, rule);
        }
    };
    check("schedule", o.schedule, SCHEDULE_RULE, () => parseSchedule(window.schedule));
    check("duration", o.duration, DURATION_RULE, () => durationMinutes(window.duration));
    check("timeZone", window.timeZone, TIME_ZONE_RULE, () => checkTimeZone(window.timeZone));
    return window;
}

function parseStage(c: Checker, key: string, raw: unknown, index: number): Stage {
    const o = c.object(key, raw, ["name", "sync", "owners", "namespaces", "requireReview", "queue", "syncWindows", "freezeWindows", "requireApproval", "annotations"]);
    const name = c.string(`${key}.name`, o.name, undefined, DNS_LABEL, DNS_LABEL_RULE);
    // The first stage syncs automatically by default, as itg does in the default pipeline.
    const sync = c.oneOf<SyncMode>(`${key}.sync`, o.sync, ["automatic", "manual"], index === 0 ? "automatic" : "manual");
    const owners = c.strings(`${key}.owners`, o.owners, [`${name}-owners`], TEAM_SLUG, TEAM_SLUG_RULE);
    if (owners.length === 0) c.fail(`${key}.owners`, o.owners, "must name at least one team");
    const namespaces = c.strings(`${key}.namespaces`, o.namespaces, [name], DNS_LABEL, DNS_LABEL_RULE);
    if (namespaces.length === 0) c.fail(`${key}.namespaces`, o.namespaces, "must name at least one namespace");
    return {
        name,
        sync,
        owners,
        namespaces,
        requireReview: c.boolean(`${key}.requireReview`, o.requireReview, false),
        queue: c.oneOf(`${key}.queue`, o.queue, ["fifo", "coalesce"], sync === "automatic" ? "coalesce" : "fifo"),
        syncWindows: c.array(`${key}.syncWindows`, o.syncWindows, [], (kk, item) => parseSyncWindow(c, kk, item)),
        freezeWindows: c.array(`${key}.freezeWindows`, o.freezeWindows, [], (kk, item) => parseSyncWindow(c, kk, item)),
        requireApproval: c.boolean(`${key}.requireApproval`, o.requireApproval, false),
        annotations: parseAnnotations(c, `${key}.annotations`, o.annotations),
    };
}

function parseAnnotations(c: Checker, key: string, raw: unknown): Record<string, string> {
    if (raw === undefined) return {};
    const o = c.object(key, raw, Object.keys((raw as object) ?? {}));
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(o)) out[k] = c.string(`${key}.${k}`, v);
    return out;
}

/**
 * A pull-request bypass actor as GitHub's branch protection takes it: "/" and a user's login, or an
 * App's node ID (legacy base64 "MD..." or the newer "<PREFIX>_..." form).
 */
const RUNNER_ACTOR = /^(?:\/[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}|MD[A-Za-z0-9+/]{6,}={0,2}|[A-Z]{1,4}_[A-Za-z0-9_-]{6,})$/;

/** Names of every top-level key the platform stack reads. */
export const PLATFORM_KEYS = ["gitHost", "repositories", "teams", "stages", "argocd", "sealedSecrets", "cluster", "runner"];

/**
 * Parses the platform configuration from raw config values (key without namespace -> parsed JSON
 * or string). Throws a ValidationError listing every problem; returns the config with defaults.
 */
export function parsePlatformConfig(raw: Readonly<Record<string, unknown>>, ctx: ParseContext): PlatformConfig {
    const c = new Checker();
    for (const key of Object.keys(raw)) {
        if (!PLATFORM_KEYS.includes(key)) {
            c.fail(k(key), undefined, `is not a known setting (known: ${PLATFORM_KEYS.join(", ")})`);
        }
    }

    const gh = c.object(k("gitHost"), raw.gitHost, ["kind", "path", "serveUrl", "owner", "baseUrl", "runnerActor"]);
    const hostKind = c.oneOf(k("gitHost.kind"), gh.kind, ["local", "github"], "local");
    let gitHost: GitHost;
    if (hostKind === "github") {
        for (const f of ["path", "serveUrl"]) {
            if (gh[f] !== undefined) c.fail(k(`gitHost.${f}`), gh[f], 'is only used with kind "local"');
        }
        gitHost = {
            kind: "github",
            owner: c.string(k("gitHost.owner"), gh.owner, undefined, GITHUB_NAME, GITHUB_NAME_RULE),
            baseUrl: gh.baseUrl === undefined ? undefined : c.url(k("gitHost.baseUrl"), gh.baseUrl),
            // Required: the protection of ops main lets only this actor push directly, so without
            // it no promotion could land.
            runnerActor: c.string(
                k("gitHost.runnerActor"),
                gh.runnerActor,
                undefined,
                RUNNER_ACTOR,
                'must be "/<login>" of the runner\'s machine user or the node ID of its GitHub App (gh api /apps/<slug> --jq .node_id), as branch protection names bypass actors',
            ),
        };
    } else {
        for (const f of ["owner", "baseUrl", "runnerActor"]) {
            if (gh[f] !== undefined) c.fail(k(`gitHost.${f}`), gh[f], 'is only used with kind "github"');
        }
        const serveUrl = gh.serveUrl === undefined ? undefined : c.string(k("gitHost.serveUrl"), gh.serveUrl, undefined, /^(git|https?|ssh|file):\/\/\S+$/, "must be a git://, http(s)://, ssh:// or file:// URL");
        gitHost = { kind: "local", path: resolvePath(ctx, c.string(k("gitHost.path"), gh.path, ".gitops-stages/git")), serveUrl };
    }

    const repos = c.object(k("repositories"), raw.repositories, ["dev", "ops"]);
    const repositories = {
        dev: parseRepository(c, k("repositories.dev"), repos.dev, "dev"),
        ops: parseRepository(c, k("repositories.ops"), repos.ops, "ops"),
    };
    if (repositories.dev.name === repositories.ops.name) {
        c.fail(k("repositories.ops.name"), repositories.ops.name, "must differ from repositories.dev.name");
    }

    const t = c.object(k("teams"), raw.teams, ["platformAdmins", "developers"]);
    const teams = {
        platformAdmins: c.string(k("teams.platformAdmins"), t.platformAdmins, "platform-admins", TEAM_SLUG, TEAM_SLUG_RULE),
        developers: c.string(k("teams.developers"), t.developers, "developers", TEAM_SLUG, TEAM_SLUG_RULE),
    };

    const stages = c.array(k("stages"), raw.stages, [...DEFAULT_STAGES], (kk, item, i) => parseStage(c, kk, item, i));
    if (Array.isArray(raw.stages) && raw.stages.length === 0) c.fail(k("stages"), raw.stages, "must list at least one stage");
    const seen = new Map<string, number>();
    stages.forEach((s, i) => {
        if (/^mr-/.test(s.name)) c.fail(k(`stages[${i}].name`), s.name, 'must not start with "mr-" (reserved for merge-request stacks)');
        // A stage's stack is named after it, and the program gives stacks named platform or platform-* the platform's role.
        if (s.name === "platform" || s.name.startsWith("platform-")) c.fail(k(`stages[${i}].name`), s.name, 'must not be "platform" or start with "platform-" (names of the bootstrap stack)');
        const prev = seen.get(s.name);
        if (prev !== undefined) c.fail(k(`stages[${i}].name`), s.name, `must be unique (also stages[${prev}].name)`);
        else seen.set(s.name, i);
    });
    const nsOwner = new Map<string, string>();
    stages.forEach((s, i) =>
        s.namespaces.forEach((ns, j) => {
            const other = nsOwner.get(ns);
            if (other !== undefined && other !== s.name) {
                c.fail(k(`stages[${i}].namespaces[${j}]`), ns, `must belong to one stage only (also used by ${other})`);
            } else nsOwner.set(ns, s.name);
        }),
    );

    const a = c.object(k("argocd"), raw.argocd, ["namespace", "chart", "url", "accounts"]);
    const argocd = {
        namespace: c.string(k("argocd.namespace"), a.namespace, "argocd", DNS_LABEL, DNS_LABEL_RULE),
        chart: parseChart(c, k("argocd.chart"), a.chart, ARGOCD_CHART, ctx),
        url: c.url(k("argocd.url"), a.url, "https://argocd.example.internal"),
        accounts: c.array(k("argocd.accounts"), a.accounts, [], (kk, item) => {
            const o = c.object(kk, item, ["name", "teams"]);
            return {
                name: c.string(`${kk}.name`, o.name, undefined, ACCOUNT_NAME, ACCOUNT_NAME_RULE),
                teams: c.strings(`${kk}.teams`, o.teams, [], TEAM_SLUG, TEAM_SLUG_RULE),
            };
        }),
    };
    const accountNames = new Set<string>();
    // Teams are RBAC subjects too (on the local host a group is the bare team name): an account
    // named like one would get that team's roles whatever its own `teams` say.
    const knownTeams = new Set([teams.platformAdmins, teams.developers, ...stages.flatMap((s) => s.owners)]);
    for (const [i, acc] of argocd.accounts.entries()) {
        if (acc.name === "admin" || acc.name === RUNNER_ARGOCD_ACCOUNT) c.fail(k(`argocd.accounts[${i}].name`), acc.name, `must not be "admin" or "${RUNNER_ARGOCD_ACCOUNT}" (Argo CD's and the runner's own accounts)`);
        else if (knownTeams.has(acc.name)) c.fail(k(`argocd.accounts[${i}].name`), acc.name, "must not be the name of a team (it would take that team's roles)");
        else if (accountNames.has(acc.name)) c.fail(k(`argocd.accounts[${i}].name`), acc.name, "must be unique among argocd.accounts");
        accountNames.add(acc.name);
        for (const [j, team] of acc.teams.entries()) {
            if (!knownTeams.has(team)) c.fail(k(`argocd.accounts[${i}].teams[${j}]`), team, `must be a team of this platform (${[...knownTeams].join(", ")})`);
        }
    }
    const ss = c.object(k("sealedSecrets"), raw.sealedSecrets, ["namespace", "chart"]);
    const sealedSecrets = {
        namespace: c.string(k("sealedSecrets.namespace"), ss.namespace, "kube-system", DNS_LABEL, DNS_LABEL_RULE),
        chart: parseChart(c, k("sealedSecrets.chart"), ss.chart, SEALED_SECRETS_CHART, ctx),
    };
    for (const [i, s] of stages.entries()) {
        for (const [j, ns] of s.namespaces.entries()) {
            if (ns === argocd.namespace || ns === sealedSecrets.namespace) {
                c.fail(k(`stages[${i}].namespaces[${j}]`), ns, "must not be a platform namespace (Argo CD or Sealed Secrets)");
            }
        }
    }

    const cl = c.object(k("cluster"), raw.cluster, ["kubeconfig", "context", "renderDir", "skipAwait"]);
    const kubeconfig = cl.kubeconfig === undefined ? undefined : resolvePath(ctx, c.string(k("cluster.kubeconfig"), cl.kubeconfig));
    if (kubeconfig === undefined && cl.context !== undefined) {
        c.fail(k("cluster.context"), cl.context, "needs cluster.kubeconfig");
    }
    const cluster = {
        kubeconfig,
        context: cl.context === undefined ? undefined : c.string(k("cluster.context"), cl.context),
        renderDir: resolvePath(ctx, c.string(k("cluster.renderDir"), cl.renderDir, `.gitops-stages/rendered/${ctx.stack}`)),
        skipAwait: c.boolean(k("cluster.skipAwait"), cl.skipAwait, false),
    };

    const r = c.object(k("runner"), raw.runner, ["url"]);
    const runner = { url: c.url(k("runner.url"), r.url, "http://127.0.0.1:8080") };

    c.throwIfAny("platform configuration");
    return { gitHost, repositories, teams, stages, argocd, sealedSecrets, cluster, runner };
}
