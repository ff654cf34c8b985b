/**
 * The providers of our git resources (resources.ts), loaded by path by Pulumi's dynamic-provider
 * host (src/program/module-provider.ts). Like the git engine, this module imports only Node
 * built-ins and modules of ours that do too: the host runs plain Node.js and loads it at every
 * engine run that touches one of these resources.
 */
import * as fs from "node:fs";

import type * as pulumi from "@pulumi/pulumi";

import * as e from "./engine";

interface State {
    remote: string;
    branch: string;
    files: Record<string, string>;
    mode: "seed" | "own";
    scope: string[];
    keep: string[];
    message: string;
    author: { name: string; email: string };
    pushAs?: e.PushAs;
    /** Digest of `files` as last written. */
    digest: string;
    /** Digest of what the branch holds (differs from `digest` after a hand edit). */
    observed: string;
    /** Managed paths that differ from the intended content (empty when in sync). */
    drifted: string[];
    /** The commit of the last change, or the head the files were found in. */
    commit: string;
}

/** The provider of `GitFiles`. */
export function gitFiles(): pulumi.dynamic.ResourceProvider {
    // Which kinds of credential a PushAs holds (never their values): compared by the diff.
    const standing = (as: e.PushAs | undefined): string => [as?.token ? "token" : "", as?.checks ? "checks" : ""].join(",");
    const write = async (s: State): Promise<State> => {
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
            const seen = await e.observedDigest(props.remote, props.branch, props.mode, props.files, props.scope ?? [], props.keep ?? []);
            return { id, props: { ...props, observed: seen.digest, drifted: seen.differing } };
        },
        async delete(_id: string, props: State) {
            if (props.mode !== "own") return;
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

interface BareState {
    path: string;
    defaultBranch: string;
    /** The protection of main (absent in states written before it existed). */
    protection?: e.BareProtection;
    /** Whether this resource created the folder (only then does delete remove it). */
    created: boolean;
}

/** The provider of `LocalBareRepository`. */
export function bareRepository(): pulumi.dynamic.ResourceProvider {
    return {
        async create(inputs: BareState) {
            const existed = fs.existsSync(`${inputs.path}/HEAD`);
            await e.ensureBareRepository(inputs.path, inputs.defaultBranch);
            if (inputs.protection) await e.protectBareRepository(inputs.path, inputs.protection);
            return { id: inputs.path, outs: { ...inputs, created: !existed } };
        },
        async diff(_id: string, olds: BareState, news: BareState) {
            const replaces = olds.path !== news.path || olds.defaultBranch !== news.defaultBranch ? ["path"] : [];
            const protection = JSON.stringify(olds.protection ?? null) !== JSON.stringify(news.protection ?? null);
            return { changes: replaces.length > 0 || protection, replaces };
        },
        async update(_id: string, olds: BareState, news: BareState) {
            if (news.protection) await e.protectBareRepository(news.path, news.protection);
            return { outs: { ...news, created: olds.created } };
        },
        async read(id: string, props: BareState) {
            // A repository removed behind our back disappears from the state on refresh.
            return fs.existsSync(`${id}/HEAD`) ? { id, props } : { id: "", props: {} };
        },
        async delete(id: string, props: BareState) {
            if (props.created) fs.rmSync(id, { recursive: true, force: true });
        },
    };
}
