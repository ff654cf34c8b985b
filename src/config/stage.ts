/**
 * Configuration of stage stacks (`itg`, `tst`, ...) and merge-request stacks (`mr-<n>`): what the
 * runner writes into a stack's config before each update. TypeBox schemas, checked with one error
 * listing the problems found.
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";

import { HttpUrl, Label, OneOf, Pattern, RequestId, Requester, Semver, Whole, capped, problemsOf } from "./schema";
import { COMMIT, DNS_LABEL, DNS_LABEL_RULE, type Problem, ValidationError, show } from "./validate";
import { NAMESPACE } from "./platform";

/** Who put a hold on an app in a stage, and why. */
export interface Hold {
    readonly by: string;
    readonly reason: string;
    readonly at: string;
}

/** One app's release in a stage, with the facts of the promotion that put it there. */
export interface StageRelease {
    readonly version: string;
    readonly requestId: string;
    readonly requester: string;
    /** ISO time of the promotion (set by the runner, so a re-run computes the same files). */
    readonly promotedAt: string;
    readonly sourceCommit?: string;
    readonly ciRunUrl?: string;
    readonly hold?: Hold;
}

/** The change an update makes, for its commit message and update metadata. */
export interface StageChange {
    readonly kind: "promote" | "rollback" | "hold" | "release" | "remove";
    readonly app: string;
    readonly version?: string;
    readonly requestId: string;
    readonly requester: string;
    /** Who the caller said it asked for (its claim, not authenticated): the `Claimed-Requester` trailer. */
    readonly claimedRequester?: string;
    readonly reason?: string;
    readonly sourceCommit?: string;
    readonly ciRunUrl?: string;
    /** Set when an operator overrode the stage order; recorded in the commit. */
    readonly overrideOrder?: boolean;
}

