/**
 * A stage update against the engine's floor (`npm run bench -- --only=floor`): side by side in one
 * run, pair by pair,
 *   - the floor: two `pulumi up --skip-preview` of a Node.js program with no resources whose one
 *     output changes (the same CLI, the same language host, the same `file://` backend);
 *   - the CLI as CI runs it: `stages hold web --stage itg`, then `stages release web --stage itg`
 *     (two stage updates, each one commit, one process per call);
 *   - the service's way, in process: the same two commands through the command layer.
 * Each pair is two updates; the ratios are taken pair by pair and their median reported. Then the
 * profile of one CLI update: the process before the runner starts, the runner before the engine,
 * the engine's update, and the dynamic provider's start inside it (with and without the
 * deferral of the closure serializer that the engine's environment sets, src/lazy-closure.ts).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { Commands } from "../src/runner/commands";
import type { Actor } from "../src/runner/core";
import { VERBS } from "../src/runner/rights";
import { median, time } from "./stats";
import { type World, fmt, publishMany, world } from "./pipeline";

const projectRoot = path.resolve(__dirname, "..", "..");
const STAGES_BIN = path.join(projectRoot, "bin", "stages");

/** Runs `stages <args> --json` as CI would; resolves with its answer. */
function stages(w: World, args: string[]): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [STAGES_BIN, ...args, "--json"], { env: { ...w.env, GITOPS_STAGES_TOKEN: w.operatorToken }, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        child.stderr.on("data", (b: Buffer) => (err += b.toString()));
        child.on("error", reject);
        child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, unknown>) : reject(new Error(`stages ${args.join(" ")}: exit ${code}\n${out}\n${err}`))));
    });
}

