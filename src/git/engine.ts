/**
 * Git plumbing over the git CLI: read a branch's files and write one commit to it, without a
 * working tree and without force. This module imports only Node built-ins and modules of ours
 * that do too (no npm package), because Pulumi's dynamic-provider host loads it by path (see
 * resources.ts).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { COMMIT } from "../config/validate";
import { GitHubError, GitHubRest } from "../github/rest";
import { formatProblems, validateOpsChange } from "../program/ops/validate";

/** A git failure; `reason` is what the host said, with credentials removed. */
export class GitError extends Error {
    constructor(
        message: string,
        readonly reason: string,
    ) {
        super(`${message}: ${reason}`);
        this.name = "GitError";
    }
}

/** A commit author or committer. */
export interface Person {
    readonly name: string;
    readonly email: string;
}

/** The change to make, computed from the branch's current files. */
export interface Change {
    /** Files to create or replace: repository path -> content. */
    readonly writes: Readonly<Record<string, string>>;
    /** Files to remove. */
    readonly deletes: readonly string[];
}

/** Read access to the branch head the change is computed on. */
export interface Head {
    /** Commit id, or undefined for a branch that does not exist yet. */
    readonly commit: string | undefined;
    /** Every file path at the head. */
    readonly paths: readonly string[];
    /** Content of a file at the head, or undefined when absent. */
    read(file: string): Promise<string | undefined>;
    /** Contents of several files at once (absent ones left out). */
    readMany(files: readonly string[]): Promise<Record<string, string>>;
}

/** What to commit. */
export interface CommitRequest {
    /** Remote URL or path; may carry credentials, which never appear in errors. */
    readonly remote: string;
    readonly branch: string;
    /** Called on each attempt's head; return undefined for "nothing to do". */
    readonly compute: (head: Head) => Promise<Change | undefined>;
    readonly message: string;
    readonly author: Person;
    /**
     * How long to keep trying when the branch moves between our read and our push (default 60 s);
     * each retry recomputes on the new head, after a growing, jittered pause.
     */
    readonly retryForMs?: number;
    /** At most this many attempts, whatever the time (default: no limit but the time). */
    readonly maxAttempts?: number;
    /** Called after a rejected push, before recomputing (tests use it to observe retries). */
    readonly onRetry?: (attempt: number, reason: string) => void;
    /** Who pushes, where the host's protection of the branch asks for it (see {@link PushAs}). */
    readonly pushAs?: PushAs;
}

/**
 * The runner's standing on a protected ops `main` (docs/protection.md).
 *
 * - `token`: the local git host's pre-receive hook lets only the runner push to ops `main`; the
 *   runner proves it with this token, sent as the push option `gitops-stages-token`.
 * - `checks`: GitHub requires the `validate` status on a commit before it may land on `main`. The
 *   runner runs that check's rules on its own commit, pushes the commit to a side branch (a status
 *   needs the commit on GitHub), reports `validate` as passed, pushes `main`, and removes the side
 *   branch.
 */
export interface PushAs {
    readonly token?: string;
    readonly checks?: {
        /** GitHub's REST API root, e.g. https://api.github.com. */
        readonly api: string;
        /** `owner/name` of the repository. */
        readonly repository: string;
        /** Token allowed to write commit statuses; never logged. */
        readonly token: string;
    };
}

/** Name of the push option the local host's hook reads the runner's push token from. */
export const PUSH_OPTION = "gitops-stages-token";

/**
 * Environment that makes `git push` send the runner's token as a push option. Passed as git
 * configuration in the environment (GIT_CONFIG_COUNT, git 2.31+), never on the command line, where
 * any user of the machine could read it.
 */
export function pushEnv(as: PushAs | undefined, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv | undefined {
    if (!as?.token) return undefined;
    // Appended to configuration the environment may already carry, which stays in effect.
    const n = Number.parseInt(base.GIT_CONFIG_COUNT ?? "0", 10) || 0;
    return { GIT_CONFIG_COUNT: String(n + 1), [`GIT_CONFIG_KEY_${n}`]: "push.pushOption", [`GIT_CONFIG_VALUE_${n}`]: `${PUSH_OPTION}=${as.token}` };
}

/** The side branch a commit waits on while its `validate` status is reported (GitHub only). */
export function checkBranch(commit: string): string {
    return `gitops-stages/validate/${commit}`;
}

/** Result of {@link commitFiles}. */
export interface CommitResult {
    /** The new commit, or undefined when the change was empty. */
    readonly commit: string | undefined;
    /** The branch head the change was computed on. */
    readonly parent: string | undefined;
    readonly attempts: number;
    /** Paths written and removed by the commit. */
    readonly changed: readonly string[];
}

/** Removes user:password@ from URLs in a text. */
export function redact(text: string): string {
    return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, "$1***@");
}

