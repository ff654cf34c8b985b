import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { defaultCacheDir } from "./cache-dir";
import { run, which } from "./exec";
import {
    Component,
    KUBERNETES_MAIN,
    Pins,
    RECIPE_REVISION,
    Recipe,
    components,
    nonLocalReplaces,
    pseudoVersion,
    parseVersion,
    versionAtLeast,
    wrapperGoMod,
    type SourcePatch,
    type ToolchainSet,
} from "./recipes";


/** Re-exported: the cache folder is also the toolchain's. */
export { defaultCacheDir };
/** Where a resolved component came from. */
export type Origin = "PATH" | "PULUMI_HOME" | "cache" | "built";

/** A component ready to use. */
export interface Resolved {
    readonly component: Component;
    /** Absolute path of the executable. */
    readonly path: string;
    readonly origin: Origin;
    /** Seconds spent building it now (0 unless origin is "built"). */
    readonly seconds: number;
}

/** The resolved toolchain. */
export interface Toolchain {
    /** A folder with `bin/` below it, the layout the Automation API's `PulumiCommand.get({ root })` expects. */
    readonly root: string;
    /** `<root>/bin`: the CLI; put it first on PATH. Plugins, shims and language host: {@link registerPlugins}. */
    readonly binDir: string;
    readonly components: readonly Resolved[];
    /** Path of the `pulumi` executable. */
    readonly pulumi: string;
    /** The set that was resolved. */
    readonly set: ToolchainSet;
    /**
     * The version the CLI reports (`pulumi version`, without the "v"): the pin for a CLI from the
     * cache (built with it stamped in), what an installed CLI answered when it was checked.
     */
    readonly cliVersion: string;
}

/** Options for {@link ensureToolchain}. */
export interface EnsureOptions {
    /** The project root (holds package.json, node_modules and toolchain/). */
    readonly projectRoot: string;
    readonly withGithub?: boolean;
    /** Which components: `engine` (default) or `tests` (also the cluster tier's servers and tools). */
    readonly set?: ToolchainSet;
    /** Cache folder; defaults to {@link defaultCacheDir}. */
    readonly cacheDir?: string;
    /** Progress lines go here; defaults to standard error. */
    readonly log?: (line: string) => void;
    /** Environment to read PULUMI_CLI, PATH and Go from. */
    readonly env?: NodeJS.ProcessEnv;
    /** Ignore a Pulumi CLI on PATH (used to test the build path). */
    readonly ignorePath?: boolean;
}

/** A toolchain problem the user must fix; the message says what to install or change. */
export class ToolchainError extends Error {
    constructor(
        message: string,
        /** Output of the failed build step, shown in full. */
        readonly detail?: string,
    ) {
        super(message);
        this.name = "ToolchainError";
    }
}


/** Reads the versions the installed npm SDKs request. */
export function readPins(projectRoot: string): Pins {
    const pkg = (name: string): { version: string; pulumi?: { name?: string; version?: string } } | undefined => {
        const file = path.join(projectRoot, "node_modules", name, "package.json");
        if (!fs.existsSync(file)) return undefined;
        return JSON.parse(fs.readFileSync(file, "utf8"));
    };
    const sdk = pkg("@pulumi/pulumi");
    if (!sdk) {
        throw new ToolchainError(`@pulumi/pulumi is not installed in ${projectRoot}: run npm ci first`);
    }
    const plugins: Record<string, string> = {};
    for (const name of ["kubernetes", "random", "github"]) {
        const p = pkg(`@pulumi/${name}`);
        if (p) plugins[p.pulumi?.name ?? name] = p.pulumi?.version ?? p.version;
    }
    return { pulumi: sdk.version, plugins };
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + " ".repeat(n - s.length));

/** One progress line: name, version, origin and time. */
export function progressLine(r: Pick<Resolved, "origin" | "seconds" | "path"> & { component: Component }): string {
    const how = r.origin === "built" ? `built now in ${r.seconds.toFixed(1)}s` : `from ${r.origin}`;
    return `toolchain: ${pad(r.component.name, 22)} ${pad(r.component.version, 9)} ${pad(how, 22)} ${r.path}`;
}

/**
 * Makes every component available: a usable Pulumi CLI the user already has (with its own language
 * host and plugins) is used; anything missing is taken from the cache or built from Go modules.
 */
