/**
 * The platform stack's configuration: types, defaults, a TypeBox schema of its shape and a pure
 * parser that reports the problems at once. `read` (in the program) gathers the raw values;
 * `parsePlatformConfig` decides.
 */
import * as os from "node:os";
import * as path from "node:path";

import { DURATION_RULE, SCHEDULE_RULE, TIME_ZONE_RULE, checkTimeZone, durationMinutes, parseSchedule } from "../runner/cron";
import { type Static, Type } from "@sinclair/typebox";

import { HttpUrl, Label, OneOf, Pattern, Semver, capped, problemsOf } from "./schema";
import { type Problem, ValidationError, show } from "./validate";

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

/**
 * A pull-request bypass actor as GitHub's branch protection takes it: "/" and a user's login, or an
 * App's node ID (legacy base64 "MD..." or the newer "<PREFIX>_..." form).
 */
const RUNNER_ACTOR = /^(?:\/[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}|MD[A-Za-z0-9+/]{6,}={0,2}|[A-Z]{1,4}_[A-Za-z0-9_-]{6,})$/;

const strict = { additionalProperties: false } as const;
const TeamSlug = Pattern(TEAM_SLUG, TEAM_SLUG_RULE);
const GitHubName = Pattern(GITHUB_NAME, GITHUB_NAME_RULE);
const opt = Type.Optional;

const ChartSchema = Type.Object(
    {
        repository: opt(HttpUrl),
        name: opt(Pattern(/^[a-z0-9][a-z0-9-]*$/, "must be a chart name")),
        version: opt(Semver),
        oci: opt(Pattern(/^oci:\/\/\S+$/, "must be an oci:// reference", { "x-url": true })),
        path: opt(Type.String()),
    },
    strict,
);

const RepositorySchema = Type.Object(
    { name: opt(GitHubName), description: opt(Type.String()), visibility: opt(OneOf(["private", "internal", "public"])), requiredChecks: opt(Type.Array(Type.String())) },
    strict,
);

const WindowSchema = Type.Object(
    { kind: opt(OneOf(["allow", "deny"])), schedule: Type.String(), duration: Type.String(), timeZone: opt(Type.String()), manualSync: opt(Type.Boolean()) },
    strict,
);

const StageSchema = Type.Object(
    {
        name: Label,
        sync: opt(OneOf(["automatic", "manual"])),
        owners: opt(Type.Array(TeamSlug)),
        namespaces: opt(Type.Array(Label)),
        requireReview: opt(Type.Boolean()),
        queue: opt(OneOf(["fifo", "coalesce"])),
        syncWindows: opt(Type.Array(WindowSchema)),
        freezeWindows: opt(Type.Array(WindowSchema)),
        requireApproval: opt(Type.Boolean()),
        // Key syntax is the API server's to judge (see Stage.annotations).
        annotations: opt(Type.Record(Type.String(), Type.String(), { additionalProperties: false, "x-key-rule": "annotation key must be one line" })),
    },
    strict,
);

/** The platform stack's configuration as TypeBox checks its shape (keys without the namespace); the rules across keys are checked in code. */
export const PLATFORM_SCHEMA = Type.Object(
    {
        gitHost: opt(
            Type.Object(
                {
                    kind: opt(OneOf(["local", "github"])),
                    path: opt(Type.String()),
                    serveUrl: opt(Pattern(/^(git|https?|ssh|file):\/\/\S+$/, "must be a git://, http(s)://, ssh:// or file:// URL", { "x-url": true })),
                    owner: opt(GitHubName),
                    baseUrl: opt(HttpUrl),
                    runnerActor: opt(
                        Pattern(
                            RUNNER_ACTOR,
                            'must be "/<login>" of the runner\'s machine user or the node ID of its GitHub App (gh api /apps/<slug> --jq .node_id), as branch protection names bypass actors',
                        ),
                    ),
                },
                strict,
            ),
        ),
        repositories: opt(Type.Object({ dev: opt(RepositorySchema), ops: opt(RepositorySchema) }, strict)),
        teams: opt(Type.Object({ platformAdmins: opt(TeamSlug), developers: opt(TeamSlug) }, strict)),
        stages: opt(Type.Array(StageSchema)),
        argocd: opt(
            Type.Object(
                {
                    namespace: opt(Label),
                    chart: opt(ChartSchema),
                    url: opt(HttpUrl),
                    accounts: opt(Type.Array(Type.Object({ name: Pattern(ACCOUNT_NAME, ACCOUNT_NAME_RULE), teams: opt(Type.Array(TeamSlug)) }, strict))),
                },
                strict,
            ),
        ),
        sealedSecrets: opt(Type.Object({ namespace: opt(Label), chart: opt(ChartSchema) }, strict)),
        cluster: opt(Type.Object({ kubeconfig: opt(Type.String()), context: opt(Type.String()), renderDir: opt(Type.String()), skipAwait: opt(Type.Boolean()) }, strict)),
        runner: opt(Type.Object({ url: opt(HttpUrl) }, strict)),
    },
    strict,
);

