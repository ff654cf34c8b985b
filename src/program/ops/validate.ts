/**
 * The ops repository's `validate` check: the rules of its layout (docs/protection.md), applied to a
 * change. Two callers run exactly this code: the `validate` workflow on operators' pull requests
 * (the compiled module is shipped into the ops repo as one script, so it may use only Node's own
 * modules), and the runner on each of its own commits before it reports the check on GitHub.
 */
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";

/** One file of a change: its content before and after (undefined where absent). */
export interface FileChange {
    readonly path: string;
    readonly before?: string;
    readonly after?: string;
}

/** A broken rule: which rule, on which path, and why. */
export interface Problem {
    readonly rule: "layout" | "immutable-release" | "sealed-secrets-only" | "json";
    readonly path: string;
    readonly message: string;
}

// Names as the platform validates them: DNS-label stages and apps, semver versions.
const NAME = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const SEMVER = "\\d+\\.\\d+\\.\\d+(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?";
const LAYOUT: readonly RegExp[] = [
    /^README\.md$/,
    /^\.github\/CODEOWNERS$/,
    /^\.github\/workflows\/[^/]+\.ya?ml$/,
    /^\.github\/gitops-stages\/[^/]+$/,
    /^releases\/\.gitkeep$/,
    new RegExp(`^releases/${NAME}/${SEMVER}/.+$`),
    new RegExp(`^environments/${NAME}/(?:Chart\\.yaml|values\\.yaml|releases\\.json|templates/sealed-secrets\\.yaml|secrets/[^/]+)$`),
];
const RELEASE = new RegExp(`^releases/${NAME}/${SEMVER}/`);
const SECRETS = new RegExp(`^environments/${NAME}/secrets/`);

/** The release folder (`releases/<app>/<version>/`) a path is in, or undefined. */
function releaseDir(p: string): string | undefined {
    return RELEASE.exec(p)?.[0];
}

/**
 * Whether a file in a secrets folder holds SealedSecrets only: every YAML document of it has the
 * top-level `apiVersion: bitnami.com/v1alpha1` and `kind: SealedSecret`, and none has a top-level
 * `stringData` or `data` (a plain Secret's values). Read line by line, without a YAML library,
 * because this module ships as one dependency-free script; top-level means not indented, and
 * values may be quoted.
 */
function sealedOnly(text: string): "ok" | "not-sealed" | "plain" {
    const docs = text.split(/^---[ \t]*$/m).filter((d) => d.split("\n").some((l) => l.trim() && !l.trim().startsWith("#")));
    if (docs.length === 0) return "not-sealed";
    for (const d of docs) {
        const top = (key: string) => new RegExp(`^${key}:[ \\t]*["']?([^"'\\s#]*)["']?[ \\t]*(?:#.*)?$`, "m").exec(d)?.[1];
        if (/^(?:stringData|data):/m.test(d) || top("kind") === "Secret") return "plain";
        if (top("kind") !== "SealedSecret" || top("apiVersion") !== "bitnami.com/v1alpha1") return "not-sealed";
    }
    return "ok";
}

/**
 * Every rule the change breaks (empty when it passes). Pure. `published` says whether a release
 * folder's `bundle.json` exists on the branch the change goes to: a published release takes no
 * change at all, not even a new file.
 */
export function validateOpsChange(changes: readonly FileChange[], published: (releaseDir: string) => boolean = () => false): Problem[] {
    const problems: Problem[] = [];
    for (const c of changes) {
        if (c.before === c.after) continue;
        const p = c.path;
        if (p.split("/").some((s) => s === "" || s === "." || s === "..") || !LAYOUT.some((r) => r.test(p))) {
            problems.push({ rule: "layout", path: p, message: "is outside the ops repo's layout (environments/<stage>/, releases/<app>/<version>/, README.md, .github/)" });
            continue;
        }
        const release = releaseDir(p);
        if (release && (c.before !== undefined || published(release))) {
            const what = c.before === undefined ? "adds a file to" : c.after === undefined ? "deletes a file of" : "rewrites a file of";
            problems.push({ rule: "immutable-release", path: p, message: `release bundles are written once; this change ${what} the published release ${release}` });
        }
        if (SECRETS.test(p) && c.after !== undefined && !p.endsWith("/.gitkeep")) {
            const verdict = /\.ya?ml$/.test(p) ? sealedOnly(c.after) : "not-sealed";
            if (verdict === "not-sealed") {
                problems.push({ rule: "sealed-secrets-only", path: p, message: "only SealedSecrets (apiVersion bitnami.com/v1alpha1, kind SealedSecret, in a .yaml file) go in a stage's secrets folder" });
            } else if (verdict === "plain") {
                problems.push({ rule: "sealed-secrets-only", path: p, message: "holds a plain Secret (kind Secret, data or stringData): seal it with `stages secret` or kubeseal" });
            }
        }
        if (p.endsWith(".json") && c.after !== undefined) {
            try {
                JSON.parse(c.after);
            } catch (e) {
                problems.push({ rule: "json", path: p, message: `is not valid JSON (${e instanceof Error ? e.message : String(e)})` });
            }
        }
    }
    return problems;
}

/** One line per problem, as the check prints it and as the runner's refusal quotes it. */
export function formatProblems(problems: readonly Problem[]): string {
    return problems.map((p) => `${p.path}: ${p.message} (rule: ${p.rule})`).join("\n");
}

function gitText(args: string[]): string {
    return execFileSync("git", args, { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
}

function blob(rev: string, file: string): string | undefined {
    try {
        return execFileSync("git", ["cat-file", "blob", `${rev}:${file}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 256 * 1024 * 1024 });
    } catch {
        return undefined;
    }
}

/**
 * The check as the workflow runs it, in a clone: `validate.js --base <rev> [--head <rev>]`
 * compares the head with its merge base with `base`. Returns the exit code (0 pass, 1 fail, 2 usage).
 */
export function validateMain(argv: readonly string[]): number {
    let values: { base?: string; head?: string };
    try {
        ({ values } = parseArgs({ args: [...argv], options: { base: { type: "string" }, head: { type: "string" } }, strict: true }));
    } catch (e) {
        process.stderr.write(`validate: ${e instanceof Error ? e.message : String(e)}\nusage: validate.js --base <rev> [--head <rev>]\n`);
        return 2;
    }
    if (!values.base) {
        process.stderr.write("validate: --base is required (the branch the change goes to, e.g. origin/main)\n");
        return 2;
    }
    const head = values.head ?? "HEAD";
    const base = gitText(["merge-base", values.base, head]).trim();
    const paths = gitText(["diff", "--no-renames", "--name-only", "-z", base, head]).split("\0").filter(Boolean);
    const atBase = new Set(gitText(["ls-tree", "-r", "-z", "--name-only", base]).split("\0").filter(Boolean));
    const problems = validateOpsChange(
        paths.map((p) => ({ path: p, before: blob(base, p), after: blob(head, p) })),
        (release) => atBase.has(`${release}bundle.json`),
    );
    if (problems.length > 0) {
        process.stderr.write(`validate: ${problems.length} problem(s) in ${paths.length} changed file(s):\n${formatProblems(problems)}\n`);
        return 1;
    }
    process.stdout.write(`validate: ${paths.length} changed file(s) follow the ops repo's rules\n`);
    return 0;
}