/** A stage stack's configuration. */
export interface StageConfig {
    readonly releases: Readonly<Record<string, StageRelease>>;
    readonly change?: StageChange;
    /** Stack reference of the platform stack (its outputs name the ops repo). */
    readonly platformStack: string;
    /**
     * Ops repo remote, overriding the platform stack's output (a mirror, another transport). The
     * platform's push token is not sent there, so a protected remote must let such pushes through.
     */
    readonly opsRepo?: string;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const IsoTime = (example = "") => Pattern(ISO_TIME, `must be an ISO time in UTC${example}`);
const GitCommit = Pattern(COMMIT, "must be a git commit id");
const Image = Pattern(/^\S+[:@]\S+$/, "must be an image reference with a tag or digest");
const strict = { additionalProperties: false } as const;
const APP_NAME_RULE = `app name ${DNS_LABEL_RULE}`;

/** A stage's release of one app, as its stack config holds it. */
const Release = Type.Object(
    {
        version: Semver,
        requestId: RequestId,
        requester: Type.String(),
        promotedAt: IsoTime(" such as 2026-01-31T12:00:00Z"),
        sourceCommit: Type.Optional(GitCommit),
        ciRunUrl: Type.Optional(HttpUrl),
        hold: Type.Optional(Type.Object({ by: Type.String(), reason: Type.Optional(Type.String()), at: IsoTime() }, strict)),
    },
    strict,
);

/** A stage stack's configuration (keys without the namespace). */
const StageConfigSchema = Type.Object(
    {
        stage: Type.Optional(
            Type.Object(
                {
                    // Every entry's release is checked; app names are checked in code (below), all of them.
                    releases: Type.Optional(Type.Record(Type.String(), Release, { additionalProperties: false, "x-key-rule": APP_NAME_RULE })),
                    change: Type.Optional(
                        Type.Object(
                            {
                                kind: Type.Optional(OneOf(["promote", "rollback", "hold", "release", "remove"])),
                                app: Label,
                                version: Type.Optional(Semver),
                                requestId: RequestId,
                                requester: Requester,
                                claimedRequester: Type.Optional(Requester),
                                reason: Type.Optional(Type.String()),
                                sourceCommit: Type.Optional(GitCommit),
                                ciRunUrl: Type.Optional(HttpUrl),
                                overrideOrder: Type.Optional(Type.Boolean()),
                            },
                            strict,
                        ),
                    ),
                },
                strict,
            ),
        ),
        platformStack: Type.Optional(Type.String()),
        opsRepo: Type.Optional(Type.String()),
    },
    strict,
);

/**
 * `raw` checked against `schema`, named as stack config keys are (`gitops-stages:<key>`), or a
 * ValidationError listing the problems, with those `more` finds (rules a schema cannot state).
 */
function checked<T extends TSchema>(schema: T, raw: unknown, subject: string, setting: string, more: Problem[] = []): Static<T> {
    const problems = problemsOf(schema, raw, { prefix: `${NAMESPACE}:`, setting });
    if (!capped(problems)) for (const p of more) if (!problems.some((q) => q.key === p.key)) problems.push(p);
    if (problems.length) throw new ValidationError(subject, problems);
    return raw as Static<T>;
}

/** The keys of `value` if it is a plain object. */
function keysOf(value: unknown): string[] {
    return value && typeof value === "object" && !Array.isArray(value) ? Object.keys(value) : [];
}

/** Parses a stage stack's configuration (raw values keyed without the namespace). */
export function parseStageConfig(raw: Readonly<Record<string, unknown>>): StageConfig {
    const names = keysOf((raw.stage as { releases?: unknown } | undefined)?.releases).filter((app) => !DNS_LABEL.test(app));
    const cfg = checked(StageConfigSchema, raw, "stage configuration", "of a stage stack", names.map((app) => ({ key: `${NAMESPACE}:stage.releases.${app}`, rule: APP_NAME_RULE })));
    const releases: Record<string, StageRelease> = {};
    for (const [app, r] of Object.entries(cfg.stage?.releases ?? {})) {
        const { hold, ...release } = r;
        releases[app] = { ...release, ...(hold ? { hold: { ...hold, reason: hold.reason ?? "" } } : {}) };
    }
    const ch = cfg.stage?.change;
    const change: StageChange | undefined = ch ? { ...ch, kind: ch.kind ?? "promote" } : undefined;
    return { releases, ...(change ? { change } : {}), platformStack: cfg.platformStack ?? "platform", ...(cfg.opsRepo ? { opsRepo: cfg.opsRepo } : {}) };
}

/** A merge-request stack's configuration. */
export interface MrConfig {
    readonly number: number;
    readonly app: string;
    /** Folder of the MR build's bundle (chart/ and values/mr.yaml). */
    readonly bundle: string;
    readonly image: string;
    readonly sourceCommit: string;
    readonly createdAt: string;
    readonly ttlHours: number;
    readonly cluster: { readonly kubeconfig?: string; readonly context?: string; readonly renderDir: string; readonly skipAwait: boolean };
}

/** A merge-request stack's configuration (keys without the namespace). */
const MrConfigSchema = Type.Object(
    {
        mr: Type.Object(
            {
                number: Whole(1, 10_000_000),
                app: Label,
                bundle: Type.String(),
                image: Image,
                sourceCommit: GitCommit,
                createdAt: IsoTime(),
                ttlHours: Type.Optional(Whole(1, 24 * 90)),
            },
            strict,
        ),
        cluster: Type.Optional(Type.Object({ kubeconfig: Type.Optional(Type.String()), context: Type.Optional(Type.String()), renderDir: Type.Optional(Type.String()), skipAwait: Type.Optional(Type.Boolean()) }, strict)),
        platformStack: Type.Optional(Type.String()),
    },
    strict,
);

/** Parses a merge-request stack's configuration; `stack` is the stack name (`mr-<n>`). */
export function parseMrConfig(raw: Readonly<Record<string, unknown>>, stack: string, projectDir: string): MrConfig {
    const number = (raw.mr as { number?: unknown } | undefined)?.number;
    const mismatch = Number.isInteger(number) && `mr-${String(number)}` !== stack ? [{ key: `${NAMESPACE}:mr.number`, value: show(number), rule: `must match the stack name (${stack})` }] : [];
    const { mr: m, cluster: cl = {} } = checked(MrConfigSchema, raw, "merge-request configuration", "of a merge-request stack", mismatch);
    const resolve = (p: string) => (p.startsWith("/") ? p : `${projectDir.replace(/\/$/, "")}/${p}`);
    return {
        number: m.number,
        app: m.app,
        bundle: resolve(m.bundle),
        image: m.image,
        sourceCommit: m.sourceCommit,
        createdAt: m.createdAt,
        ttlHours: m.ttlHours ?? 72,
        cluster: {
            ...(cl.kubeconfig !== undefined ? { kubeconfig: resolve(cl.kubeconfig) } : {}),
            ...(cl.context !== undefined ? { context: cl.context } : {}),
            renderDir: resolve(cl.renderDir ?? `.gitops-stages/rendered/${stack}`),
            skipAwait: cl.skipAwait ?? false,
        },
    };
}

/** When a merge-request environment expires. */
export function mrExpiry(cfg: Pick<MrConfig, "createdAt" | "ttlHours">): string {
    return new Date(Date.parse(cfg.createdAt) + cfg.ttlHours * 3600_000).toISOString().replace(/\.000Z$/, "Z");
}