export async function ensureToolchain(options: EnsureOptions): Promise<Toolchain> {
    const env = options.env ?? process.env;
    const log = options.log ?? ((line: string) => process.stderr.write(line + "\n"));
    const cacheDir = options.cacheDir ?? defaultCacheDir(env);
    const pins = readPins(options.projectRoot);
    const set = options.set ?? "engine";
    const wanted = components(pins, { withGithub: options.withGithub ?? false, set });

    const installed = options.ignorePath ? undefined : await findInstalledCli(env, pins.pulumi);
    const existing = installed?.path;
    const installedPlugins = existing ? await installedPluginVersions(existing, env) : new Map<string, string>();
    const go = await findGo(env, cacheDir);

    const resolved: Resolved[] = [];
    for (const component of wanted) {
        const fromInstall = existing ? fromInstalledCli(component, existing, installedPlugins) : undefined;
        if (fromInstall) {
            resolved.push(fromInstall);
            log(progressLine(fromInstall));
            continue;
        }
        const r = await fromCacheOrBuild(component, { cacheDir, go, env, projectRoot: options.projectRoot, log });
        resolved.push(r);
        log(progressLine(r));
    }

    const root = linkRoot(cacheDir, resolved);
    const binDir = path.join(root, "bin");
    // The CLI comes from PATH exactly when an installed one was accepted.
    return { root, binDir, components: resolved, pulumi: path.join(binDir, "pulumi"), set, cliVersion: installed?.version ?? pins.pulumi };
}

async function findInstalledCli(env: NodeJS.ProcessEnv, wantVersion: string): Promise<{ path: string; version: string } | undefined> {
    const candidate = env.PULUMI_CLI ? path.resolve(env.PULUMI_CLI) : which("pulumi", env.PATH);
    if (!candidate) return undefined;
    // Our own cache's CLI may be on PATH (e.g. inside `npm test`); it is handled as the cache.
    if (candidate.startsWith(defaultCacheDir(env) + path.sep)) return undefined;
    try {
        const r = await run(candidate, ["version"], { env: { ...env, PULUMI_SKIP_UPDATE_CHECK: "true" } });
        const parsed = parseVersion(r.stdout);
        if (r.code === 0 && parsed && versionAtLeast(r.stdout, wantVersion)) return { path: candidate, version: parsed.join(".") };
        if (env.PULUMI_CLI) {
            throw new ToolchainError(
                `PULUMI_CLI=${candidate} reports version ${r.stdout.trim() || "(none)"}; gitops-stages needs ${wantVersion} or later`,
            );
        }
    } catch (e) {
        if (e instanceof ToolchainError) throw e;
    }
    return undefined;
}

/** Resource plugins the CLI reports as installed: "name@version" -> path of the plugin executable. */
async function installedPluginVersions(cli: string, env: NodeJS.ProcessEnv): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const r = await run(cli, ["plugin", "ls", "--json"], { env: { ...env, PULUMI_SKIP_UPDATE_CHECK: "true" } });
    if (r.code !== 0) return out;
    const home = env.PULUMI_HOME ? path.resolve(env.PULUMI_HOME) : path.join(os.homedir(), ".pulumi");
    try {
        for (const p of JSON.parse(r.stdout) as { name: string; kind: string; version: string }[]) {
            if (p.kind !== "resource") continue;
            const version = p.version.replace(/^v/, "");
            const exe = path.join(home, "plugins", `resource-${p.name}-v${version}`, `pulumi-resource-${p.name}`);
            if (fs.existsSync(exe)) out.set(`${p.name}@${version}`, exe);
        }
    } catch {
        // an unreadable list means no usable plugins
    }
    return out;
}

function fromInstalledCli(c: Component, cli: string, plugins: Map<string, string>): Resolved | undefined {
    const dir = path.dirname(fs.realpathSync(cli));
    if (c.role === "cli") return { component: c, path: cli, origin: "PATH", seconds: 0 };
    if (c.role === "language" || c.role === "shim") {
        const p = path.join(dir, c.binary);
        return fs.existsSync(p) ? { component: c, path: p, origin: "PATH", seconds: 0 } : undefined;
    }
    const installed = plugins.get(`${c.pluginName}@${c.version}`);
    return installed ? { component: c, path: installed, origin: "PULUMI_HOME", seconds: 0 } : undefined;
}

