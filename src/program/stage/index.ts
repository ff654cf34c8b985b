/**
 * A long-lived stage's stack: the releases that run there, written to `environments/<stage>/` of
 * the ops repo as one commit per update. The ops repo comes from the platform stack's outputs
 * (through a stack reference) unless the runner names it in the stack's config.
 */
import * as pulumi from "@pulumi/pulumi";

import type { StageConfig } from "../../config/stage";
import YAML from "yaml";

import { PushAs, listFiles, readFiles } from "../../git/engine";
import { missingSecrets, parseSecretsFile } from "../../secrets/store";
import { GitFiles } from "../../git/resources";
import type { BundleJson } from "../../release/bundle";
import { githubToken, tokenRemote } from "../github/token";
import { opsPaths } from "../ops/paths";
import { PLATFORM_AUTHOR, opsPushAs } from "../ops/push-as";
import { userError } from "../errors";
import { FoundRelease, commitMessage, stageFiles } from "./files";

/** Reads, for each release of the stage, its bundle and its values for the stage from the ops repo. */
export async function findReleases(
    remote: string,
    stage: string,
    releases: StageConfig["releases"],
): Promise<Record<string, FoundRelease>> {
    const wanted = Object.entries(releases).flatMap(([app, r]) => [
        `${opsPaths.release(app, r.version)}bundle.json`,
        `${opsPaths.release(app, r.version)}values/${stage}.yaml`,
        `${opsPaths.release(app, r.version)}values/${stage}.yml`,
    ]);
    const secretFiles = (await listFiles(remote, "main", opsPaths.secrets(stage))).filter((f) => /\.ya?ml$/.test(f));
    const { files } = await readFiles(remote, "main", [...wanted, ...secretFiles]);
    // The stage's sealed secrets, to check that every secret an app's values name is there.
    // A file that is not a SealedSecret manifest is the operators' business (Argo CD will report
    // it); it only counts as holding no secrets here.
    const available = secretFiles.flatMap((f) => {
        try {
            return files[f] === undefined ? [] : parseSecretsFile(files[f], f);
        } catch {
            return [];
        }
    });
    const found: Record<string, FoundRelease> = {};
    const problems: string[] = [];
    for (const [app, r] of Object.entries(releases)) {
        const base = opsPaths.release(app, r.version);
        const bundle = files[`${base}bundle.json`];
        if (bundle === undefined) {
            problems.push(`release ${app}@${r.version} is not published in the ops repo (${base}bundle.json is missing): publish it first`);
            continue;
        }
        const values = files[`${base}values/${stage}.yaml`] ?? files[`${base}values/${stage}.yml`];
        if (values === undefined) {
            problems.push(`release ${app}@${r.version} has no values for stage ${stage} (${base}values/${stage}.yaml is missing)`);
            continue;
        }
        found[app] = { bundle: JSON.parse(bundle) as BundleJson, values };
        problems.push(...missingSecrets(app, stage, YAML.parse(values), available));
    }
    if (problems.length) throw userError(problems.join("\n"));
    return found;
}

/** Declares a stage's stack and returns its outputs. */
export function stageProgram(stage: string, cfg: StageConfig, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
    let readRemote: pulumi.Output<string>;
    let writeRemote: pulumi.Output<string>;
    // How the runner's commits pass the protection of ops main (docs/protection.md). Only to the
    // platform's own ops repo: a remote named in the stack's config gets no credential of the
    // platform's (it may be another host, or a transport without encryption).
    let pushAs: pulumi.Output<PushAs> = pulumi.output({});
    if (cfg.opsRepo) {
        readRemote = writeRemote = pulumi.output(cfg.opsRepo);
    } else {
        const platform = new pulumi.StackReference("platform", { name: cfg.platformStack });
        pushAs = pulumi
            .all([platform.getOutput("opsPushToken"), platform.getOutput("opsChecks"), githubToken(env)])
            .apply(([opsPushToken, opsChecks, token]): PushAs => opsPushAs({ opsPushToken, opsChecks }, token) ?? {});
        const stages = platform.getOutput("stages") as pulumi.Output<{ name: string }[] | undefined>;
        const ops = (platform.requireOutput("repositories") as pulumi.Output<{ ops: string }>).apply((r) => r.ops);
        readRemote = pulumi.all([ops, stages]).apply(([url, list]) => {
            if (list && !list.some((s) => s.name === stage)) {
                throw userError(`stage ${stage} is not one of the platform's stages (${list.map((s) => s.name).join(", ")})`);
            }
            return url;
        });
        const gitHost = platform.getOutput("gitHost") as pulumi.Output<string | undefined>;
        const token = githubToken(env);
        writeRemote = pulumi.all([readRemote, gitHost, token]).apply(([url, host, t]) => (host === "github" && t ? tokenRemote(url, t) : url));
        readRemote = writeRemote;
    }
    // Failures reading the ops repo are the user's to fix (remote, credentials, unpublished release).
    const found = readRemote.apply((remote) =>
        findReleases(remote, stage, cfg.releases).catch((e: unknown) => {
            throw e instanceof pulumi.RunError ? e : userError(`cannot read the ops repo: ${e instanceof Error ? e.message : String(e)}`);
        }),
    );
    const files = found.apply((f) => stageFiles(stage, cfg.releases, f));
    const writer = new GitFiles(`ops-${stage}`, {
        remote: pulumi.secret(writeRemote),
        branch: "main",
        files,
        mode: "own",
        scope: [opsPaths.environment(stage)],
        // Operator-owned sealed secrets are never touched by promotions.
        keep: [opsPaths.secrets(stage)],
        message: commitMessage(stage, cfg.change),
        author: PLATFORM_AUTHOR,
        pushAs,
    });
    return {
        stage,
        // What runs in the stage: app -> version, bundle digest, image, hold and who put it there.
        releases: found.apply((f) =>
            Object.fromEntries(
                Object.entries(cfg.releases).map(([app, r]) => [
                    app,
                    // The full release entry, so the runner can take the stage's state from the
                    // stack's outputs (the backend), never from a local config file.
                    { ...r, digest: f[app].bundle.digest, image: f[app].bundle.image },
                ]),
            ),
        ),
        lastChange: cfg.change ?? null,
        opsCommit: writer.commit,
        drifted: writer.drifted,
    };
}
