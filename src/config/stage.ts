/**
 * Configuration of stage stacks (`itg`, `tst`, ...) and merge-request stacks (`mr-<n>`): what the
 * runner writes into a stack's config before each update. Pure parsers, one error for every problem.
 */
import { COMMIT, Checker, DNS_LABEL, DNS_LABEL_RULE, REQUESTER, REQUESTER_RULE, REQUEST_ID, REQUEST_ID_RULE, SEMVER, SEMVER_RULE } from "./validate";
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
const k = (key: string): string => `${NAMESPACE}:${key}`;

function parseRelease(c: Checker, key: string, raw: unknown): StageRelease {
    const o = c.object(key, raw, ["version", "requestId", "requester", "promotedAt", "sourceCommit", "ciRunUrl", "hold"]);
    const hold = o.hold === undefined || o.hold === null ? undefined : c.object(`${key}.hold`, o.hold, ["by", "reason", "at"]);
    return {
        version: c.string(`${key}.version`, o.version, undefined, SEMVER, SEMVER_RULE),
        requestId: c.string(`${key}.requestId`, o.requestId, undefined, REQUEST_ID, REQUEST_ID_RULE),
        requester: c.string(`${key}.requester`, o.requester),
        promotedAt: c.string(`${key}.promotedAt`, o.promotedAt, undefined, ISO_TIME, "must be an ISO time in UTC such as 2026-01-31T12:00:00Z"),
        ...(o.sourceCommit !== undefined ? { sourceCommit: c.string(`${key}.sourceCommit`, o.sourceCommit, undefined, COMMIT, "must be a git commit id") } : {}),
        ...(o.ciRunUrl !== undefined ? { ciRunUrl: c.url(`${key}.ciRunUrl`, o.ciRunUrl) } : {}),
        ...(hold
            ? {
                  hold: {
                      by: c.string(`${key}.hold.by`, hold.by),
                      reason: c.string(`${key}.hold.reason`, hold.reason, ""),
                      at: c.string(`${key}.hold.at`, hold.at, undefined, ISO_TIME, "must be an ISO time in UTC"),
                  },
              }
            : {}),
    };
}