/** The Go toolchain on PATH: its executable and the version it reports (`go1.26.8`). */
export interface GoInfo {
    readonly bin: string;
    readonly version: string;
}

/**
 * The Go toolchain on PATH and its version. The version is part of every built component's cache
 * key, so every command needs it; `go env GOVERSION` costs a process start (tens of milliseconds,
 * on every `stages` call), so its answer is kept in the cache folder, keyed by what decides it:
 * the `go` executable (its real path, size and modification time), GOROOT, GOTOOLCHAIN and the
 * GOENV file's modification time (`go env -w`). It is asked in the cache folder, so that no go.mod
 * of the current folder picks another toolchain. A `go` that is a script (a version manager's
 * shim, the same file whatever Go it runs) is asked every time.
 */
export async function findGo(env: NodeJS.ProcessEnv, cacheDir: string): Promise<GoInfo | undefined> {
    const bin = which("go", env.PATH);
    if (!bin) return undefined;
    fs.mkdirSync(cacheDir, { recursive: true });
    const ask = async (): Promise<string | undefined> => {
        const r = await run(bin, ["env", "GOVERSION"], { env, cwd: cacheDir });
        return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
    };
    const real = fs.realpathSync(bin);
    const head = Buffer.alloc(2);
    try {
        const fd = fs.openSync(real, "r");
        try {
            fs.readSync(fd, head, 0, 2, 0);
        } finally {
            fs.closeSync(fd);
        }
    } catch {
        // unreadable (execute-only): treated as a script, asked every time
        head.write("#!");
    }
    if (head.toString() === "#!") {
        const version = await ask();
        return version ? { bin, version } : undefined;
    }
    const st = fs.statSync(real);
    const goenv = env.GOENV ?? path.join(env.XDG_CONFIG_HOME ?? path.join(os.homedir(), ".config"), "go", "env");
    const goenvTime = fs.existsSync(goenv) ? fs.statSync(goenv).mtimeMs : 0;
    const key = JSON.stringify({ real, size: st.size, mtimeMs: st.mtimeMs, goroot: env.GOROOT ?? "", gotoolchain: env.GOTOOLCHAIN ?? "", goenv, goenvTime });
    const memo = path.join(cacheDir, "go-version.json");
    try {
        const known = JSON.parse(fs.readFileSync(memo, "utf8")) as { key?: string; version?: string };
        if (known.key === key && typeof known.version === "string" && known.version) return { bin, version: known.version };
    } catch {
        // absent or unreadable: ask go
    }
    const version = await ask();
    if (!version) return undefined;
    const partial = `${memo}.partial-${process.pid}`;
    try {
        fs.writeFileSync(partial, JSON.stringify({ key, version }));
        fs.renameSync(partial, memo);
    } catch {
        // a read-only cache only costs the next command the same question
        fs.rmSync(partial, { force: true });
    }
    return { bin, version };
}

interface BuildContext {
    readonly cacheDir: string;
    readonly go: GoInfo | undefined;
    readonly env: NodeJS.ProcessEnv;
    readonly projectRoot: string;
    readonly log: (line: string) => void;
}

/** The cache key of a component: its recipe, the Go version, and for our own sources their content. */
export function cacheKey(component: Component, goVersion: string, sourceDigest: string): string {
    const h = createHash("sha256");
    h.update(JSON.stringify({ revision: RECIPE_REVISION, component, goVersion, sourceDigest }));
    return h.digest("hex").slice(0, 16);
}

function digestDir(dir: string): string {
    const h = createHash("sha256");
    const walk = (d: string): void => {
        for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
            const p = path.join(d, entry.name);
            if (entry.isDirectory()) walk(p);
            else if (entry.isFile()) {
                h.update(path.relative(dir, p));
                h.update(fs.readFileSync(p));
            }
        }
    };
    walk(dir);
    return h.digest("hex");
}

