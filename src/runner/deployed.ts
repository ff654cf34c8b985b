/**
 * What is deployed, as Argo CD reports it: a stage's Application read from the cluster and judged
 * against the stage's last ops commit. The runner writes the desired state; this is how it (and CI,
 * and the stage's owners) see whether Argo CD has synced it.
 */
import { KubeClient } from "../kube/client";
import { RunnerError } from "./errors";

/** The fields of an Argo CD Application's status this module reads (Argo CD v3). */
export interface ApplicationStatus {
    readonly sync?: { readonly status?: string; readonly revision?: string };
    readonly health?: { readonly status?: string };
    readonly reconciledAt?: string;
    readonly operationState?: {
        readonly phase?: string;
        readonly message?: string;
        readonly startedAt?: string;
        readonly finishedAt?: string;
        readonly syncResult?: { readonly revision?: string };
        /** Who started it: an account or SSO user, or Argo CD's automated sync. */
        readonly operation?: { readonly initiatedBy?: { readonly username?: string; readonly automated?: boolean } };
    };
    readonly conditions?: readonly { readonly type?: string; readonly message?: string }[];
}

/**
 * A stage's deployment, judged against the stage's last ops commit:
 * - `deployed`: Argo CD's Application is Synced at a revision holding the commit, and Healthy;
 * - `synced`: Synced so, but not Healthy yet (Progressing: the rollout runs);
 * - `pending`: committed, not yet synced (the normal state of a manual stage after a promotion,
 *   until its owners sync);
 * - `syncing`: an operation runs;
 * - `failed`: the last sync of such a revision failed, the app is Degraded, or Argo CD reports an
 *   error condition (the chart does not render, the repository cannot be read);
 * - `unknown`: no cluster, no Application, or the Application could not be read (`reason`).
 */
export interface Deployment {
    readonly state: "deployed" | "synced" | "pending" | "syncing" | "failed" | "unknown";
    /** For `unknown`: why (`render`: no cluster; `absent`: no Application; `unreadable`: the read failed; `denied`: Argo CD refused the read). */
    readonly reason?: "render" | "absent" | "unreadable" | "denied";
    /** The stage's last ops commit (what should be deployed), when it has one. */
    readonly commit?: string;
    /** The ops repo revision Argo CD compared against, its sync and health status, the last operation. */
    readonly revision?: string;
    readonly sync?: string;
    readonly health?: string;
    readonly operation?: string;
    /** The last operation: when it finished (absent while it runs) and who started it ("automated" for Argo CD's auto-sync). */
    readonly operationFinishedAt?: string;
    readonly operationBy?: string;
    readonly reconciledAt?: string;
    /** For a manual stage whose commit is not synced yet: the teams whose sync it waits for. */
    readonly waitingFor?: readonly string[];
    /** Argo CD's sync and health predate the end of its last operation: not to be trusted until it compares again. */
    readonly stale?: true;
    readonly message: string;
}

/** Reads Applications; undefined when the Application does not exist. */
export interface ApplicationsPort {
    application(stage: string): Promise<ApplicationStatus | undefined>;
    /** Asks Argo CD to compare again now (what the ops repo's push webhook does). */
    refresh(stage: string): Promise<void>;
    /** Releases connections. */
    close?(): void;
}

/** Applications through the Kubernetes API, in Argo CD's namespace. */
export class KubeApplications implements ApplicationsPort {
    constructor(
        private readonly client: KubeClient,
        private readonly namespace: string,
    ) {}

    private path(stage: string): string {
        return `/apis/argoproj.io/v1alpha1/namespaces/${encodeURIComponent(this.namespace)}/applications/${encodeURIComponent(stage)}`;
    }

    async application(stage: string): Promise<ApplicationStatus | undefined> {
        const app = await this.client.get<{ status?: ApplicationStatus }>(this.path(stage));
        return app ? (app.status ?? {}) : undefined;
    }

    async refresh(stage: string): Promise<void> {
        await this.client.request("PATCH", this.path(stage), { metadata: { annotations: { "argocd.argoproj.io/refresh": "normal" } } }, "application/merge-patch+json");
    }

    /** Closes the client's connections. */
    close(): void {
        this.client.close();
    }
}

/**
 * Judges an Application's status against the stage's last commit. `contains(commit, revision)`
 * says whether `revision` is `commit` or a later commit of main (Argo CD compares the whole
 * repository's head, which later commits to other stages move on).
 */
