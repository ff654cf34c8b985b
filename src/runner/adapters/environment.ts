/**
 * Where the runner keeps its things and how it reaches the engine: the data folder (workspace
 * copy of the project, default state backend and passphrase, Pulumi home with the toolchain's
 * plugins, approvals), resolved from the environment with embedded defaults.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { PulumiCommand } from "@pulumi/pulumi/automation";
import * as semver from "semver";

import { prepareProjectCopy } from "../../project";
import { RunnerError } from "../errors";
import { BackendChoice, describeBackend, isCloudUrl, resolveBackend } from "./backend";
import { postgresBackend } from "./backend-locks";
import { Toolchain, engineEnv, ensureToolchain, registerPlugins } from "../../toolchain/resolve";

/** Everything an engine adapter needs. */
export interface RunnerEnvironment {
    readonly projectRoot: string;
    readonly dataDir: string;
    /** The project copy the runner's stacks live in (their config in `stacks/`). */
    readonly workDir: string;
    readonly pulumiHome: string;
    readonly backendUrl: string;
    /** Where {@link backendUrl} came from (see `resolveBackend`). */
    readonly backend: BackendChoice;
    readonly envVars: Record<string, string>;
    readonly command: PulumiCommand;
    readonly toolchain: Toolchain;
    /**
     * Where this runner reaches the ops repo when it is not the platform's own name for it
     * (`$GITOPS_STAGES_OPS_URL`: a replica on another machine than the local git host reaches it
     * over git's smart HTTP); may carry credentials, which never appear in logs or errors.
     */
    readonly opsUrl?: string;
}

/** Options of {@link runnerEnvironment}. */
export interface EnvironmentOptions {
    readonly projectRoot: string;
    /** Data folder; default $GITOPS_STAGES_HOME, else <project>/.gitops-stages/runner. */
    readonly dataDir?: string;
    readonly env?: NodeJS.ProcessEnv;
    readonly log?: (line: string) => void;
}

/**
 * An environment for a runner with its own data folder and nothing ambient: no backend,
 * passphrase, login, cluster or runner identity inherited from the caller's shell. Its Pulumi home
 * is the data folder's own (where no login exists), so the runner takes its embedded default
 * backend whatever the caller's Pulumi CLI is logged in to.
 */
export function selfContainedEnv(dataDir: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...base, GITOPS_STAGES_HOME: dataDir, PULUMI_HOME: path.join(dataDir, "pulumi-home") };
    for (const k of ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN", "KUBECONFIG", "GITOPS_STAGES_TOKEN", "GITOPS_STAGES_USER"]) {
        delete env[k];
    }
    return env;
}

/** The data folder in use. */
export function dataDirFrom(projectRoot: string, env: NodeJS.ProcessEnv = process.env): string {
    return path.resolve(env.GITOPS_STAGES_HOME ?? path.join(projectRoot, ".gitops-stages", "runner"));
}

/**
 * Resolves the runner's environment. Backend: as the Pulumi CLI finds it (`resolveBackend`:
 * $PULUMI_BACKEND_URL, Pulumi.yaml, the CLI's current login), else `file://<data>/state`.
 * Secrets: $PULUMI_CONFIG_PASSPHRASE(_FILE); on the embedded default backend only, a passphrase
 * generated once into `<data>/passphrase` (mode 0600) when none is given. Any other self-managed
 * backend holds stacks encrypted with the user's own passphrase (and the stage stacks the runner
 * creates take Pulumi's default secrets provider, the passphrase), so there a missing passphrase
 * is an error that says how to give it; a `<data>/passphrase` an earlier version generated for
 * such a backend is still used. Pulumi home: $PULUMI_HOME, else `<data>/pulumi-home`.
 */