async function fromCacheOrBuild(c: Component, ctx: BuildContext): Promise<Resolved> {
    const sourceDigest =
        c.recipe.type === "go-local" ? digestDir(path.join(ctx.projectRoot, "toolchain", c.recipe.dir)) : "";
    // Shims need no Go; their key does not depend on it.
    const goVersion = c.recipe.type === "shim" ? "" : (ctx.go?.version ?? "");
    const dir = path.join(ctx.cacheDir, "toolchain", `${c.binary}-${c.version}-${cacheKey(c, goVersion, sourceDigest)}`);
    const exe = path.join(dir, c.binary);
    if (fs.existsSync(path.join(dir, "complete.json")) && fs.existsSync(exe)) {
        return { component: c, path: exe, origin: "cache", seconds: 0 };
    }
    if (c.recipe.type !== "shim" && !ctx.go) {
        throw new ToolchainError(
            `cannot provide ${c.binary} ${c.version}: no Pulumi CLI ${c.version} or later was found ` +
                "(set PULUMI_CLI or put pulumi on PATH) and no Go toolchain is installed to build one. " +
                "Install the Pulumi CLI (https://www.pulumi.com/docs/install/) or Go 1.25 or later.",
        );
    }
    const started = Date.now();
    ctx.log(`toolchain: ${pad(c.name, 22)} ${pad(c.version, 9)} building (${describe(c.recipe)})...`);
    fs.rmSync(dir, { recursive: true, force: true });
    const staging = `${dir}.partial-${process.pid}`;
    fs.rmSync(staging, { recursive: true, force: true });
    fs.mkdirSync(staging, { recursive: true });
    try {
        await build(c, path.join(staging, c.binary), ctx);
        const seconds = (Date.now() - started) / 1000;
        fs.writeFileSync(
            path.join(staging, "complete.json"),
            JSON.stringify({ component: c, goVersion, builtAt: new Date().toISOString(), seconds }, null, 2),
        );
        // Rename last: a cache entry is either complete or absent, even if this process is killed.
        fs.renameSync(staging, dir);
        return { component: c, path: exe, origin: "built", seconds };
    } finally {
        fs.rmSync(staging, { recursive: true, force: true });
    }
}

function describe(r: Recipe): string {
    switch (r.type) {
        case "go-wrapper":
            return `go build ${r.module}@${r.version}`;
        case "go-local":
            return `go build toolchain/${r.dir}`;
        case "go-bridged":
            return `go build ${r.providerModule} at ${r.sdkModule}@${r.sdkVersion}`;
        case "shim":
            return "shell shim";
    }
}

