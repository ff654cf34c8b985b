/**
 * `GitFiles`: a set of files on a branch of a git remote, written as one commit per update
 * (a Pulumi dynamic resource). Refresh reads the branch back and reports hand edits as drift;
 * the next update writes the intended files again.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";

import type * as Engine from "./engine";

/**
 * Path of the compiled git engine. Pulumi's dynamic-provider host runs plain Node.js without a
 * TypeScript loader, so the provider's methods load the compiled module by path instead of
 * capturing our TypeScript modules in their serialized closures.
 */
export function enginePath(): string {
    if (__filename.endsWith(".js")) return path.join(__dirname, "engine.js");
    const compiled = path.resolve(__dirname, "..", "..", "dist", "src", "git", "engine.js");
    if (!fs.existsSync(compiled)) {
        throw new Error(`${compiled} is missing: run \`npm run build\` (or either README command) before \`pulumi up\``);
    }
    return compiled;
}

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

interface State {
    remote: string;
    branch: string;
    files: Record<string, string>;
    mode: "seed" | "own";
    scope: string[];
    keep: string[];
    message: string;
    author: { name: string; email: string };
    pushAs?: Engine.PushAs;
    /** Digest of `files` as last written. */
    digest: string;
    /** Digest of what the branch holds (differs from `digest` after a hand edit). */
    observed: string;
    /** Managed paths that differ from the intended content (empty when in sync). */
    drifted: string[];
    /** The commit of the last change, or the head the files were found in. */
    commit: string;
}

function makeProvider(engine: string): pulumi.dynamic.ResourceProvider {
    // Which kinds of credential a PushAs holds (never their values): compared by the diff.
    const standing = (as: Engine.PushAs | undefined): string => [as?.token ? "token" : "", as?.checks ? "checks" : ""].join(",");
    // Loaded by path at run time: see enginePath().
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = (): typeof Engine => require(engine);
    const write = async (s: State): Promise<State> => {
        const e = load();
        const result = await e.commitFiles({
            remote: s.remote,
            branch: s.branch,
            message: s.message,
            author: s.author,
            pushAs: s.pushAs,
            compute: (head) => e.computeChange(head, s.mode, s.files, s.scope ?? [], s.keep ?? []),
        });
        const digest = e.filesDigest(s.files);
        return { ...s, digest, observed: digest, drifted: [], commit: result.commit ?? result.parent ?? "" };
    };
    return {
        async create(inputs: State) {
            const outs = await write(inputs);
            return { id: `${inputs.branch}:${(inputs.scope ?? []).join(",") || "/"}`, outs };
        },
        async diff(_id: string, olds: State, news: State) {
            const e = load();
            const replaces = ["remote", "branch", "mode"].filter((k) => JSON.stringify(olds[k as keyof State]) !== JSON.stringify(news[k as keyof State]));
            const intended = e.filesDigest(news.files);
            const changed =
                replaces.length > 0 ||
                intended !== olds.digest ||
                olds.observed !== olds.digest ||
                JSON.stringify(olds.scope ?? []) !== JSON.stringify(news.scope ?? []) ||
                JSON.stringify(olds.keep ?? []) !== JSON.stringify(news.keep ?? []) ||
                // A state without the credential a protected branch now asks for (written before the
                // protection existed) takes it in an update that commits nothing, so that a later
                // destroy can push its removal.
                standing(olds.pushAs) !== standing(news.pushAs);
            return { changes: changed, replaces, deleteBeforeReplace: false };
        },
        async update(_id: string, _olds: State, news: State) {
            return { outs: await write(news) };
        },
        async read(id: string, props: State) {
            const e = load();
            const seen = await e.observedDigest(props.remote, props.branch, props.mode, props.files, props.scope ?? [], props.keep ?? []);
            return { id, props: { ...props, observed: seen.digest, drifted: seen.differing } };
        },
        async delete(_id: string, props: State) {
            if (props.mode !== "own") return;
            const e = load();
            await e.commitFiles({
                remote: props.remote,
                branch: props.branch,
                message: `Remove files managed by gitops-stages (${(props.scope ?? []).join(", ")})`,
                author: props.author,
                pushAs: props.pushAs,
                compute: (head) => e.computeChange(head, "own", {}, props.scope ?? [], props.keep ?? []),
            });
        },
    };
}

/** Files on a branch, one commit per change. */
export class GitFiles extends pulumi.dynamic.Resource {
    /** The commit of the last change (or the head the files were found in). */
    declare readonly commit: pulumi.Output<string>;
    /** Digest of the intended files as last written. */
    declare readonly digest: pulumi.Output<string>;
    /** Managed paths found different from what was written (filled by refresh). */
    declare readonly drifted: pulumi.Output<string[]>;

    constructor(name: string, args: GitFilesArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            makeProvider(enginePath()),
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

interface BareState {
    path: string;
    defaultBranch: string;
    /** The protection of main (absent in states written before it existed). */
    protection?: Engine.BareProtection;
    /** Whether this resource created the folder (only then does delete remove it). */
    created: boolean;
}

function makeBareProvider(engine: string): pulumi.dynamic.ResourceProvider {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = (): typeof Engine => require(engine);
    return {
        async create(inputs: BareState) {
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            const fsm = require("fs") as typeof fs;
            const existed = fsm.existsSync(`${inputs.path}/HEAD`);
            await load().ensureBareRepository(inputs.path, inputs.defaultBranch);
            if (inputs.protection) await load().protectBareRepository(inputs.path, inputs.protection);
            return { id: inputs.path, outs: { ...inputs, created: !existed } };
        },
        async diff(_id: string, olds: BareState, news: BareState) {
            const replaces = olds.path !== news.path || olds.defaultBranch !== news.defaultBranch ? ["path"] : [];
            const protection = JSON.stringify(olds.protection ?? null) !== JSON.stringify(news.protection ?? null);
            return { changes: replaces.length > 0 || protection, replaces };
        },
        async update(_id: string, olds: BareState, news: BareState) {
            if (news.protection) await load().protectBareRepository(news.path, news.protection);
            return { outs: { ...news, created: olds.created } };
        },
        async read(id: string, props: BareState) {
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            const fsm = require("fs") as typeof fs;
            // A repository removed behind our back disappears from the state on refresh.
            return fsm.existsSync(`${id}/HEAD`) ? { id, props } : { id: "", props: {} };
        },
        async delete(id: string, props: BareState) {
            // eslint-disable-next-line @typescript-eslint/no-require-imports
            const fsm = require("fs") as typeof fs;
            if (props.created) fsm.rmSync(id, { recursive: true, force: true });
        },
    };
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
export class LocalBareRepository extends pulumi.dynamic.Resource {
    /** Folder of the repository (also its clone URL). */
    declare readonly path: pulumi.Output<string>;

    constructor(name: string, args: LocalBareRepositoryArgs, opts?: pulumi.CustomResourceOptions) {
        super(makeBareProvider(enginePath()), name, { ...args, created: undefined }, opts, "gitops-stages-git", "LocalBareRepository");
    }
}
