/**
 * The ops repository as the runner reaches it: its remote comes from the platform stack's outputs
 * (a folder for the local git host; HTTPS with a token for GitHub).
 */
import * as pulumi from "@pulumi/pulumi";

import { CommitDetails, CommitInfo, PushAs, commitDetails, commitFiles, isAncestor, listFiles, readFiles, recentCommits } from "../../git/engine";
import { findReleases } from "../../program/stage";
import { parseLedger, stageFiles } from "../../program/stage/files";
import type { StageReleases } from "../core";
import { tokenRemote } from "../../program/github/token";
import { opsPaths } from "../../program/ops/paths";
import { PLATFORM_AUTHOR, opsPushAs } from "../../program/ops/push-as";
import { publishFromDir } from "../../release/publish";
import { RunnerError } from "../errors";
import type { OpsRepoPort } from "../runner";
import type { SecretsRepoPort } from "../secrets";

/** A GitHub clone URL's web page: `https://github.com/o/r.git` -> `https://github.com/o/r` (no credentials, ever). */
export function webPage(cloneUrl: string): string | undefined {
    try {
        const u = new URL(cloneUrl);
        if (u.protocol !== "https:") return undefined;
        return `${u.origin}${u.pathname.replace(/\.git$/, "").replace(/\/$/, "")}`;
    } catch {
        return undefined;
    }
}

/** An OpsRepoPort on a git remote. */
export class GitOpsRepo implements OpsRepoPort, SecretsRepoPort {
    /**
     * `locate` names the remote, when its host has one (GitHub) the repository's web page, and how
     * the runner pushes to the protected main (PushAs).
     */
    constructor(private readonly locate: (forWrite?: boolean) => Promise<{ remote: string; web?: string; pushAs?: PushAs }>) {}

    /** The ops repo named by the platform stack's outputs. */
    static fromPlatform(outputs: () => Promise<Record<string, unknown>>, env: NodeJS.ProcessEnv = process.env, secret: (key: string) => Promise<unknown> = async () => undefined): GitOpsRepo {
        return new GitOpsRepo(async (forWrite) => {
            const shown = await outputs();
            // The push token is a secret output (shown as "[secret]"): read it in clear only to write,
            // so that reads never need the state's secrets.
            const o: Record<string, unknown> = forWrite && shown.opsPushToken ? { ...shown, opsPushToken: await secret("opsPushToken") } : { ...shown, opsPushToken: null };
            const ops = (o.repositories as { ops?: string } | undefined)?.ops;
            if (!ops) throw new RunnerError("not-found", "the platform stack has no ops repository output: run pulumi up on stack platform");
            if (o.gitHost === "github") {
                if (!env.GITHUB_TOKEN) throw new RunnerError("invalid", "GITHUB_TOKEN is required to write to the GitHub ops repository");
                return { remote: tokenRemote(ops, env.GITHUB_TOKEN), web: webPage(ops), pushAs: opsPushAs(o, env.GITHUB_TOKEN) };
            }
            return { remote: ops, pushAs: opsPushAs(o, undefined) };
        });
    }

    private async remote(): Promise<string> {
        return (await this.locate()).remote;
    }

    async contains(commit: string, revision: string): Promise<boolean> {
        // Ancestry never changes once true: polls of a stage's deployment ask it again and again.
        const key = `${commit}..${revision}`;
        if (this.contained.has(key)) return true;
        const yes = await isAncestor(await this.remote(), "main", commit, revision);
        if (yes) {
            if (this.contained.size >= 1000) this.contained.clear();
            this.contained.add(key);
        }
        return yes;
    }

    private readonly contained = new Set<string>();

    async isPublished(app: string, version: string): Promise<boolean> {
        const file = `${opsPaths.release(app, version)}bundle.json`;
        const { files } = await readFiles(await this.remote(), "main", [file]);
        return file in files;
    }

    async ledger(stage: string): Promise<Record<string, Record<string, unknown>>> {
        const file = `${opsPaths.environment(stage)}releases.json`;
        const { files } = await readFiles(await this.remote(), "main", [file]);
        return files[file] === undefined ? {} : parseLedger(files[file]);
    }

    async stageCommits(stage: string, limit: number): Promise<(CommitInfo & { url?: string })[]> {
        const { remote, web } = await this.locate();
        const commits = await recentCommits(remote, "main", opsPaths.environment(stage), limit);
        return web ? commits.map((c) => ({ ...c, url: `${web}/commit/${c.commit}` })) : commits;
    }

    async stageCommit(stage: string, commit: string): Promise<CommitDetails | undefined> {
        return commitDetails(await this.remote(), "main", commit, opsPaths.environment(stage));
    }

    async check(stage: string, releases: StageReleases): Promise<void> {
        await this.found(await this.remote(), stage, releases);
    }

    /** The releases' bundles and values, checked as the stage program checks them; its refusals become the runner's. */
    private async found(remote: string, stage: string, releases: StageReleases) {
        try {
            return await findReleases(remote, stage, releases);
        } catch (e) {
            if (e instanceof pulumi.RunError) throw new RunnerError("refused", e.message, "stage-check");
            throw e;
        }
    }

    async stageFiles(stage: string, releases: StageReleases): Promise<Record<string, [string | undefined, string]>> {
        const remote = await this.remote();
        const after = stageFiles(stage, releases, await this.found(remote, stage, releases));
        const { files: before } = await readFiles(remote, "main", Object.keys(after));
        return Object.fromEntries(Object.entries(after).map(([p, content]) => [p, [before[p], content]]));
    }

    async readSecrets(stage: string): Promise<Record<string, string>> {
        const remote = await this.remote();
        const paths = await listFiles(remote, "main", opsPaths.secrets(stage));
        return (await readFiles(remote, "main", paths)).files;
    }

    async writeSecrets(
        stage: string,
        compute: (current: Record<string, string>) => { writes: Record<string, string>; deletes: string[] } | undefined,
        message: string,
    ): Promise<{ commit?: string }> {
        const prefix = opsPaths.secrets(stage);
        const { remote, pushAs } = await this.locate(true);
        const result = await commitFiles({
            remote,
            pushAs,
            branch: "main",
            message,
            author: PLATFORM_AUTHOR,
            compute: async (head) => {
                const current: Record<string, string> = {};
                for (const p of head.paths.filter((p) => p.startsWith(prefix))) current[p] = (await head.read(p)) ?? "";
                const change = compute(current);
                if (!change) return undefined;
                // A secrets operation writes inside its stage's secrets folder and nowhere else.
                for (const p of [...Object.keys(change.writes), ...change.deletes]) {
                    if (!p.startsWith(prefix) || p.includes("..")) throw new RunnerError("internal", `refusing to write ${p} outside ${prefix}`);
                }
                return change;
            },
        });
        return result.commit ? { commit: result.commit } : {};
    }

    async publish(dir: string, meta: { app: string; version: string; image: string; source: { commit: string; ciRunUrl?: string } }, requestId: string) {
        const { remote, pushAs } = await this.locate(true);
        return publishFromDir(remote, dir, meta, PLATFORM_AUTHOR, requestId, pushAs);
    }
}