type Raw = Static<typeof PLATFORM_SCHEMA>;

/** Names of every top-level key the platform stack reads. */
export const PLATFORM_KEYS = Object.keys(PLATFORM_SCHEMA.properties);

/** Collects the problems of the rules across keys (what a schema cannot state). */
class Rules {
    readonly problems: Problem[] = [];
    fail(key: string, value: unknown, rule: string): void {
        this.problems.push({ key: k(key), ...(value === undefined ? {} : { value: show(value) }), rule });
    }
}

function chartOf(r: Rules, key: string, o: Static<typeof ChartSchema> | undefined, fallback: ChartSource, ctx: ParseContext): ChartSource {
    if (o === undefined) return fallback;
    const given = (["repository", "oci", "path"] as const).filter((f) => o[f] !== undefined);
    if (given.length !== 1) {
        r.fail(key, o, 'must set exactly one of "repository" (with "name" and "version"), "oci" (with "version") or "path"');
        return fallback;
    }
    if (o.path !== undefined) {
        for (const f of ["name", "version"] as const) {
            if (o[f] !== undefined) r.fail(`${key}.${f}`, o[f], 'is not used with "path" (the chart folder carries its version)');
        }
        return { kind: "path", path: resolvePath(ctx, o.path) };
    }
    if (o.version === undefined) r.fail(`${key}.version`, undefined, "is required");
    const version = o.version ?? "";
    if (o.oci !== undefined) return { kind: "oci", reference: o.oci, version };
    if (o.name === undefined) r.fail(`${key}.name`, undefined, "is required");
    return { kind: "repository", repository: o.repository!, name: o.name ?? "", version };
}

/**
 * Required status checks of main. On ops the runner pushes each promotion directly and reports
 * `validate` itself after running that check's rules on its commit; a check it cannot run would
 * refuse every promotion, so ops requires `validate` and nothing else.
 */
function repositoryOf(r: Rules, key: string, o: Static<typeof RepositorySchema> = {}, role: "dev" | "ops", checksTouched = false): RepositorySettings {
    const checks = o.requiredChecks ?? (role === "dev" ? ["ci"] : ["validate"]);
    if (role === "ops" && !checksTouched && (checks.length !== 1 || checks[0] !== "validate")) {
        r.fail(`${key}.requiredChecks`, o.requiredChecks, 'must be ["validate"] on the ops repo: the runner reports only that check on its own commits, so any other would refuse every promotion');
    }
    return {
        name: o.name ?? `app-${role}`,
        description: o.description ?? (role === "dev" ? "Application code, chart, per-stage values and CI" : "Desired state of every environment"),
        visibility: o.visibility ?? "private",
        requiredChecks: role === "ops" ? ["validate"] : checks,
    };
}

function windowOf(r: Rules, key: string, o: Static<typeof WindowSchema>): SyncWindow {
    const window = { kind: o.kind ?? "deny", schedule: o.schedule, duration: o.duration, timeZone: o.timeZone ?? "UTC", manualSync: o.manualSync ?? false };
    // Checked here, as Argo CD would read them, so that a window that passes the config never makes
    // a promotion fail later (the runner evaluates freeze windows with the same functions).
    const check = (field: string, value: string, rule: string, fn: () => unknown) => {
        try {
            fn();
        } catch {
            r.fail(`${key}.${field}`, value, rule);
        }
    };
    check("schedule", window.schedule, SCHEDULE_RULE, () => parseSchedule(window.schedule));
    check("duration", window.duration, DURATION_RULE, () => durationMinutes(window.duration));
    check("timeZone", window.timeZone, TIME_ZONE_RULE, () => checkTimeZone(window.timeZone));
    return window;
}

function stageOf(r: Rules, key: string, o: Static<typeof StageSchema>, index: number): Stage {
    const name = o.name;
    // The first stage syncs automatically by default, as itg does in the default pipeline.
    const sync: SyncMode = o.sync ?? (index === 0 ? "automatic" : "manual");
    const owners = o.owners ?? [`${name}-owners`];
    if (owners.length === 0) r.fail(`${key}.owners`, o.owners, "must name at least one team");
    const namespaces = o.namespaces ?? [name];
    if (namespaces.length === 0) r.fail(`${key}.namespaces`, o.namespaces, "must name at least one namespace");
    return {
        name,
        sync,
        owners,
        namespaces,
        requireReview: o.requireReview ?? false,
        queue: o.queue ?? (sync === "automatic" ? "coalesce" : "fifo"),
        // Holes (windows with a problem of shape) are skipped; the config is not returned then.
        syncWindows: (o.syncWindows ?? []).flatMap((w, i) => (w ? [windowOf(r, `${key}.syncWindows[${i}]`, w)] : [])),
        freezeWindows: (o.freezeWindows ?? []).flatMap((w, i) => (w ? [windowOf(r, `${key}.freezeWindows[${i}]`, w)] : [])),
        requireApproval: o.requireApproval ?? false,
        annotations: o.annotations ?? {},
    };
}

