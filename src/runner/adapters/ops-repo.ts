/**
 * The ops repository as the runner reaches it: its remote comes from the platform stack's outputs
 * (a folder for the local git host; HTTPS with a token for GitHub).
 */
import { readFiles } from "../../git/engine";
import { findReleases } from "../../program/stage";
import { stageFiles } from "../../program/stage/files";
import type { StageReleases } from "../core";
import { tokenRemote } from "../../program/github";
import { opsPaths } from "../../program/ops/paths";
import { PLATFORM_AUTHOR } from "../../program/platform";
import { publishFromDir } from "../../release/publish";
import { RunnerError } from "../errors";
import type { OpsRepoPort } from "../runner";

/** An OpsRepoPort on a git remote. */
export class GitOpsRepo implements OpsRepoPort {
    constructor(private readonly remote: () => Promise<string>) {}

    /** The ops repo named by the platform stack's outputs. */
    static fromPlatform(outputs: () => Promise<Record<string, unknown>>, env: NodeJS.ProcessEnv = process.env): GitOpsRepo {
        return new GitOpsRepo(async () => {
            const o = await outputs();
            const ops = (o.repositories as { ops?: string } | undefined)?.ops;
            if (!ops) throw new RunnerError("not-found", "the platform stack has no ops repository output: run pulumi up on stack platform");
            if (o.gitHost === "github") {
                if (!env.GITHUB_TOKEN) throw new RunnerError("invalid", "GITHUB_TOKEN is required to write to the GitHub ops repository");
                return tokenRemote(ops, env.GITHUB_TOKEN);
            }
            return ops;
        });
    }

    async isPublished(app: string, version: string): Promise<boolean> {
        const file = `${opsPaths.release(app, version)}bundle.json`;
        const { files } = await readFiles(await this.remote(), "main", [file]);
        return file in files;
    }

    async stageFiles(stage: string, releases: StageReleases): Promise<Record<string, [string | undefined, string]>> {
        const remote = await this.remote();
        const after = stageFiles(stage, releases, await findReleases(remote, stage, releases));
        const { files: before } = await readFiles(remote, "main", Object.keys(after));
        return Object.fromEntries(Object.entries(after).map(([p, content]) => [p, [before[p], content]]));
    }

    async publish(dir: string, meta: { app: string; version: string; image: string; source: { commit: string; ciRunUrl?: string } }, requestId: string) {
        return publishFromDir(await this.remote(), dir, meta, PLATFORM_AUTHOR, requestId);
    }
}
