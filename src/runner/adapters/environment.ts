/**
 * Where the runner keeps its things and how it reaches the engine: the data folder (workspace
 * copy of the project, default state backend and passphrase, Pulumi home with the toolchain's
 * plugins, approvals), resolved from the environment with embedded defaults.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { PulumiCommand } from "@pulumi/pulumi/automation";

import { prepareProjectCopy } from "../../project";
import { Toolchain, engineEnv, ensureToolchain, registerPlugins } from "../../toolchain/resolve";

/** Everything an engine adapter needs. */
export interface RunnerEnvironment {
    readonly projectRoot: string;
    readonly dataDir: string;
    /** The project copy the runner's stacks live in (their config in `stacks/`). */
    readonly workDir: string;
    readonly pulumiHome: string;
    readonly backendUrl: string;
    readonly envVars: Record<string, string>;
    readonly command: PulumiCommand;
    readonly toolchain: Toolchain;
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
 * passphrase, Pulumi home, cluster or runner identity inherited from the caller's shell.
 */
export function selfContainedEnv(dataDir: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...base, GITOPS_STAGES_HOME: dataDir };
    for (const k of ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_HOME", "PULUMI_ACCESS_TOKEN", "KUBECONFIG", "GITOPS_STAGES_TOKEN", "GITOPS_STAGES_USER"]) {
        delete env[k];
    }
    return env;
}

/** The data folder in use. */
export function dataDirFrom(projectRoot: string, env: NodeJS.ProcessEnv = process.env): string {
    return path.resolve(env.GITOPS_STAGES_HOME ?? path.join(projectRoot, ".gitops-stages", "runner"));
}

/**
 * Resolves the runner's environment. Backend: $PULUMI_BACKEND_URL, else `file://<data>/state`.
 * Secrets: $PULUMI_CONFIG_PASSPHRASE(_FILE), else (file backend only) a passphrase generated once
 * into `<data>/passphrase` (mode 0600). Pulumi home: $PULUMI_HOME, else `<data>/pulumi-home`.
 */
export async function runnerEnvironment(opts: EnvironmentOptions): Promise<RunnerEnvironment> {
    const env = opts.env ?? process.env;
    const dataDir = opts.dataDir ?? dataDirFrom(opts.projectRoot, env);
    fs.mkdirSync(dataDir, { recursive: true });
    const toolchain = await ensureToolchain({ projectRoot: opts.projectRoot, env, log: opts.log ?? (() => undefined) });
    const pulumiHome = env.PULUMI_HOME ?? path.join(dataDir, "pulumi-home");
    fs.mkdirSync(pulumiHome, { recursive: true });
    registerPlugins(pulumiHome, toolchain);
    const workDir = path.join(dataDir, "workspace");
    prepareProjectCopy(opts.projectRoot, workDir);
    const backendUrl = env.PULUMI_BACKEND_URL ?? `file://${path.join(dataDir, "state")}`;
    if (backendUrl.startsWith("file://")) fs.mkdirSync(backendUrl.slice("file://".length), { recursive: true });
    const extra: Record<string, string> = {};
    if (!env.PULUMI_CONFIG_PASSPHRASE && !env.PULUMI_CONFIG_PASSPHRASE_FILE && backendUrl.startsWith("file://")) {
        const file = path.join(dataDir, "passphrase");
        if (!fs.existsSync(file)) fs.writeFileSync(file, randomBytes(24).toString("base64url"), { mode: 0o600 });
        extra.PULUMI_CONFIG_PASSPHRASE_FILE = file;
    }
    const envVars = engineEnv(toolchain, env, { ...extra, PULUMI_HOME: pulumiHome, PULUMI_BACKEND_URL: backendUrl });
    const command = await PulumiCommand.get({ root: toolchain.root });
    return { projectRoot: opts.projectRoot, dataDir, workDir, pulumiHome, backendUrl, envVars, command, toolchain };
}