/** The floor's project: no resources, one output that changes at every update. */
function floorProject(w: World): { up: () => void } {
    const dir = path.join(w.dir, "floor-project");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: floor\nruntime: nodejs\nmain: index.js\n");
    fs.writeFileSync(path.join(dir, "index.js"), 'require("@pulumi/pulumi");\nexports.at = new Date().toISOString();\n');
    // The project's own @pulumi/pulumi, as the stage program uses.
    fs.symlinkSync(path.join(projectRoot, "node_modules"), path.join(dir, "node_modules"));
    const e = w.assembled.environment;
    const env = { ...w.env, ...e.envVars };
    const pulumi = (args: string[]) => {
        const r = spawnSync(e.toolchain.pulumi, [...args, "--non-interactive"], { cwd: dir, env, encoding: "utf8" });
        if (r.status !== 0) throw new Error(`pulumi ${args.join(" ")}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    };
    pulumi(["stack", "init", "floor"]);
    pulumi(["up", "--yes", "--skip-preview", "--stack", "floor"]);
    return { up: () => pulumi(["up", "--yes", "--skip-preview", "--stack", "floor"]) };
}

/** The floor, the CLI and the in-process command layer, pair by pair. */
export async function engineFloor(runs: number): Promise<void> {
    const w = await world([{ name: "itg" }]);
    try {
        await publishMany(w, ["web"], "1.0.0");
        const operator: Actor = { name: "bench", teams: [], canOverrideOrder: true, grants: [{ stages: ["*"], verbs: VERBS }] };
        const commands = new Commands(w.assembled);
        await commands.execute({ verb: "promote", input: { app: "web", version: "1.0.0", to: "itg", source: { commit: "0123456789abcdef0123456789abcdef01234567" }, overrideOrder: true } }, operator);
        const floor = floorProject(w);
        const commits = () => Number(w.git("rev-list", "--count", "main"));
        const inProcess = (verb: "hold" | "release") => commands.execute({ verb, input: { app: "web", stage: "itg" } }, operator) as Promise<{ state: string; durationMs?: number }>;
        const pairs: { floor: number; cli: number; service: number; engineMs: number[] }[] = [];
        // One warm-up of each, so no measure pays a first load of the caches.
        await stages(w, ["hold", "web", "--stage", "itg"]);
        await stages(w, ["release", "web", "--stage", "itg"]);
        for (let i = 0; i < runs; i++) {
            const f = await time(() => (floor.up(), floor.up()));
            const before = commits();
            const engineMs: number[] = [];
            const cli = await time(async () => {
                for (const verb of ["hold", "release"]) engineMs.push(Number((await stages(w, [verb, "web", "--stage", "itg"])).durationMs));
            });
            const service = await time(async () => {
                for (const verb of ["hold", "release"] as const) {
                    const r = await inProcess(verb);
                    if (r.state !== "done") throw new Error(`${verb}: ${r.state}`);
                }
            });
            if (commits() !== before + 4) throw new Error(`four updates made ${commits() - before} commits, not 4`);
            pairs.push({ floor: f, cli, service, engineMs });
        }
        const per = (ms: number) => fmt(ms / 2);
        console.log(`floor: two \`pulumi up --skip-preview\` of a program with no resources: median ${per(median(pairs.map((p) => p.floor)))} per update over ${runs} pairs`);
        console.log(`CLI (\`stages hold\` + \`stages release\`, one process each): median ${per(median(pairs.map((p) => p.cli)))} per update; CLI / floor pair by pair: median ${median(pairs.map((p) => p.cli / p.floor)).toFixed(2)}x (min ${Math.min(...pairs.map((p) => p.cli / p.floor)).toFixed(2)}, max ${Math.max(...pairs.map((p) => p.cli / p.floor)).toFixed(2)}; goal <= 1.3x)`);
        console.log(`service's way (the command layer in process): median ${per(median(pairs.map((p) => p.service)))} per update; in process / floor: median ${median(pairs.map((p) => p.service / p.floor)).toFixed(2)}x (goal <= 1.15x)`);
        const engine = median(pairs.flatMap((p) => p.engineMs));
        // Sequential: measures side by side would only measure the machine's two cores.
        const providerStarts: number[] = [];
        const eagerProviderStarts: number[] = [];
        const cliStarts: number[] = [];
        // The dynamic provider's host, from its start to the port it serves on: with the engine's
        // environment (which defers the closure serializer, src/lazy-closure.ts), and without.
        const hostStart = (env: NodeJS.ProcessEnv) =>
            time(
                () =>
                    new Promise<void>((resolve, reject) => {
                        const entry = require.resolve("@pulumi/pulumi/cmd/dynamic-provider");
                        const c = spawn(process.execPath, [entry, "127.0.0.1:1"], { env, stdio: ["ignore", "pipe", "ignore"] });
                        const limit = setTimeout(() => (c.kill(), reject(new Error("the dynamic provider's host did not serve within 30 s"))), 30_000);
                        c.on("exit", (code) => (clearTimeout(limit), reject(new Error(`the dynamic provider's host ended (exit ${code}) before serving`))));
                        c.stdout.once("data", () => (clearTimeout(limit), c.removeAllListeners("exit"), c.kill(), resolve()));
                    }),
            );
        const engineEnv = { ...w.env, ...w.assembled.environment.envVars };
        const eagerEnv = { ...engineEnv };
        delete eagerEnv.NODE_OPTIONS;
        for (let i = 0; i < 3; i++) {
            providerStarts.push(await hostStart(engineEnv));
            eagerProviderStarts.push(await hostStart(eagerEnv));
            cliStarts.push(await time(() => spawnSync(process.execPath, [STAGES_BIN, "--help"], { env: w.env })));
        }
        const dp = median(providerStarts);
        const start = median(cliStarts);
        const cliPer = median(pairs.map((p) => p.cli)) / 2;
        console.log(
            `profile of one CLI update: the process up to its first answer (\`stages --help\`, which loads what every verb loads) ${fmt(start)}; the engine's update (the runner's durationMs) ${fmt(engine)}, of which the dynamic provider's host start ${fmt(dp)} (${fmt(median(eagerProviderStarts))} without the deferral of src/lazy-closure.ts); the rest (runner environment, request log, policy, ops repo reads, Argo CD nudge) ${fmt(Math.max(0, cliPer - engine - start))}`,
        );
        // The engine's part, in process: each Pulumi CLI run the Automation API makes for one
        // update (the only hook it offers is its command's run method, wrapped here for the bench).
        const command = w.assembled.environment.command as unknown as { run: (...args: unknown[]) => Promise<unknown> };
        const run = command.run.bind(command);
        const calls: { what: string; ms: number }[] = [];
        command.run = async (...args: unknown[]) => {
            const t0 = Date.now();
            try {
                return await run(...args);
            } finally {
                const words = args[0] as string[];
                const flag = words.findIndex((a) => a.startsWith("-"));
                calls.push({ what: words.slice(0, Math.min(flag < 0 ? 2 : flag, 2)).join(" "), ms: Date.now() - t0 });
            }
        };
        let total = 0;
        try {
            total = await time(() => inProcess("hold"));
        } finally {
            command.run = run;
        }
        await inProcess("release");
        const cli = calls.reduce((a, c) => a + c.ms, 0);
        console.log(`profile of one update in process (${fmt(total)}): ${calls.map((c) => `\`pulumi ${c.what}\` ${fmt(c.ms)}`).join(", ")}; outside the Pulumi CLI ${fmt(total - cli)}`);
    } finally {
        fs.rmSync(w.dir, { recursive: true, force: true });
    }
}
