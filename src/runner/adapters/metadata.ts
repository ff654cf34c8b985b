/**
 * Update metadata: the environment that makes Pulumi record each update as the promotion it is
 * (what `pulumi stack history` and Pulumi Cloud show per update).
 */
import * as path from "node:path";

import type { UpdateMetadata } from "../ports";

/** The variables {@link metadataEnv} sets; each update sets them afresh, so one update's never reach the next. */
export const METADATA_VARS = [
    "PULUMI_CI_SYSTEM",
    "PULUMI_CI_BUILD_ID",
    "PULUMI_CI_BUILD_TYPE",
    "PULUMI_CI_BUILD_URL",
    "PULUMI_PR_NUMBER",
    "PULUMI_GIT_HEAD",
    "PULUMI_GIT_COMMITTER",
    "PULUMI_VCS_REPO_OWNER",
    "PULUMI_VCS_REPO_NAME",
    "PULUMI_VCS_REPO_KIND",
] as const;

/**
 * The environment that makes Pulumi record an update as the promotion it is. Pulumi reads the
 * generic CI variables (`PULUMI_CI_*`, `PULUMI_PR_NUMBER`) always, ahead of any CI it detects, and
 * the `PULUMI_GIT_*` and `PULUMI_VCS_*` ones only when no git repository encloses the workspace
 * (which `prepareProjectCopy` sees to). So `git.head` is the dev repo's source commit, `vcs.*` the
 * dev repo, `git.committer` the principal that asked, `ci.build.url` the CI run, `ci.build.id` the
 * request id and `ci.pr.number` the merge request. The source commit's author is not known here, so
 * `git.author` stays unset rather than naming the wrong person.
 */
export function metadataEnv(m: UpdateMetadata, devRepoUrl?: string): Record<string, string> {
    const env: Record<string, string> = { PULUMI_CI_SYSTEM: "gitops-stages", PULUMI_CI_BUILD_ID: m.requestId, PULUMI_CI_BUILD_TYPE: m.kind, PULUMI_GIT_COMMITTER: m.requester };
    if (m.ciRunUrl) env.PULUMI_CI_BUILD_URL = m.ciRunUrl;
    if (m.mr !== undefined) env.PULUMI_PR_NUMBER = String(m.mr);
    if (m.sourceCommit) env.PULUMI_GIT_HEAD = m.sourceCommit;
    const repo = devRepoUrl ? vcsOf(devRepoUrl) : undefined;
    if (repo?.kind) env.PULUMI_VCS_REPO_KIND = repo.kind;
    if (repo?.owner) env.PULUMI_VCS_REPO_OWNER = repo.owner;
    if (repo?.name) env.PULUMI_VCS_REPO_NAME = repo.name;
    // What is not known is set empty, which Pulumi reads as unset: a value the runner's own
    // environment carries (a CI's PULUMI_PR_NUMBER, say) must not describe this update.
    for (const k of METADATA_VARS) env[k] ??= "";
    return env;
}

/** Host, owner and name of a repository URL (`https://host/owner/name.git`, `git@host:owner/name`), or the name of a local one. */
export function vcsOf(url: string): { kind?: string; owner?: string; name: string } {
    const m = /^(?:[a-z+]+:\/\/(?:[^@/]*@)?([^/:]+)(?::\d+)?\/|[^@/]+@([^:/]+):)(?:(.+)\/)?([^/]+?)(?:\.git)?\/?$/.exec(url);
    if (m && !url.startsWith("file:")) return { kind: m[1] ?? m[2], ...(m[3] ? { owner: m[3] } : {}), name: m[4] };
    return { kind: "local", name: path.basename(url.replace(/^file:\/\//, "").replace(/\/+$/, "")).replace(/\.git$/, "") };
}