async function build(c: Component, out: string, ctx: BuildContext): Promise<void> {
    const r = c.recipe;
    if (r.type === "shim") {
        fs.writeFileSync(out, r.script, { mode: 0o755 });
        return;
    }
    const go = ctx.go!;
    const goEnv: NodeJS.ProcessEnv = { ...ctx.env, GOFLAGS: "-buildvcs=false" };
    const heartbeat = (ms: number): void =>
        ctx.log(`toolchain: ${pad(c.name, 22)} ${pad(c.version, 9)} still building (${Math.round(ms / 1000)}s)`);
    const step = async (args: string[], cwd: string): Promise<string> => {
        const res = await run(go.bin, args, { cwd, env: goEnv, onHeartbeat: heartbeat, heartbeatMs: 30_000 });
        if (res.code !== 0) {
            throw new ToolchainError(
                `building ${c.binary} ${c.version} failed at \`go ${args.join(" ")}\` (exit ${res.code})`,
                (res.stdout + res.stderr).trim(),
            );
        }
        return res.stdout;
    };
    const ldflags = ["-s", "-w", ...r.ldflags].join(" ");
    if (r.type === "go-local") {
        const src = path.join(ctx.projectRoot, "toolchain", r.dir);
        await step(["build", "-trimpath", "-ldflags", ldflags, "-o", out, "."], src);
        return;
    }

    let module: string;
    let version: string;
    if (r.type === "go-bridged") {
        // Provider modules of bridged providers are not tagged: address the commit of the SDK's tag.
        const info = JSON.parse(await step(["mod", "download", "-json", `${r.sdkModule}@${r.sdkVersion}`], os.tmpdir()));
        if (!info.Origin?.Hash || !info.Time) {
            throw new ToolchainError(`the module proxy gave no commit for ${r.sdkModule}@${r.sdkVersion}`);
        }
        const major = Number(/\/v(\d+)$/.exec(r.providerModule)?.[1] ?? "1");
        module = r.providerModule;
        version = pseudoVersion(major, new Date(info.Time), info.Origin.Hash);
    } else {
        module = r.module;
        version = r.version;
    }
    const work = path.join(ctx.cacheDir, "toolchain", "work", c.name);
    fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work, { recursive: true });
    const modInfo = JSON.parse(await step(["mod", "download", "-json", `${module}@${version}`], work));
    const replaces = nonLocalReplaces(fs.readFileSync(modInfo.GoMod, "utf8"), r.type === "go-wrapper" ? r.localReplacesAt : undefined);
    const goVersion = /^go(\d+\.\d+(?:\.\d+)?)/.exec(go.version)?.[1] ?? "1.25";
    fs.writeFileSync(path.join(work, "go.mod"), wrapperGoMod(c.name, goVersion, replaces));
    const mainPackage = r.mainPackage;
    if (r.type === "go-wrapper" && r.generatedMain === "kubernetes") {
        const cmdDir = path.join(modInfo.Dir, "cmd", "pulumi-resource-kubernetes");
        const schema = JSON.parse(fs.readFileSync(path.join(cmdDir, "schema.json"), "utf8"));
        schema.version = c.version;
        fs.writeFileSync(path.join(work, "schema-embed.json"), JSON.stringify(schema));
        const mapping = JSON.parse(fs.readFileSync(path.join(cmdDir, "terraform-mapping.json"), "utf8"));
        fs.writeFileSync(path.join(work, "terraform-mapping-embed.json"), JSON.stringify(mapping));
        fs.writeFileSync(path.join(work, "main.go"), KUBERNETES_MAIN);
        await step(["get", `${module}@${version}`], work);
        await step(["mod", "tidy"], work);
    } else {
        // Local replaces (`=> ../sdk`) name sibling modules; require them at the same version.
        // The CLI's sibling (its SDK) is implied rather than listed, which keeps its cache key stable.
        const named = r.type === "go-wrapper" && r.siblings ? r.siblings : /github\.com\/pulumi\/pulumi\/pkg\/v3$/.test(module) ? ["github.com/pulumi/pulumi/sdk/v3"] : [];
        const siblings = named.map((m) => `${m}@${version}`);
        await step(["get", `${mainPackage}@${version}`, ...siblings], work);
    }
    if (r.type === "go-wrapper" && r.patch) {
        applyPatch(c, r.patch, modInfo.Dir, path.join(work, "src"));
        await step(["mod", "edit", `-replace=${module}=./src`], work);
    }
    await step(["build", ...(r.type === "go-wrapper" && r.modMode ? [`-mod=${r.modMode}`] : []), "-trimpath", "-ldflags", ldflags, "-o", out, mainPackage], work);
}

/** Copies a module's source and applies a patch to the copy; an edit that does not match exactly once fails the build. */
export function applyPatch(c: Component, patch: SourcePatch, moduleDir: string, into: string): void {
    fs.rmSync(into, { recursive: true, force: true });
    fs.cpSync(moduleDir, into, { recursive: true });
    // The module cache is read-only; the copy must be writable to edit it (and to remove it later).
    const writable = (d: string): void => {
        fs.chmodSync(d, 0o755);
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) writable(p);
            else fs.chmodSync(p, 0o644);
        }
    };
    writable(into);
    for (const e of patch.edits) {
        const file = path.join(into, e.file);
        const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
        const count = text.split(e.from).length - 1;
        if (count !== 1) {
            throw new ToolchainError(`patching ${c.binary} ${c.version} failed: ${e.file} contains ${JSON.stringify(e.from)} ${count} times (expected once); the recipe no longer fits this source`);
        }
        fs.writeFileSync(file, text.replace(e.from, e.to));
    }
    for (const [rel, content] of Object.entries(patch.add)) fs.writeFileSync(path.join(into, rel), content);
}