interface RunResult {
    code: number;
    stdout: Buffer;
    stderr: string;
}

/**
 * Arguments and environment with the credentials of remote URLs (`https://user:token@host/...`)
 * moved out of the command line, where any user of the machine could read them (`ps`), into an
 * `Authorization` header git sends to that URL only, given as configuration in the environment.
 */
export function credentialsOutOfArgv(args: readonly string[], env: NodeJS.ProcessEnv): { args: string[]; env: NodeJS.ProcessEnv } {
    let n = Number.parseInt(env.GIT_CONFIG_COUNT ?? "0", 10) || 0;
    const extra: NodeJS.ProcessEnv = {};
    const seen = new Set<string>();
    const decode = (s: string) => {
        try {
            return decodeURIComponent(s);
        } catch {
            return s;
        }
    };
    const out = args.map((arg) => {
        if (!/^https?:\/\/[^/@\s]+@/i.test(arg)) return arg;
        const u = new URL(arg);
        const basic = Buffer.from(`${decode(u.username)}:${decode(u.password)}`).toString("base64");
        u.username = "";
        u.password = "";
        const bare = u.toString();
        // One header per URL, however often the command names it.
        if (!seen.has(bare)) {
            seen.add(bare);
            extra[`GIT_CONFIG_KEY_${n}`] = `http.${bare}.extraHeader`;
            extra[`GIT_CONFIG_VALUE_${n}`] = `Authorization: Basic ${basic}`;
            n++;
        }
        return bare;
    });
    return { args: out, env: Object.keys(extra).length ? { ...env, ...extra, GIT_CONFIG_COUNT: String(n) } : env };
}

function git(rawArgs: readonly string[], opts: { cwd: string; input?: string | Buffer; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
    const { args, env } = credentialsOutOfArgv(rawArgs, { ...process.env, ...opts.env });
    return new Promise((resolve, reject) => {
        const child = spawn("git", args, {
            cwd: opts.cwd,
            env: {
                ...env,
                // Never ask a terminal for credentials: fail with the host's reason instead.
                GIT_TERMINAL_PROMPT: "0",
                GIT_CONFIG_NOSYSTEM: "1",
                LC_ALL: "C",
            },
            stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout?.on("data", (b: Buffer) => out.push(b));
        child.stderr?.on("data", (b: Buffer) => err.push(b));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8") }));
        if (opts.input !== undefined && child.stdin) {
            // A git that exits before reading its input reports its own error; ignore the broken pipe.
            child.stdin.on("error", () => undefined);
            child.stdin.end(opts.input);
        }
    });
}

async function gitOk(args: readonly string[], what: string, opts: { cwd: string; input?: string | Buffer; env?: NodeJS.ProcessEnv }): Promise<string> {
    const r = await git(args, opts);
    if (r.code !== 0) throw new GitError(what, redact(r.stderr.trim() || `git exited ${r.code}`));
    return r.stdout.toString("utf8");
}

/**
 * Environment variable holding where this process reaches repositories named otherwise in state
 * and outputs: a JSON object of remote -> URL. The platform names the local host's ops repo by its
 * folder (and stage states keep that name: a changed remote would replace the stage's writer); a
 * runner on another machine reaches the same repository over the network (`$GITOPS_STAGES_OPS_URL`,
 * see docs/scale.md). Read from the environment because the ops repo writer runs in the Pulumi
 * provider's own process, which inherits it. Like git's `url.<base>.insteadOf`, but exact and
 * applied before the local-folder shortcut, so a mapped remote is never read from a path.
 */
export const REMOTES_VAR = "GITOPS_STAGES_GIT_REMOTES";

let remotesCache: { raw: string; map: Record<string, string> } | undefined;

/** The URL this process reaches `remote` at: its entry in {@link REMOTES_VAR}, else itself. */
export function reachable(remote: string, env: NodeJS.ProcessEnv = process.env): string {
    const raw = env[REMOTES_VAR];
    if (!raw) return remote;
    if (remotesCache?.raw !== raw) {
        let map: Record<string, string> = {};
        try {
            const parsed = JSON.parse(raw) as unknown;
            if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) map = Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === "string"));
        } catch {
            // Set by the runner only (never by hand): an unreadable value maps nothing.
        }
        remotesCache = { raw, map };
    }
    const key = remote.startsWith("file://") ? remote.slice("file://".length) : remote;
    return remotesCache.map[key] ?? remotesCache.map[remote] ?? remote;
}