export async function judge(
    status: ApplicationStatus | undefined,
    commit: string | undefined,
    contains: (commit: string, revision: string) => Promise<boolean>,
    /**
     * A sync was just requested: the operation state Argo CD showed before it (its start and end,
     * or null for none) is the previous operation's, and until another replaces it nothing of it
     * counts. Both times are compared: they have a precision of one second.
     */
    requested?: { readonly previous: { readonly startedAt?: string; readonly finishedAt?: string } | null },
): Promise<Deployment> {
    if (!status) return { state: "unknown", reason: "absent", ...(commit ? { commit } : {}), message: "Argo CD has no Application for this stage" };
    const revision = status.sync?.revision;
    const base = {
        ...(commit ? { commit } : {}),
        ...(revision ? { revision } : {}),
        ...(status.sync?.status ? { sync: status.sync.status } : {}),
        ...(status.health?.status ? { health: status.health.status } : {}),
        ...(status.operationState?.phase ? { operation: status.operationState.phase } : {}),
        ...(status.operationState?.finishedAt ? { operationFinishedAt: status.operationState.finishedAt } : {}),
        ...(initiator(status) ? { operationBy: initiator(status) } : {}),
        ...(status.reconciledAt ? { reconciledAt: status.reconciledAt } : {}),
    };
    const op = status.operationState;
    if (requested && (requested.previous === null ? !op : op?.startedAt === requested.previous.startedAt && op?.finishedAt === requested.previous.finishedAt)) {
        return { state: "syncing", ...base, message: "Argo CD has not started the requested sync yet" };
    }
    if (status.operationState?.phase === "Running" || status.operationState?.phase === "Terminating") {
        return { state: "syncing", ...base, message: `Argo CD is syncing ${short(status.operationState.syncResult?.revision ?? revision)}` };
    }
    const holds = revision !== undefined && (commit === undefined || revision === commit || (await contains(commit, revision)));
    // Argo CD's error conditions (ComparisonError, InvalidSpecError, SyncError, ...) at a revision
    // holding the commit, or where it resolved no commit at all (a failed comparison of the branch
    // leaves the branch's name there: seen on v3.5.7): waiting longer would not help.
    const errors = (status.conditions ?? []).filter((c) => /Error$/.test(c.type ?? ""));
    const resolved = revision !== undefined && /^[0-9a-f]{40,64}$/.test(revision);
    if (errors.length > 0 && (holds || !resolved)) {
        return { state: "failed", ...base, message: `Argo CD reports ${errors.map((c) => `${c.type}: ${c.message ?? ""}`.trim()).join("; ")}` };
    }
    if (!holds) return { state: "pending", ...base, message: `committed${commit ? ` (${short(commit)})` : ""}, not yet synced: Argo CD last compared ${revision ? short(revision) : "nothing yet"}` };
    const opRevision = status.operationState?.syncResult?.revision;
    const opHolds = opRevision !== undefined && (commit === undefined || opRevision === commit || (await contains(commit, opRevision)));
    if ((status.operationState?.phase === "Failed" || status.operationState?.phase === "Error") && opHolds) {
        return { state: "failed", ...base, message: `the last sync failed: ${status.operationState.message ?? "no message"}` };
    }
    // A comparison made before the last operation finished says nothing about what that operation
    // applied (Kargo's akuity/kargo#2196): wait for the next one (waitDeployed asks for it).
    const finished = status.operationState?.finishedAt;
    if (finished && status.reconciledAt && Date.parse(status.reconciledAt) < Date.parse(finished)) {
        return { state: "syncing", stale: true, ...base, message: `Argo CD last compared at ${status.reconciledAt}, before its last operation finished (${finished}): waiting for a fresh comparison` };
    }
    if (status.sync?.status === "Synced") {
        const health = status.health?.status ?? "Unknown";
        if (health === "Healthy") return { state: "deployed", ...base, message: `synced at ${short(revision)}, Healthy` };
        if (health === "Degraded") return { state: "failed", ...base, message: `synced at ${short(revision)}, but Degraded` };
        return { state: "synced", ...base, message: `synced at ${short(revision)}, health ${health}` };
    }
    return { state: "pending", ...base, message: `committed, not yet synced: Argo CD reports ${status.sync?.status ?? "no sync status"} at ${short(revision)}` };
}

/** Who started the last operation, as Argo CD recorded it. */
function initiator(status: ApplicationStatus): string | undefined {
    const by = status.operationState?.operation?.initiatedBy;
    if (!by) return undefined;
    return by.username || (by.automated ? "automated" : undefined);
}

function short(commit: string | undefined): string {
    return commit ? commit.slice(0, 12) : "(none)";
}

/**
 * Waits until `read` reports `deployed` (with `until: "synced"`, also `synced`: the manifests are
 * applied, whatever the rollout's health), asking Argo CD to refresh first (a status reconciled
 * before the commit would be stale; a refresh that fails is not fatal, the next reconcile comes
 * anyway). `failed` ends the wait as a conflict; an absent Application or no cluster as not-found;
 * an unreadable Application is read again until the deadline, which ends it as a timeout naming
 * the last state. A stale status (compared before the last operation finished) is never taken as
 * done: Argo CD is asked to refresh again.
 */
export async function waitDeployed(
    read: () => Promise<Deployment>,
    refresh: () => Promise<void>,
    opts: { timeoutMs: number; until?: "deployed" | "synced"; pollMs?: number; signal?: AbortSignal },
): Promise<Deployment> {
    await refresh().catch(() => undefined);
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
        const d = await read();
        if (d.state === "deployed" || (d.state === "synced" && opts.until === "synced")) return d;
        if (d.state === "failed") throw new RunnerError("conflict", d.message, "sync-failed");
        // A refused read will not be allowed by waiting (a token without the right): at once.
        if (d.state === "unknown" && d.reason === "denied") throw new RunnerError("forbidden", d.message);
        if (d.state === "unknown" && d.reason !== "unreadable") throw new RunnerError("not-found", d.message);
        // A stale status asks for the comparison it lacks (a failed request is not fatal: the controller refreshes after each operation anyway).
        if (d.stale) await refresh().catch(() => undefined);
        if (Date.now() >= deadline) throw new RunnerError("timeout", `not ${opts.until ?? "deployed"} after ${Math.round(opts.timeoutMs / 1000)} s: ${d.message}`);
        if (opts.signal?.aborted) throw new RunnerError("timeout", `stopped while waiting: ${d.message}`);
        await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 2000, Math.max(0, deadline - Date.now()))));
    }
}