export async function runnerEnvironment(opts: EnvironmentOptions): Promise<RunnerEnvironment> {
    const env = opts.env ?? process.env;
    const dataDir = opts.dataDir ?? dataDirFrom(opts.projectRoot, env);
    // What the user must give is said before anything is built or written.
    const backend = resolveBackend(env, dataDir, opts.projectRoot);
    const backendUrl = backend.url;
    const opsUrl = parseOpsUrl(env.GITOPS_STAGES_OPS_URL);
    postgresBackend(backendUrl);
    // An empty passphrase is one Pulumi accepts.
    const passphraseGiven = env.PULUMI_CONFIG_PASSPHRASE !== undefined || Boolean(env.PULUMI_CONFIG_PASSPHRASE_FILE);
    // Before this release the runner generated <data>/passphrase for any file:// backend; stacks made then still need it.
    const earlierPassphrase = path.join(dataDir, "passphrase");
    const legacy = !passphraseGiven && backend.source !== "embedded default" && fs.existsSync(earlierPassphrase);
    if (backend.source !== "embedded default" && !passphraseGiven && !legacy && !isCloudUrl(backendUrl)) {
        throw new RunnerError(
            "invalid",
            `PULUMI_CONFIG_PASSPHRASE: not set. The state backend ${describeBackend(backend)} encrypts stack secrets with your passphrase: ` +
                "export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) as for pulumi up on the platform stack, then run this again",
        );
    }
    fs.mkdirSync(dataDir, { recursive: true });
    const toolchain = await ensureToolchain({ projectRoot: opts.projectRoot, env, log: opts.log ?? (() => undefined) });
    const pulumiHome = env.PULUMI_HOME ?? path.join(dataDir, "pulumi-home");
    fs.mkdirSync(pulumiHome, { recursive: true });
    registerPlugins(pulumiHome, toolchain);
    const workDir = path.join(dataDir, "workspace");
    prepareProjectCopy(opts.projectRoot, workDir);
    const extra: Record<string, string> = {};
    if (legacy) extra.PULUMI_CONFIG_PASSPHRASE_FILE = earlierPassphrase;
    if (backend.source === "embedded default") {
        fs.mkdirSync(backendUrl.slice("file://".length), { recursive: true });
        if (!passphraseGiven) {
            const file = path.join(dataDir, "passphrase");
            if (!fs.existsSync(file)) fs.writeFileSync(file, randomBytes(24).toString("base64url"), { mode: 0o600 });
            extra.PULUMI_CONFIG_PASSPHRASE_FILE = file;
        }
    }
    // The runner keeps its own Pulumi home, so a Pulumi Cloud login's token travels in the environment.
    if (backend.accessToken && !env.PULUMI_ACCESS_TOKEN) extra.PULUMI_ACCESS_TOKEN = backend.accessToken;
    const envVars = engineEnv(toolchain, env, { ...extra, PULUMI_HOME: pulumiHome, PULUMI_BACKEND_URL: backendUrl });
    const command = pulumiCommand(toolchain);
    return { projectRoot: opts.projectRoot, dataDir, workDir, pulumiHome, backendUrl, backend, envVars, command, toolchain, ...(opsUrl ? { opsUrl } : {}) };
}

/** `$GITOPS_STAGES_OPS_URL` checked: an http(s) or ssh URL of a repository (never a path: that is the platform's own name). */
export function parseOpsUrl(raw: string | undefined): string | undefined {
    if (raw === undefined || raw === "") return undefined;
    let u: URL;
    try {
        u = new URL(raw);
    } catch {
        throw new RunnerError("invalid", "GITOPS_STAGES_OPS_URL: must be a URL (http://, https:// or ssh://) of the ops repository");
    }
    if (!["http:", "https:", "ssh:"].includes(u.protocol) || !u.hostname) {
        throw new RunnerError("invalid", `GITOPS_STAGES_OPS_URL: must be an http://, https:// or ssh:// URL with a host, got one with scheme ${JSON.stringify(u.protocol.replace(/:$/, ""))}`);
    }
    // git takes an HTTP password out of the URL (the runner hands it over as a header); ssh has keys.
    if (u.protocol === "ssh:" && u.password) throw new RunnerError("invalid", "GITOPS_STAGES_OPS_URL: an ssh:// URL takes no password (give the key through ssh's own configuration)");
    return raw;
}

/**
 * The Automation API's handle on the toolchain's CLI, made without running it. `PulumiCommand.get`
 * starts `pulumi version` (a CLI start, 0.1 to 0.3 s, on every `stages` call) to learn what the
 * toolchain already knows: it built the CLI at the pinned version or checked an installed one's.
 * Its constructor is private, so the handle is made from its prototype with the two fields the
 * constructor sets; test/integration/engine.test.ts checks it against what `get` returns.
 */
export function pulumiCommand(toolchain: Toolchain, env: NodeJS.ProcessEnv = process.env): PulumiCommand {
    const version = semver.parse(toolchain.cliVersion);
    if (!version) throw new Error(`the toolchain's Pulumi CLI reports version ${JSON.stringify(toolchain.cliVersion)}, which is not a version`);
    // What `get` checks besides the minimum, which the toolchain's pin already exceeds: the CLI's
    // major version is the SDK's (an installed CLI is accepted from the pin up).
    const sdk = semver.parse((JSON.parse(fs.readFileSync(require.resolve("@pulumi/pulumi/package.json"), "utf8")) as { version: string }).version);
    if (sdk && version.major !== sdk.major && !env.PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK) {
        throw new Error(
            `the Pulumi CLI ${toolchain.pulumi} is version ${version}, a major version other than @pulumi/pulumi ${sdk}'s: ` +
                "install a CLI of the same major version (or set PULUMI_CLI to one), or set PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK to use it anyway",
        );
    }
    return Object.assign(Object.create(PulumiCommand.prototype) as PulumiCommand, { command: path.resolve(toolchain.root, "bin", "pulumi"), version });
}