function linkRoot(cacheDir: string, resolved: readonly Resolved[]): string {
    const h = createHash("sha256");
    h.update(`layout 3\n`);
    for (const r of resolved) h.update(`${r.component.binary}=${r.path}\n`);
    const dir = path.join(cacheDir, "toolchain", `root-${h.digest("hex").slice(0, 16)}`);
    if (!fs.existsSync(path.join(dir, ".complete"))) {
        const staging = `${dir}.partial-${process.pid}`;
        fs.rmSync(staging, { recursive: true, force: true });
        fs.mkdirSync(path.join(staging, "bin"), { recursive: true });
        // Plugins (the language host included) are registered in a Pulumi home under their exact
        // versions instead: the engine uses a plugin found on PATH whatever version a program asks
        // for, and warns about it on every run.
        for (const r of resolved) {
            if (r.component.role === "cli") {
                fs.symlinkSync(r.path, path.join(staging, "bin", r.component.binary));
            }
        }
        fs.writeFileSync(path.join(staging, ".complete"), "");
        fs.rmSync(dir, { recursive: true, force: true });
        fs.renameSync(staging, dir);
    }
    return dir;
}

/**
 * Registers the toolchain's resource plugins and language host in a Pulumi home
 * (plugins/<kind>-<name>-v<version>/), under the exact versions the SDKs request, so the engine
 * finds them and never tries a download. A plugin already installed there is left alone.
 */
export function registerPlugins(pulumiHome: string, toolchain: Toolchain): void {
    for (const r of toolchain.components) {
        let folder: string;
        if (r.component.role === "resource-plugin") folder = `resource-${r.component.pluginName}-v${r.component.version}`;
        else if (r.component.role === "language") folder = `language-nodejs-v${r.component.version}`;
        // The shims are plugins too: the dynamic-provider host is the `pulumi-nodejs` resource
        // plugin, the policy host the `policy` analyzer.
        else if (r.component.binary === "pulumi-resource-pulumi-nodejs") folder = `resource-pulumi-nodejs-v${r.component.version}`;
        else if (r.component.binary === "pulumi-analyzer-policy") folder = `analyzer-policy-v${r.component.version}`;
        else continue;
        const dir = path.join(pulumiHome, "plugins", folder);
        const target = path.join(dir, r.component.binary);
        if (fs.existsSync(target)) continue;
        fs.mkdirSync(dir, { recursive: true });
        fs.symlinkSync(r.path, target);
    }
}

/**
 * The environment that makes the engine use this toolchain and nothing else: the toolchain's CLI
 * first on PATH, no update checks, no plugin downloads, and `settings` (Pulumi home, backend,
 * passphrase) over `base`. An ambient KUBECONFIG is dropped: render mode refuses one, and it must
 * never turn a render into an apply (clusters come from stack config); PULUMI_SKIP_CONFIRMATIONS is
 * turned off. Node.js processes the engine starts (the dynamic-provider host) load
 * src/lazy-closure.ts first, through NODE_OPTIONS, as this process does.
 */
export function engineEnv(toolchain: Toolchain, base: NodeJS.ProcessEnv, settings: Readonly<Record<string, string>>): Record<string, string> {
    const env: NodeJS.ProcessEnv = {
        ...base,
        ...settings,
        PATH: `${toolchain.binDir}${path.delimiter}${base.PATH ?? ""}`,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    };
    delete env.KUBECONFIG;
    // The Automation API says --yes where it means it; the CLI reads PULUMI_SKIP_CONFIRMATIONS as
    // --yes everywhere, which a preview-only refresh (drift) refuses ("--yes and --preview-only
    // cannot be used together"). Common in CI shells; set to false rather than dropped, because
    // the Automation API starts the CLI with this process's own environment under these settings.
    env.PULUMI_SKIP_CONFIRMATIONS = "false";
    const hook = lazyClosureHook();
    const option = hook && `--require ${JSON.stringify(hook)}`;
    // Once: an engine environment built from another one's keeps its option as it is.
    if (option && !(base.NODE_OPTIONS ?? "").includes(option)) env.NODE_OPTIONS = [base.NODE_OPTIONS, option].filter(Boolean).join(" ");
    return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/**
 * The compiled src/lazy-closure.js, for NODE_OPTIONS; undefined when running from sources without
 * a build (the deferral is an optimisation, never needed for correctness).
 */
function lazyClosureHook(): string | undefined {
    const file = path.resolve(__dirname, "..", "lazy-closure.js");
    return __filename.endsWith(".js") && fs.existsSync(file) ? file : undefined;
}