/** Parses a stage stack's configuration (raw values keyed without the namespace). */
export function parseStageConfig(raw: Readonly<Record<string, unknown>>): StageConfig {
    const c = new Checker();
    const known = ["stage", "platformStack", "opsRepo"];
    for (const key of Object.keys(raw)) {
        if (!known.includes(key)) c.fail(k(key), undefined, `is not a known setting of a stage stack (known: ${known.join(", ")})`);
    }
    const s = c.object(k("stage"), raw.stage, ["releases", "change"]);
    const rel = c.object(k("stage.releases"), s.releases, Object.keys((s.releases as object) ?? {}));
    const releases: Record<string, StageRelease> = {};
    for (const [app, r] of Object.entries(rel)) {
        if (!DNS_LABEL.test(app)) c.fail(k(`stage.releases.${app}`), undefined, `app name ${DNS_LABEL_RULE}`);
        releases[app] = parseRelease(c, k(`stage.releases.${app}`), r);
    }
    let change: StageChange | undefined;
    if (s.change !== undefined && s.change !== null) {
        const ch = c.object(k("stage.change"), s.change, ["kind", "app", "version", "requestId", "requester", "claimedRequester", "reason", "sourceCommit", "ciRunUrl", "overrideOrder"]);
        change = {
            kind: c.oneOf(k("stage.change.kind"), ch.kind, ["promote", "rollback", "hold", "release", "remove"], "promote"),
            app: c.string(k("stage.change.app"), ch.app, undefined, DNS_LABEL, DNS_LABEL_RULE),
            ...(ch.version !== undefined ? { version: c.string(k("stage.change.version"), ch.version, undefined, SEMVER, SEMVER_RULE) } : {}),
            requestId: c.string(k("stage.change.requestId"), ch.requestId, undefined, REQUEST_ID, REQUEST_ID_RULE),
            requester: c.string(k("stage.change.requester"), ch.requester, undefined, REQUESTER, REQUESTER_RULE),
            ...(ch.claimedRequester !== undefined ? { claimedRequester: c.string(k("stage.change.claimedRequester"), ch.claimedRequester, undefined, REQUESTER, REQUESTER_RULE) } : {}),
            ...(ch.reason !== undefined ? { reason: c.string(k("stage.change.reason"), ch.reason) } : {}),
            ...(ch.sourceCommit !== undefined ? { sourceCommit: c.string(k("stage.change.sourceCommit"), ch.sourceCommit, undefined, COMMIT, "must be a git commit id") } : {}),
            ...(ch.ciRunUrl !== undefined ? { ciRunUrl: c.url(k("stage.change.ciRunUrl"), ch.ciRunUrl) } : {}),
            ...(ch.overrideOrder !== undefined ? { overrideOrder: c.boolean(k("stage.change.overrideOrder"), ch.overrideOrder, false) } : {}),
        };
    }
    const platformStack = c.string(k("platformStack"), raw.platformStack, "platform");
    const opsRepo = raw.opsRepo === undefined ? undefined : c.string(k("opsRepo"), raw.opsRepo);
    c.throwIfAny("stage configuration");
    return { releases, ...(change ? { change } : {}), platformStack, ...(opsRepo ? { opsRepo } : {}) };
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

/** Parses a merge-request stack's configuration; `stack` is the stack name (`mr-<n>`). */
export function parseMrConfig(raw: Readonly<Record<string, unknown>>, stack: string, projectDir: string): MrConfig {
    const c = new Checker();
    const known = ["mr", "cluster", "platformStack"];
    for (const key of Object.keys(raw)) {
        if (!known.includes(key)) c.fail(k(key), undefined, `is not a known setting of a merge-request stack (known: ${known.join(", ")})`);
    }
    const m = c.object(k("mr"), raw.mr, ["number", "app", "bundle", "image", "sourceCommit", "createdAt", "ttlHours"]);
    const number = c.integer(k("mr.number"), m.number, 0, 1, 10_000_000);
    if (m.number === undefined) c.fail(k("mr.number"), undefined, "is required");
    else if (`mr-${number}` !== stack) c.fail(k("mr.number"), m.number, `must match the stack name (${stack})`);
    const resolve = (p: string) => (p.startsWith("/") ? p : `${projectDir.replace(/\/$/, "")}/${p}`);
    const cl = c.object(k("cluster"), raw.cluster, ["kubeconfig", "context", "renderDir", "skipAwait"]);
    const cfg: MrConfig = {
        number,
        app: c.string(k("mr.app"), m.app, undefined, DNS_LABEL, DNS_LABEL_RULE),
        bundle: resolve(c.string(k("mr.bundle"), m.bundle)),
        image: c.string(k("mr.image"), m.image, undefined, /^\S+[:@]\S+$/, "must be an image reference with a tag or digest"),
        sourceCommit: c.string(k("mr.sourceCommit"), m.sourceCommit, undefined, COMMIT, "must be a git commit id"),
        createdAt: c.string(k("mr.createdAt"), m.createdAt, undefined, ISO_TIME, "must be an ISO time in UTC"),
        ttlHours: c.integer(k("mr.ttlHours"), m.ttlHours, 72, 1, 24 * 90),
        cluster: {
            ...(cl.kubeconfig !== undefined ? { kubeconfig: resolve(c.string(k("cluster.kubeconfig"), cl.kubeconfig)) } : {}),
            ...(cl.context !== undefined ? { context: c.string(k("cluster.context"), cl.context) } : {}),
            renderDir: resolve(c.string(k("cluster.renderDir"), cl.renderDir, `.gitops-stages/rendered/${stack}`)),
            skipAwait: c.boolean(k("cluster.skipAwait"), cl.skipAwait, false),
        },
    };
    c.throwIfAny("merge-request configuration");
    return cfg;
}

/** When a merge-request environment expires. */
export function mrExpiry(cfg: Pick<MrConfig, "createdAt" | "ttlHours">): string {
    return new Date(Date.parse(cfg.createdAt) + cfg.ttlHours * 3600_000).toISOString().replace(/\.000Z$/, "Z");
}
