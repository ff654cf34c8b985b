/**
 * `GitFiles`: a set of files on a branch of a git remote, written as one commit per update
 * (a Pulumi dynamic resource). Refresh reads the branch back and reports hand edits as drift;
 * the next update writes the intended files again.
 */
import * as pulumi from "@pulumi/pulumi";

import { ModuleProvidedResource } from "../program/module-provider";
import type * as Engine from "./engine";

/** Where the providers of these resources are (loaded by path by the dynamic-provider host). */
const PROVIDERS = "src/git/providers";

/** Inputs of {@link GitFiles}. */
export interface GitFilesArgs {
    /** Remote URL or path. Mark it secret when it carries credentials. */
    readonly remote: pulumi.Input<string>;
    readonly branch: pulumi.Input<string>;
    /** Repository path -> content. */
    readonly files: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** "seed": create absent files only; "own": make `scope` hold exactly `files` (except `keep`). */
    readonly mode: "seed" | "own";
    /** Path prefixes this resource owns (mode "own"); other files under them are removed. */
    readonly scope?: pulumi.Input<pulumi.Input<string>[]>;
    /** Path prefixes never touched, e.g. operator-owned secrets. */
    readonly keep?: pulumi.Input<pulumi.Input<string>[]>;
    /** Commit message of the next commit (subject, body and trailers). */
    readonly message: pulumi.Input<string>;
    readonly author: pulumi.Input<{ name: pulumi.Input<string>; email: pulumi.Input<string> }>;
    /**
     * The runner's standing on a protected branch (Engine.PushAs); secret. Only its kind is part of
     * the diff: a new token alone makes no commit, and the next commit uses it.
     */
    readonly pushAs?: pulumi.Input<Engine.PushAs>;
}

/** Files on a branch, one commit per change. */
export class GitFiles extends ModuleProvidedResource {
    /** The commit of the last change (or the head the files were found in). */
    declare readonly commit: pulumi.Output<string>;
    /** Digest of the intended files as last written. */
    declare readonly digest: pulumi.Output<string>;
    /** Managed paths found different from what was written (filled by refresh). */
    declare readonly drifted: pulumi.Output<string[]>;

    constructor(name: string, args: GitFilesArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            { module: PROVIDERS, factory: "gitFiles" },
            name,
            {
                ...args,
                pushAs: args.pushAs === undefined ? undefined : pulumi.secret(args.pushAs),
                scope: args.scope ?? [],
                keep: args.keep ?? [],
                commit: undefined,
                digest: undefined,
                observed: undefined,
                drifted: undefined,
            },
            { ...opts, additionalSecretOutputs: ["remote", "pushAs"] },
            "gitops-stages-git",
            "GitFiles",
        );
    }
}

/** Inputs of {@link LocalBareRepository}. */
export interface LocalBareRepositoryArgs {
    /** Folder of the bare repository. */
    readonly path: pulumi.Input<string>;
    readonly defaultBranch: pulumi.Input<string>;
    /** The protection of main its pre-receive hook enforces (see protectBareRepository). */
    readonly protection?: pulumi.Input<{ role: "dev" | "ops"; runnerTokenSha256?: pulumi.Input<string> }>;
}

/** A bare git repository in a folder (the `local` git host). Destroy removes it if this resource created it. */
export class LocalBareRepository extends ModuleProvidedResource {
    /** Folder of the repository (also its clone URL). */
    declare readonly path: pulumi.Output<string>;

    constructor(name: string, args: LocalBareRepositoryArgs, opts?: pulumi.CustomResourceOptions) {
        super({ module: PROVIDERS, factory: "bareRepository" }, name, { ...args, created: undefined }, opts, "gitops-stages-git", "LocalBareRepository");
    }
}