/**
 * Parses the platform configuration from raw config values (key without namespace -> parsed JSON
 * or string). Its shape is checked against {@link PLATFORM_SCHEMA}, and the rules across keys (kinds
 * of git host, unique names, namespaces, charts, windows as Argo CD reads them) on what has no
 * problem of shape, so one error lists both kinds. Throws a ValidationError listing them; returns
 * the config with defaults.
 */
export function parsePlatformConfig(rawValues: Readonly<Record<string, unknown>>, ctx: ParseContext): PlatformConfig {
    const shape = problemsOf(PLATFORM_SCHEMA, rawValues, { prefix: `${NAMESPACE}:` });
    // A list cut short does not say which sections are sound: the rules wait for the next run.
    if (capped(shape)) throw new ValidationError("platform configuration", shape);
    // The rules run on what has no problem of shape, so one error lists both kinds: a setting with
    // one is left out (its default stands in), a list item with one is a hole the rules skip (the
    // others keep their indices), and a rule that reads a setting with a problem does not run (it
    // would judge the default).
    const badKeys = shape.map((p) => p.key.slice(k("").length));
    const touched = (path: string) => badKeys.some((b) => b === path || b.startsWith(`${path}.`) || b.startsWith(`${path}[`));
    const prune = (v: unknown, path: string): unknown => {
        if (Array.isArray(v)) return v.map((x, i) => (touched(`${path}[${i}]`) ? undefined : prune(x, `${path}[${i}]`)));
        if (v === null || typeof v !== "object") return v;
        return Object.fromEntries(Object.entries(v).flatMap(([key, x]) => (badKeys.includes(path ? `${path}.${key}` : key) ? [] : [[key, prune(x, path ? `${path}.${key}` : key)]])));
    };
    const raw = prune(rawValues, "") as Raw;
    const r = new Rules();

    const gh = raw.gitHost ?? {};
    let gitHost: GitHost;
    if (gh.kind === "github") {
        for (const f of ["path", "serveUrl"] as const) {
            if (gh[f] !== undefined) r.fail(`gitHost.${f}`, gh[f], 'is only used with kind "local"');
        }
        if (gh.owner === undefined && !touched("gitHost.owner")) r.fail("gitHost.owner", undefined, "is required");
        // Required: the protection of ops main lets only this actor push directly, so without it no promotion could land.
        if (gh.runnerActor === undefined && !touched("gitHost.runnerActor")) r.fail("gitHost.runnerActor", undefined, "is required");
        gitHost = { kind: "github", owner: gh.owner ?? "", baseUrl: gh.baseUrl, runnerActor: gh.runnerActor ?? "" };
    } else {
        for (const f of ["owner", "baseUrl", "runnerActor"] as const) {
            if (gh[f] !== undefined) r.fail(`gitHost.${f}`, gh[f], 'is only used with kind "github"');
        }
        gitHost = { kind: "local", path: resolvePath(ctx, gh.path ?? ".gitops-stages/git"), serveUrl: gh.serveUrl };
    }

    const repositories = {
        dev: repositoryOf(r, "repositories.dev", raw.repositories?.dev, "dev", touched("repositories.dev.requiredChecks")),
        ops: repositoryOf(r, "repositories.ops", raw.repositories?.ops, "ops", touched("repositories.ops.requiredChecks")),
    };
    if (!touched("repositories.dev.name") && !touched("repositories.ops.name") && repositories.dev.name === repositories.ops.name) r.fail("repositories.ops.name", repositories.ops.name, "must differ from repositories.dev.name");

    const teams = { platformAdmins: raw.teams?.platformAdmins ?? "platform-admins", developers: raw.teams?.developers ?? "developers" };

    const items = raw.stages as (Static<typeof StageSchema> | undefined)[] | undefined;
    if (items !== undefined && items.length === 0) r.fail("stages", items, "must list at least one stage");
    // Each stage with its index in the configuration (holes skipped).
    const indexed: [number, Stage][] = items === undefined && !touched("stages") ? DEFAULT_STAGES.map((st, i) => [i, st]) : (items ?? []).flatMap((o, i) => (o ? [[i, stageOf(r, `stages[${i}]`, o, i)] as [number, Stage]] : []));
    const stages = indexed.map(([, st]) => st);
    const seen = new Map<string, number>();
    indexed.forEach(([i, s]) => {
        if (/^mr-/.test(s.name)) r.fail(`stages[${i}].name`, s.name, 'must not start with "mr-" (reserved for merge-request stacks)');
        // A stage's stack is named after it, and the program gives stacks named platform or platform-* the platform's role.
        if (s.name === "platform" || s.name.startsWith("platform-")) r.fail(`stages[${i}].name`, s.name, 'must not be "platform" or start with "platform-" (names of the bootstrap stack)');
        const prev = seen.get(s.name);
        if (prev !== undefined) r.fail(`stages[${i}].name`, s.name, `must be unique (also stages[${prev}].name)`);
        else seen.set(s.name, i);
    });
    const nsOwner = new Map<string, string>();
    indexed.forEach(([i, s]) =>
        s.namespaces.forEach((ns, j) => {
            if (ns === undefined) return;
            const other = nsOwner.get(ns);
            if (other !== undefined && other !== s.name) r.fail(`stages[${i}].namespaces[${j}]`, ns, `must belong to one stage only (also used by ${other})`);
            else nsOwner.set(ns, s.name);
        }),
    );

    const a = raw.argocd ?? {};
    const argocd = {
        namespace: a.namespace ?? "argocd",
        chart: chartOf(r, "argocd.chart", touched("argocd.chart") ? undefined : a.chart, ARGOCD_CHART, ctx),
        url: a.url ?? "https://argocd.example.internal",
        accounts: (a.accounts ?? []).map((acc) => (acc ? { name: acc.name, teams: acc.teams ?? [] } : undefined)),
    };
    const accountNames = new Set<string>();
    // Teams are RBAC subjects too (on the local host a group is the bare team name): an account
    // named like one would get that team's roles whatever its own `teams` say.
    const knownTeams = new Set([teams.platformAdmins, teams.developers, ...stages.flatMap((s) => s.owners)]);
    for (const [i, acc] of argocd.accounts.entries()) {
        if (!acc) continue;
        if (acc.name === "admin" || acc.name === RUNNER_ARGOCD_ACCOUNT) r.fail(`argocd.accounts[${i}].name`, acc.name, `must not be "admin" or "${RUNNER_ARGOCD_ACCOUNT}" (Argo CD's and the runner's own accounts)`);
        else if (knownTeams.has(acc.name)) r.fail(`argocd.accounts[${i}].name`, acc.name, "must not be the name of a team (it would take that team's roles)");
        else if (accountNames.has(acc.name)) r.fail(`argocd.accounts[${i}].name`, acc.name, "must be unique among argocd.accounts");
        accountNames.add(acc.name);
        // Which teams exist is known only when the teams and every stage's owners are.
        for (const [j, team] of touched("teams") || touched("stages") ? [] : acc.teams.entries()) {
            if (!knownTeams.has(team)) r.fail(`argocd.accounts[${i}].teams[${j}]`, team, `must be a team of this platform (${[...knownTeams].join(", ")})`);
        }
    }
    const sealedSecrets = {
        namespace: raw.sealedSecrets?.namespace ?? "kube-system",
        chart: chartOf(r, "sealedSecrets.chart", touched("sealedSecrets.chart") ? undefined : raw.sealedSecrets?.chart, SEALED_SECRETS_CHART, ctx),
    };
    for (const [i, s] of touched("argocd.namespace") || touched("sealedSecrets.namespace") ? [] : indexed) {
        for (const [j, ns] of s.namespaces.entries()) {
            if (ns === argocd.namespace || ns === sealedSecrets.namespace) r.fail(`stages[${i}].namespaces[${j}]`, ns, "must not be a platform namespace (Argo CD or Sealed Secrets)");
        }
    }

    const cl = raw.cluster ?? {};
    const kubeconfig = cl.kubeconfig === undefined ? undefined : resolvePath(ctx, cl.kubeconfig);
    if (kubeconfig === undefined && !touched("cluster.kubeconfig") && cl.context !== undefined) r.fail("cluster.context", cl.context, "needs cluster.kubeconfig");
    const cluster = { kubeconfig, context: cl.context, renderDir: resolvePath(ctx, cl.renderDir ?? `.gitops-stages/rendered/${ctx.stack}`), skipAwait: cl.skipAwait ?? false };
    const runner = { url: raw.runner?.url ?? "http://127.0.0.1:8080" };

    const problems = [...shape, ...r.problems];
    if (problems.length) throw new ValidationError("platform configuration", problems);
    // No problem: there is no hole in any list.
    return { gitHost, repositories, teams, stages, argocd: { ...argocd, accounts: argocd.accounts.filter((acc) => acc !== undefined) }, sealedSecrets, cluster, runner };
}
