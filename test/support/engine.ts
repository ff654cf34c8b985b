/**
 * A throw-away Pulumi engine environment for integration tests: the real CLI and plugins from the
 * toolchain, a temporary `file://` backend, a temporary PULUMI_HOME with the plugins registered,
 * a per-run passphrase, and no automatic plugin downloads. Everything lives under one temporary
 * folder that {@link withEngine} removes in `finally`.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import type { PulumiCommand } from "@pulumi/pulumi/automation";

import { pulumiCommand } from "../../src/runner/adapters/environment";
import { Toolchain, engineEnv, ensureToolchain, registerPlugins } from "../../src/toolchain/resolve";

/** Root of this repository (dist/test/support -> repo). */
export const repoRoot = path.resolve(__dirname, "..", "..", "..");

/** One engine environment. */
export interface Engine {
    /** The temporary folder everything below lives in. */
    readonly dir: string;
    readonly toolchain: Toolchain;
    readonly pulumiHome: string;
    /** `file://` URL of the state backend. */
    readonly backendUrl: string;
    /** Folder behind {@link backendUrl}. */
    readonly stateDir: string;
    /** The passphrase that encrypts this run's secrets. */
    readonly passphrase: string;
    /** Environment for the CLI and the Automation API (`envVars`). */
    readonly env: Record<string, string>;
    /** The Automation API's handle on the toolchain's CLI. */
    readonly command: PulumiCommand;
    /** LocalWorkspace options that run the Automation API in this environment. */
    readonly workspaceOptions: { envVars: Record<string, string>; pulumiCommand: PulumiCommand; pulumiHome: string };
}

let toolchainOnce: Promise<Toolchain> | undefined;

/** The tests' toolchain (the engine and the cluster tier's tools), resolved once per test process (normally a cache hit after the README command). */
export function testToolchain(): Promise<Toolchain> {
    toolchainOnce ??= ensureToolchain({ projectRoot: repoRoot, set: "tests", log: (l) => process.stderr.write(`      ${l}\n`) });
    return toolchainOnce;
}

/** Creates an engine environment; pair with {@link disposeEngine}, or use {@link withEngine}. */
export async function createEngine(prefix = "gitops-stages-engine-"): Promise<Engine> {
    const toolchain = await testToolchain();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    const pulumiHome = path.join(dir, "pulumi-home");
    const stateDir = path.join(dir, "state");
    fs.mkdirSync(pulumiHome, { recursive: true });
    fs.mkdirSync(stateDir, { recursive: true });
    registerPlugins(pulumiHome, toolchain);
    const passphrase = randomBytes(18).toString("base64url");
    // Tests never talk to Pulumi Cloud, whatever the machine is logged in to.
    const base = { ...process.env };
    delete base.PULUMI_ACCESS_TOKEN;
    const env = engineEnv(toolchain, base, { PULUMI_HOME: pulumiHome, PULUMI_BACKEND_URL: `file://${stateDir}`, PULUMI_CONFIG_PASSPHRASE: passphrase });
    const command = pulumiCommand(toolchain);
    return {
        dir,
        toolchain,
        pulumiHome,
        backendUrl: `file://${stateDir}`,
        stateDir,
        passphrase,
        env,
        command,
        workspaceOptions: { envVars: env, pulumiCommand: command, pulumiHome },
    };
}

/** Removes everything an engine environment created. */
export function disposeEngine(engine: Engine): void {
    fs.rmSync(engine.dir, { recursive: true, force: true });
}

/** Runs `fn` in a fresh engine environment and always cleans up. */
export async function withEngine<T>(fn: (engine: Engine) => Promise<T>): Promise<T> {
    const engine = await createEngine();
    try {
        return await fn(engine);
    } finally {
        disposeEngine(engine);
    }
}
