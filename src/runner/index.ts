/**
 * Assembles a runner for this machine: the environment (toolchain, backend, data folder), the
 * Automation API engine, the ops repo, the file store and the runner settings file.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Checker, formatProblem } from "../config/validate";
import { AutomationEngine } from "./adapters/automation";
import { RunnerEnvironment, runnerEnvironment } from "./adapters/environment";
import { FileStore } from "./adapters/file-store";
import { GitOpsRepo } from "./adapters/ops-repo";
import type { Actor } from "./core";
import { RunnerError } from "./errors";
import { Runner } from "./runner";

/** Settings of a runner (`<data>/runner.json`). */
export interface RunnerSettings {
    /** Local users of the CLI: their teams (stage ownership) and whether they may override the stage order. */
    readonly users: Record<string, { teams: string[]; overrideOrder: boolean }>;
    /** Cluster of merge-request environments; absent kubeconfig: rendered under `<data>/rendered/mr-<n>`. */
    readonly mrCluster: { kubeconfig?: string; context?: string; skipAwait: boolean };
    /** How long a request waits for a stack locked by another update. */
    readonly lockWaitSeconds: number;
}

/** Reads and validates `<data>/runner.json` (absent: no users, render mode, 600 s). */
export function readSettings(dataDir: string): RunnerSettings {
    const file = path.join(dataDir, "runner.json");
    const raw: unknown = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    const c = new Checker();
    const o = c.object("runner.json", raw, ["users", "mrCluster", "lockWaitSeconds"]);
    const users: RunnerSettings["users"] = {};
    for (const [name, u] of Object.entries(c.object("users", o.users, Object.keys((o.users as object) ?? {})))) {
        const uo = c.object(`users.${name}`, u, ["teams", "overrideOrder"]);
        users[name] = { teams: c.strings(`users.${name}.teams`, uo.teams, []), overrideOrder: c.boolean(`users.${name}.overrideOrder`, uo.overrideOrder, false) };
    }
    const m = c.object("mrCluster", o.mrCluster, ["kubeconfig", "context", "skipAwait"]);
    const settings: RunnerSettings = {
        users,
        mrCluster: {
            ...(m.kubeconfig !== undefined ? { kubeconfig: c.string("mrCluster.kubeconfig", m.kubeconfig) } : {}),
            ...(m.context !== undefined ? { context: c.string("mrCluster.context", m.context) } : {}),
            skipAwait: c.boolean("mrCluster.skipAwait", m.skipAwait, false),
        },
        lockWaitSeconds: c.integer("lockWaitSeconds", o.lockWaitSeconds, 600, 1, 86_400),
    };
    if (c.problems.length) throw new RunnerError("invalid", `${file}: ` + c.problems.map(formatProblem).join("; "));
    return settings;
}

/** The actor of a CLI call: the named user with the teams and rights runner.json gives them. */
export function cliActor(settings: RunnerSettings, name: string): Actor {
    const u = settings.users[name];
    return { name, teams: u?.teams ?? [], canOverrideOrder: u?.overrideOrder ?? false };
}

/** A request id: time-ordered and unique enough to name in commits and logs. */
export function newRequestId(): string {
    return `r-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

/** A runner and what it runs on. */
export interface AssembledRunner {
    readonly runner: Runner;
    readonly environment: RunnerEnvironment;
    readonly settings: RunnerSettings;
}

/** Builds the runner for a project and data folder. */
export async function createRunner(opts: {
    projectRoot: string;
    dataDir?: string;
    env?: NodeJS.ProcessEnv;
    log?: (line: string) => void;
    /** The clock (for expiry of merge-request environments, freeze windows, timestamps). */
    now?: () => Date;
}): Promise<AssembledRunner> {
    const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
    const environment = await runnerEnvironment({ projectRoot: opts.projectRoot, dataDir: opts.dataDir, env: opts.env, log: () => undefined });
    const settings = readSettings(environment.dataDir);
    const engine = new AutomationEngine(environment, { lockWaitMs: settings.lockWaitSeconds * 1000, log });
    const runner = new Runner({
        engine,
        store: new FileStore(environment.dataDir),
        ops: GitOpsRepo.fromPlatform(() => engine.platformOutputs(), opts.env ?? process.env),
        now: opts.now ?? (() => new Date()),
        newId: newRequestId,
        log,
        mrCluster: (n) => ({ ...settings.mrCluster, renderDir: path.join(environment.dataDir, "rendered", `mr-${n}`) }),
    });
    return { runner, environment, settings };
}

/** The user running the CLI: --as, else $GITOPS_STAGES_USER, else the OS user. */
export function defaultUser(env: NodeJS.ProcessEnv = process.env): string {
    return env.GITOPS_STAGES_USER ?? os.userInfo().username;
}