/** The folder of a bare repository on this machine that `remote` names, or undefined for a URL. */
export function localRepository(remote: string): string | undefined {
    const p = remote.startsWith("file://") ? remote.slice("file://".length) : remote;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(p) || /^[^/]+@[^/]+:/.test(p)) return undefined;
    return path.isAbsolute(p) && fs.existsSync(path.join(p, "HEAD")) && fs.existsSync(path.join(p, "objects")) ? p : undefined;
}

/** A scratch repository used to talk to one remote; removed by `dispose`. */
class Scratch {
    readonly dir: string;
    readonly env: NodeJS.ProcessEnv;

    constructor(dir?: string) {
        this.dir = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-git-"));
        this.env = { GIT_INDEX_FILE: path.join(this.dir, "index.scratch") };
    }

    /** A read-only view of an existing repository (never init, written or disposed). */
    static view(dir: string): Scratch {
        return new Scratch(dir);
    }

    async init(): Promise<void> {
        await gitOk(["init", "-q", "--bare", "."], "git init", { cwd: this.dir });
    }

    /** Fetches the branch; returns its commit or undefined when the remote has no such branch. */
    async fetch(remote: string, branch: string, depth = 1): Promise<string | undefined> {
        // Only the branch's tip is needed to read or to commit on top of it: a shallow fetch keeps
        // the cost independent of the repository's history.
        const r = await git(["fetch", "-q", "--no-tags", `--depth=${depth}`, remote, `+refs/heads/${branch}:refs/remotes/origin/${branch}`], { cwd: this.dir });
        if (r.code !== 0) {
            if (/couldn't find remote ref|could not find remote ref/i.test(r.stderr)) return undefined;
            throw new GitError(`cannot fetch ${branch}`, redact(r.stderr.trim()));
        }
        return (await gitOk(["rev-parse", `refs/remotes/origin/${branch}`], "rev-parse", { cwd: this.dir })).trim();
    }

    async head(commit: string | undefined): Promise<Head> {
        const paths = commit
            ? (await gitOk(["ls-tree", "-r", "-z", "--name-only", commit], "ls-tree", { cwd: this.dir })).split("\0").filter(Boolean)
            : [];
        const present = new Set(paths);
        return {
            commit,
            paths,
            read: async (file: string) => {
                if (!commit || !present.has(file)) return undefined;
                return gitOk(["cat-file", "blob", `${commit}:${file}`], `read ${file}`, { cwd: this.dir });
            },
            readMany: async (files: readonly string[]) => {
                const wanted = commit ? files.filter((f) => present.has(f)) : [];
                if (!wanted.length) return {};
                // One process for every file: `cat-file --batch` answers "<id> <type> <size>\n<content>\n" per line asked.
                const out = (await git(["cat-file", "--batch"], { cwd: this.dir, input: wanted.map((f) => `${commit}:${f}\n`).join("") })).stdout;
                const result: Record<string, string> = {};
                let at = 0;
                for (const f of wanted) {
                    const eol = out.indexOf(10, at);
                    const header = out.subarray(at, eol).toString("utf8").split(" ");
                    if (header[1] === "missing" || header.length < 3) throw new GitError(`read ${f}`, "missing from the fetched commit");
                    const size = Number(header[2]);
                    result[f] = out.subarray(eol + 1, eol + 1 + size).toString("utf8");
                    at = eol + 1 + size + 1;
                }
                return result;
            },
        };
    }

    /** Builds the tree of `parent` plus `change`; returns the tree id and the paths actually changed. */
    async tree(parent: string | undefined, change: Change, head: Head): Promise<{ tree: string; changed: string[] }> {
        fs.rmSync(this.env.GIT_INDEX_FILE!, { force: true });
        const o = { cwd: this.dir, env: this.env };
        if (parent) await gitOk(["read-tree", parent], "read-tree", o);
        else await gitOk(["read-tree", "--empty"], "read-tree", o);
        const changed: string[] = [];
        // Few processes per attempt, whatever the number of files: the time between our read and
        // our push is the window in which another writer makes us start again.
        const writes = Object.entries(change.writes).sort(([a], [b]) => a.localeCompare(b));
        const current = await head.readMany(writes.map(([file]) => file));
        const wanted = writes.filter(([file, content]) => current[file] !== content);
        if (wanted.length > 0) {
            const staged = path.join(this.dir, "staged-blobs");
            fs.rmSync(staged, { recursive: true, force: true });
            fs.mkdirSync(staged);
            const paths = wanted.map(([, content], i) => {
                const p = path.join(staged, String(i));
                fs.writeFileSync(p, content);
                return p;
            });
            const blobs = (await gitOk(["hash-object", "-w", "--no-filters", "--stdin-paths"], `store ${wanted.length} file(s)`, { ...o, input: paths.join("\n") + "\n" })).trim().split("\n");
            fs.rmSync(staged, { recursive: true, force: true });
            if (blobs.length !== wanted.length) throw new GitError("store files", `git stored ${blobs.length} of ${wanted.length} files`);
            const info = wanted.map(([file], i) => `100644 ${blobs[i]}\t${file}\0`).join("");
            await gitOk(["update-index", "-z", "--add", "--index-info"], `stage ${wanted.map(([f]) => f).join(", ")}`, { ...o, input: info });
            changed.push(...wanted.map(([file]) => file));
        }
        const removals = [...change.deletes].sort().filter((file) => head.paths.includes(file));
        if (removals.length > 0) {
            // Mode 0 removes an entry; unlike --force-remove this needs no work tree.
            const info = removals.map((file) => `0 ${"0".repeat(40)}\t${file}\n`).join("");
            await gitOk(["update-index", "--index-info"], `remove ${removals.join(", ")}`, { ...o, input: info });
            changed.push(...removals);
        }
        const tree = (await gitOk(["write-tree"], "write-tree", o)).trim();
        return { tree, changed };
    }

    async commit(tree: string, parent: string | undefined, message: string, author: Person): Promise<string> {
        const args = ["commit-tree", tree, ...(parent ? ["-p", parent] : []), "-F", "-"];
        const env = {
            GIT_AUTHOR_NAME: author.name,
            GIT_AUTHOR_EMAIL: author.email,
            GIT_COMMITTER_NAME: author.name,
            GIT_COMMITTER_EMAIL: author.email,
        };
        return (await gitOk(args, "commit-tree", { cwd: this.dir, env, input: message })).trim();
    }

    /** Pushes without force. Returns "ok", "moved" (someone else pushed first) or throws the host's reason. */
    async push(remote: string, commit: string, branch: string, as?: PushAs): Promise<"ok" | "moved"> {
        const r = await git(["push", "--porcelain", remote, `${commit}:refs/heads/${branch}`], { cwd: this.dir, env: pushEnv(as) });
        if (r.code === 0) return "ok";
        const text = `${r.stdout.toString("utf8")}\n${r.stderr}`;
        if (/non-fast-forward|fetch first|\[rejected\].*(stale|behind)|cannot lock ref|incorrect old value/i.test(text)) return "moved";
        throw new GitError(`push to ${branch} refused`, redact(r.stderr.trim() || text.trim()));
    }

    dispose(): void {
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/**
 * Writes one commit to `branch` of `remote`: computes the change on the current head, commits it
 * as a single commit and pushes without force. If the branch moved meanwhile, fetches the new head
 * and computes again, so nobody's commit is lost. An empty change makes no commit.
 */
export async function commitFiles(request: CommitRequest): Promise<CommitResult> {
    const req = { ...request, remote: reachable(request.remote) };
    const max = req.maxAttempts ?? Number.POSITIVE_INFINITY;
    const started = Date.now();
    const deadline = started + (req.retryForMs ?? 60_000);
    const scratch = new Scratch();
    try {
        await scratch.init();
        for (let attempt = 1; ; attempt++) {
            const parent = await scratch.fetch(req.remote, req.branch);
            const head = await scratch.head(parent);
            const change = await req.compute(head);
            if (!change) return { commit: undefined, parent, attempts: attempt, changed: [] };
            const { tree, changed } = await scratch.tree(parent, change, head);
            if (changed.length === 0) return { commit: undefined, parent, attempts: attempt, changed };
            const commit = await scratch.commit(tree, parent, req.message, req.author);
            // A branch that does not exist yet has no protection (and on an empty GitHub repository
            // the first branch pushed becomes the default one, so no side branch may go first).
            const pushed = req.pushAs?.checks && parent
                ? await pushChecked(scratch, req.remote, commit, req.branch, change, head, req.pushAs)
                : await scratch.push(req.remote, commit, req.branch, req.pushAs);
            if (pushed === "ok") {
                return { commit, parent, attempts: attempt, changed };
            }
            // Back off with jitter, growing to a second: concurrent writers stop retrying in lockstep,
            // and a pause that is random against a busy pusher's rhythm finds its gaps.
            const pause = Math.min(1000, 25 * 2 ** Math.min(attempt - 1, 6)) * (0.5 + Math.random());
            if (attempt >= max || Date.now() + pause > deadline) {
                throw new GitError(`cannot push to ${req.branch}`, `the branch kept moving; gave up after ${attempt} attempts in ${((Date.now() - started) / 1000).toFixed(1)} s`);
            }
            req.onRetry?.(attempt, "branch moved");
            await new Promise((r) => setTimeout(r, pause));
        }
    } finally {
        scratch.dispose();
    }
}

/**
 * Pushes a commit to a branch that requires the `validate` status on GitHub (see {@link PushAs}):
 * runs the check's rules on the commit's change (a change that breaks one is refused before
 * anything is pushed), pushes the commit to its side branch, reports the status, pushes the branch,
 * and removes the side branch. Returns what the branch's push returned ("moved": recompute).
 */
async function pushChecked(scratch: Scratch, remote: string, commit: string, branch: string, change: Change, head: Head, as: PushAs): Promise<"ok" | "moved"> {
    const paths = [...Object.keys(change.writes), ...change.deletes];
    const before = await head.readMany(paths);
    const atHead = new Set(head.paths);
    const problems = validateOpsChange(
        paths.map((p) => ({ path: p, before: before[p], after: change.writes[p] })),
        (release) => atHead.has(`${release}bundle.json`),
    );
    if (problems.length > 0) throw new GitError("the commit fails the validate check", formatProblems(problems));
    if ((await scratch.push(remote, commit, checkBranch(commit), as)) !== "ok") {
        throw new GitError("cannot push the commit for its validate status", `${checkBranch(commit)} exists with another commit`);
    }
    try {
        await reportValidate(as.checks!, commit);
        return await scratch.push(remote, commit, branch, as);
    } finally {
        // A leftover side branch is harmless (it holds a commit main has or never gets), so removing
        // it is best effort: its failure must not turn a landed commit into a failed one.
        await git(["push", "-q", remote, `:refs/heads/${checkBranch(commit)}`], { cwd: scratch.dir, env: pushEnv(as) }).catch(() => undefined);
    }
}

/**
 * Reports `validate` = success on a commit, through the one GitHub client (which tries a network
 * error, a 5xx or a 429 again after 1 s, then 2 s, each call waiting at most 30 s).
 */
async function reportValidate(checks: NonNullable<PushAs["checks"]>, commit: string): Promise<void> {
    try {
        await new GitHubRest(checks.token, { redact }).commitStatus(checks, commit, {
            state: "success",
            context: "validate",
            description: "validated by the gitops-stages runner (the rules of the validate workflow)",
        });
    } catch (e) {
        throw new GitError("cannot report the validate status", e instanceof GitHubError ? e.message : String(e));
    }
}

/**
 * Runs `fn` in a repository holding the branch's last `depth` commits: a repository on this
 * machine in place (git's readers are safe next to a pusher, and nothing is copied, whatever the
 * repository's size), anything else fetched shallowly into a scratch that is removed afterwards.
 */
async function inRepository<T>(named: string, branch: string, depth: number, fn: (dir: string, commit: string | undefined) => Promise<T>): Promise<T> {
    const remote = reachable(named);
    const local = localRepository(remote);
    if (local) {
        const r = await git(["rev-parse", "--verify", "-q", `refs/heads/${branch}`], { cwd: local });
        return fn(local, r.code === 0 ? r.stdout.toString("utf8").trim() : undefined);
    }
    const scratch = new Scratch();
    try {
        await scratch.init();
        return await fn(scratch.dir, await scratch.fetch(remote, branch, depth));
    } finally {
        scratch.dispose();
    }
}

/** Runs `fn` on the head of a branch. */
function atHead<T>(remote: string, branch: string, fn: (head: Head) => Promise<T>): Promise<T> {
    return inRepository(remote, branch, 1, async (dir, commit) => fn(await Scratch.view(dir).head(commit)));
}

/** A commit as history views list it. */
export interface CommitInfo {
    readonly commit: string;
    readonly author: string;
    /** Author date, ISO 8601. */
    readonly date: string;
    readonly subject: string;
    /** The message's trailers (Requester, Request-Id, ...); the last of a repeated key wins. */
    readonly trailers: Readonly<Record<string, string>>;
}

/** A commit with what it changed. */
export interface CommitDetails extends CommitInfo {
    readonly message: string;
    /** Each changed path with git's status letter (A added, M modified, D deleted). */
    readonly files: readonly { readonly status: string; readonly path: string }[];
    /** The patch, cut at the size limit (then `truncated` is true). */
    readonly patch: string;
    readonly truncated: boolean;
}

const FIELD = "\x1f";
const RECORD = "\x1e";
const INFO_FORMAT = `--format=%H${"%x1f"}%an${"%x1f"}%aI${"%x1f"}%s${"%x1f"}%(trailers:only,unfold)${"%x1f"}%B%x1e`;

function parseCommits(out: string): (CommitInfo & { message: string })[] {
    return out
        .split(RECORD)
        .map((r) => r.replace(/^\n/, ""))
        .filter((r) => r.includes(FIELD))
        .map((r) => {
            const [commit, author, date, subject, trailerText, message] = r.split(FIELD);
            const trailers: Record<string, string> = {};
            for (const line of trailerText.split("\n")) {
                const m = /^([A-Za-z0-9-]+): (.*)$/.exec(line);
                if (m) trailers[m[1]] = m[2];
            }
            return { commit, author, date, subject, trailers, message };
        });
}

/** The newest `limit` commits of a branch that touch `prefix`, newest first (from its last `depth` commits). */
export function recentCommits(remote: string, branch: string, prefix: string, limit: number, depth = 500): Promise<CommitInfo[]> {
    return inRepository(remote, branch, depth, async (dir, head) => {
        if (!head) return [];
        const out = await gitOk(["log", `-n${limit}`, INFO_FORMAT, head, "--", prefix], "git log", { cwd: dir });
        return parseCommits(out).map(({ message: _message, ...info }) => info);
    });
}

/**
 * One commit of a branch that touches `prefix`: message, changed paths and patch (limited to
 * `prefix`, cut at `maxPatchBytes`). Undefined when the commit is not in the branch's last `depth`
 * commits or does not touch `prefix`, so a caller allowed to see one folder sees nothing else.
 */
export function commitDetails(remote: string, branch: string, commit: string, prefix: string, opts: { depth?: number; maxPatchBytes?: number } = {}): Promise<CommitDetails | undefined> {
    if (!COMMIT.test(commit)) throw new GitError("read commit", `not a commit id: ${JSON.stringify(commit)}`);
    return inRepository(remote, branch, opts.depth ?? 500, async (dir, head) => {
        if (!head) return undefined;
        const full = await git(["rev-parse", "--verify", "-q", `${commit}^{commit}`], { cwd: dir });
        if (full.code !== 0) return undefined;
        const id = full.stdout.toString("utf8").trim();
        if ((await git(["merge-base", "--is-ancestor", id, head], { cwd: dir })).code !== 0) return undefined;
        const [info] = parseCommits(await gitOk(["show", "-s", INFO_FORMAT, id], "git show", { cwd: dir }));
        const status = await gitOk(["diff-tree", "--root", "--no-commit-id", "-r", "--name-status", "-z", id, "--", prefix], "git diff-tree", { cwd: dir });
        const parts = status.split("\0").filter(Boolean);
        const files: { status: string; path: string }[] = [];
        for (let i = 0; i + 1 < parts.length; i += 2) files.push({ status: parts[i], path: parts[i + 1] });
        if (!files.length) return undefined;
        const max = opts.maxPatchBytes ?? 256 * 1024;
        const patch = (await git(["diff-tree", "--root", "--no-commit-id", "-p", id, "--", prefix], { cwd: dir })).stdout;
        return { ...info, files, patch: patch.subarray(0, max).toString("utf8"), truncated: patch.length > max };
    });
}

/** Reads files of a branch (for refresh and drift): path -> content, for the given paths only. */
export function readFiles(remote: string, branch: string, paths: readonly string[]): Promise<{ commit?: string; files: Record<string, string> }> {
    return atHead(remote, branch, async (head) => ({ commit: head.commit, files: await head.readMany(paths) }));
}

/**
 * Whether `commit` is `revision` or an ancestor of it on `branch` (the last `depth` commits are
 * searched for a remote that is not on this machine). False when either is unknown.
 */
export async function isAncestor(remote: string, branch: string, commit: string, revision: string, depth = 500): Promise<boolean> {
    if (!/^[0-9a-f]{40,64}$/.test(commit) || !/^[0-9a-f]{40,64}$/.test(revision)) return false;
    const check = (d: number) => inRepository(remote, branch, d, async (dir) => (await git(["merge-base", "--is-ancestor", commit, revision], { cwd: dir })).code === 0);
    if (await check(depth)) return true;
    // A remote fetched shallowly may hold the commit further back: look again in the whole history
    // (a repository on this machine was searched whole already).
    return localRepository(reachable(remote)) ? false : check(2_147_483_647);
}

/** Lists the files of a branch under a folder prefix (or all files). */
export function listFiles(remote: string, branch: string, prefix = ""): Promise<string[]> {
    return atHead(remote, branch, async (head) => head.paths.filter((p) => p.startsWith(prefix)));
}

/** Creates a bare repository with the given default branch; a no-op if one exists there. */
export async function ensureBareRepository(dir: string, defaultBranch: string): Promise<void> {
    if (fs.existsSync(path.join(dir, "HEAD"))) return;
    fs.mkdirSync(dir, { recursive: true });
    await gitOk(["init", "-q", "--bare", `--initial-branch=${defaultBranch}`, "."], `git init ${dir}`, { cwd: dir });
}

/**
 * The protection of `main` on the local git host, as GitHub enforces the platform's rules there
 * (docs/protection.md), in the words GitHub uses (GH006). Written as the repository's pre-receive
 * hook: a POSIX shell script, because git runs hooks as programs and a shell script starts in
 * milliseconds on every push. The runner's token is kept only as its SHA-256 in the repository's
 * config; a push proves it with the push option `gitops-stages-token=<token>`, which reaches the
 * hook over every transport (a path, git://, smart HTTP).
 */
const PRE_RECEIVE = `#!/bin/sh
# Written by gitops-stages (platform stack): the protection of main on the local git host.
# Rules (as on GitHub): deletion, non_fast_forward; on ops also required_linear_history and
# pull_request (only the runner, which proves itself with its push token, pushes directly).
# An all-zero object id (of either hash format) stands for "no commit": a new or deleted ref.
is_zero() { case "$1" in *[!0]*) return 1 ;; *) return 0 ;; esac; }
digest() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256
    else openssl dgst -sha256 -r
    fi | cut -d' ' -f1
}
role=$(git config --get gitops-stages.role)
runner=$(git config --get gitops-stages.runnerTokenSha256)
given=
i=0
while [ "$i" -lt "\${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    eval "option=\\$GIT_PUSH_OPTION_$i"
    case "$option" in ${PUSH_OPTION}=*) given=\${option#${PUSH_OPTION}=} ;; esac
    i=$((i + 1))
done
pusher=someone
if [ -n "$given" ] && [ -n "$runner" ]; then
    [ "$(printf '%s' "$given" | digest)" = "$runner" ] && pusher=runner
fi
status=0
refuse() {
    echo "error: GH006: Protected branch update failed for $1." >&2
    echo "error: $2" >&2
    status=1
}
while read -r old new ref; do
    [ "$ref" = refs/heads/main ] || continue
    if is_zero "$new"; then
        refuse "$ref" "Cannot delete this branch (rule: deletion)"
        continue
    fi
    if ! is_zero "$old" && ! git merge-base --is-ancestor "$old" "$new"; then
        refuse "$ref" "Cannot force-push to this branch (rule: non_fast_forward)"
        continue
    fi
    [ "$role" = ops ] || continue
    if is_zero "$old"; then range=$new; else range=$old..$new; fi
    if [ -n "$(git rev-list --merges "$range")" ]; then
        refuse "$ref" "This branch must not contain merge commits (rule: required_linear_history)"
    fi
    if [ "$pusher" != runner ]; then
        refuse "$ref" "Changes must be made through a pull request (rule: pull_request; only the gitops-stages runner pushes to main directly)"
    fi
done
exit $status
`;

/** Rules of {@link protectBareRepository}: the repository's role and, for ops, the runner's token digest. */
export interface BareProtection {
    readonly role: "dev" | "ops";
    /** SHA-256 (hex) of the runner's push token; required for ops. */
    readonly runnerTokenSha256?: string;
}

/** Installs (or rewrites) the protection of `main` in a bare repository of the local host. */
export async function protectBareRepository(dir: string, rules: BareProtection): Promise<void> {
    if (rules.role === "ops" && !/^[0-9a-f]{64}$/.test(rules.runnerTokenSha256 ?? "")) throw new GitError("protect ops", "the runner's token digest is missing");
    await gitOk(["config", "gitops-stages.role", rules.role], "git config", { cwd: dir });
    // The runner's token travels as a push option, which the host must accept.
    await gitOk(["config", "receive.advertisePushOptions", "true"], "git config", { cwd: dir });
    if (rules.runnerTokenSha256) await gitOk(["config", "gitops-stages.runnerTokenSha256", rules.runnerTokenSha256], "git config", { cwd: dir });
    else await git(["config", "--unset", "gitops-stages.runnerTokenSha256"], { cwd: dir });
    const hooks = path.join(dir, "hooks");
    fs.mkdirSync(hooks, { recursive: true });
    const partial = path.join(hooks, `.pre-receive.${process.pid}`);
    fs.writeFileSync(partial, PRE_RECEIVE, { mode: 0o755 });
    fs.renameSync(partial, path.join(hooks, "pre-receive"));
}

/** SHA-256 (hex) of a push token, as the local host's hook compares it. */
export function pushTokenDigest(token: string): string {
    return createHash("sha256").update(token).digest("hex");
}

/** Digest of a set of files, independent of their order: sha256 over sorted path/content pairs. */
export function filesDigest(files: Readonly<Record<string, string>>): string {
    const h = createHash("sha256");
    for (const p of Object.keys(files).sort()) {
        h.update(p);
        h.update("\0");
        h.update(files[p]);
        h.update("\0");
    }
    return h.digest("hex");
}

/** How a {@link computeChange} treats the branch's existing files. */
export type FilesMode = "seed" | "own";

/**
 * The change that makes the branch hold `files`:
 * - "seed": writes only files that are absent; never overwrites or removes (skeletons others edit later);
 * - "own": writes files that differ and removes every other file under `scope`, except under `keep`.
 */
export async function computeChange(
    head: Head,
    mode: FilesMode,
    files: Readonly<Record<string, string>>,
    scope: readonly string[],
    keep: readonly string[],
): Promise<Change | undefined> {
    const writes: Record<string, string> = {};
    for (const [p, content] of Object.entries(files)) {
        const current = await head.read(p);
        if (mode === "seed" ? current === undefined : current !== content) writes[p] = content;
    }
    const deletes =
        mode === "own"
            ? head.paths.filter(
                  (p) => scope.some((s) => p.startsWith(s)) && !keep.some((k) => p.startsWith(k)) && !(p in files),
              )
            : [];
    if (Object.keys(writes).length === 0 && deletes.length === 0) return undefined;
    return { writes, deletes };
}

/** What the branch holds of the managed files now: a digest comparable with {@link filesDigest} of the intended files. */
export async function observedDigest(
    remote: string,
    branch: string,
    mode: FilesMode,
    files: Readonly<Record<string, string>>,
    scope: readonly string[],
    keep: readonly string[],
): Promise<{ commit?: string; digest: string; differing: string[] }> {
    return atHead(remote, branch, async (head) => {
        const change = await computeChange(head, mode, files, scope, keep);
        const differing = change ? [...Object.keys(change.writes), ...change.deletes].sort() : [];
        const seen: Record<string, string> = {};
        for (const p of Object.keys(files)) {
            const c = await head.read(p);
            if (c !== undefined) seen[p] = c;
        }
        // Unexpected extra files under the scope count as a difference too.
        for (const p of change?.deletes ?? []) seen[p] = (await head.read(p)) ?? "";
        return { commit: head.commit, digest: differing.length === 0 ? filesDigest(files) : filesDigest(seen), differing };
    });
}
