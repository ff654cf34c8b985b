/**
 * `npm run demo`: the whole story on the embedded defaults, from nothing, through the paths users
 * run: `pulumi up` on the platform stack (local git host, Kubernetes rendered to files), then the
 * `stages` CLI, one process per call as CI and people run it, for promote, preview, approve,
 * rollback, hold, release, a merge-request environment, status, history and drift; then
 * `stages serve` with the CI client (`stages ci promote`, with the platform's CI token for itg).
 * So the demo is also a smoke test of what users run.
 *
 * Everything lives under `.demo/` (git-ignored) and each run starts from scratch.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { AutomationEngine } from "../runner/adapters/automation";
import { describeBackend } from "../runner/adapters/backend";
import { runnerEnvironment, selfContainedEnv } from "../runner/adapters/environment";

/** Project root (dist/src/demo -> repo). */
const projectRoot = path.resolve(__dirname, "..", "..", "..");
const stagesBin = path.join(projectRoot, "bin", "stages");

const say = (line: string) => process.stdout.write(`${line}\n`);
const step = (title: string) => say(`\n== ${title}`);
const indent = (text: string) => text.trimEnd().split("\n").map((l) => `   ${l}`).join("\n");

/** A bundle of the sample app for a version: the chart and values from examples/web. */
function sampleBundle(into: string, version: string): string {
    const dir = path.join(into, `web-${version}`);
    fs.cpSync(path.join(projectRoot, "examples", "web"), dir, { recursive: true });
    const chart = path.join(dir, "chart", "Chart.yaml");
    fs.writeFileSync(chart, fs.readFileSync(chart, "utf8").replace(/^appVersion: .*$/m, `appVersion: "${version}"`));
    return dir;
}

/** Shows an argument as a shell would need it, and paths below the demo folder relative to it. */
function shown(arg: string, base: string): string {
    const a = arg.startsWith(base + path.sep) ? path.join(".demo", path.relative(base, arg)) : arg;
    return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
}

async function main(): Promise<void> {
    const started = Date.now();
    const base = path.join(projectRoot, ".demo");
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(base, { recursive: true });
    // Only users named here may approve prod or override the stage order.
    fs.writeFileSync(path.join(base, "runner.json"), JSON.stringify({ users: { alice: { teams: ["prod-owners"], overrideOrder: true } } }, null, 2));
    // The data folder is .demo; nothing is taken from the caller's shell (backend, login, passphrase, token).
    const env = selfContainedEnv(base);

    step("toolchain and runner environment");
    const environment = await runnerEnvironment({ projectRoot, dataDir: base, env, log: (l) => say(`   ${l}`) });
    say(`state backend: ${describeBackend(environment.backend)}`);

    step("platform stack: pulumi up (local git host, Kubernetes rendered to files)");
    const engine = new AutomationEngine(environment, { lockWaitMs: 600_000, log: say });
    const platform = await engine.update(
        "platform",
        async () => ({
            gitHost: { kind: "local", path: path.join(base, "git") },
            cluster: { renderDir: path.join(base, "rendered", "platform") },
            stages: [{ name: "itg" }, { name: "tst" }, { name: "perf", requireReview: true }, { name: "prod", requireReview: true, requireApproval: true }],
        }),
        { message: "demo: bootstrap the platform" },
    );
    say(`${platform?.result}: ${JSON.stringify(platform?.changes)}`);
    const outputs = await engine.platformOutputs();
    say(`ops repository: ${(outputs.repositories as { ops: string }).ops}`);
    for (const c of outputs.charts as { name: string; source: string; installed: boolean; reason?: string }[]) {
        say(`chart ${c.name}: ${c.installed ? "rendered" : `would install ${c.source} (${c.reason}); recorded in a pending-chart ConfigMap`}`);
    }
    say(`not applicable with the local git host: ${(outputs.notApplicable as { item: string }[]).map((n) => n.item).join("; ")}`);

    // Each call is its own `stages` process with the environment a user's shell would give it.
    const cliEnv = { ...env, GITOPS_STAGES_USER: "ci" };
    const stages = (args: string[], opts: { as?: string; expect?: number; extraEnv?: NodeJS.ProcessEnv; quietOutput?: boolean } = {}): string => {
        const argv = [...args, ...(opts.as ? ["--as", opts.as] : [])];
        say(`$ stages ${argv.map((a) => shown(a, base)).join(" ")}`);
        const r = spawnSync(process.execPath, [stagesBin, ...argv], { cwd: projectRoot, env: { ...cliEnv, ...opts.extraEnv }, encoding: "utf8", timeout: 10 * 60_000 });
        const expected = opts.expect ?? 0;
        if (r.status !== expected) {
            throw new Error(`stages ${args[0]} exited ${r.status ?? r.signal} (expected ${expected}):\n${r.stderr}${r.stdout}`);
        }
        if (!opts.quietOutput && r.stdout.trim()) say(indent(r.stdout));
        if (expected !== 0) say(indent(r.stderr.split("\n").filter((l) => l.startsWith("stages ")).join("\n")) + `\n   (exit ${r.status})`);
        return r.stdout;
    };

    const bundles = path.join(base, "bundles");
    const commit = () => randomBytes(20).toString("hex");
    const shas: Record<string, string> = {};

    shas["1.0.0"] = commit();
    step("release web 1.0.0: the first promotion publishes the bundle, then stage by stage");
    stages(["promote", "web@1.0.0", "--to", "itg", "--bundle", sampleBundle(bundles, "1.0.0"), "--image", "registry.example/web:1.0.0", "--commit", shas["1.0.0"], "--ci-run", "https://ci.example/runs/1", "--quiet"]);
    for (const to of ["tst", "perf"]) stages(["promote", "web@1.0.0", "--to", to, "--commit", shas["1.0.0"], "--quiet"]);
    say("prod needs an owner's approval:");
    stages(["promote", "web@1.0.0", "--to", "prod", "--commit", shas["1.0.0"], "--idempotency-key", "web-1.0.0-prod", "--quiet"], { expect: 3 });
    stages(["approve", "web@1.0.0", "--stage", "prod"], { as: "alice" });
    stages(["promote", "web@1.0.0", "--to", "prod", "--commit", shas["1.0.0"], "--idempotency-key", "web-1.0.0-prod", "--quiet"]);

    step("the service: stages serve, and CI's client promotes web 1.1.0 to itg with itg's token");
    const ciToken = platformSecret(environment, "runnerTokens", "itg");
    const service = await startService(cliEnv);
    try {
        shas["1.1.0"] = commit();
        say(`$ GITOPS_STAGES_URL=${service.url} GITOPS_STAGES_TOKEN=<itg's token> stages ci promote web@1.1.0 --to itg --bundle ... --image ... --commit ...`);
        const r = spawnSync(process.execPath, [stagesBin, "ci", "promote", "web@1.1.0", "--to", "itg", "--bundle", sampleBundle(bundles, "1.1.0"), "--image", "registry.example/web:1.1.0", "--commit", shas["1.1.0"]], {
            cwd: projectRoot,
            env: { ...cliEnv, GITOPS_STAGES_URL: service.url, GITOPS_STAGES_TOKEN: ciToken },
            encoding: "utf8",
            timeout: 10 * 60_000,
        });
        if (r.status !== 0) throw new Error(`stages ci promote exited ${r.status}:\n${r.stderr}`);
        const answer = JSON.parse(r.stdout) as { message?: string; requester?: string; opsCommit?: string; result?: { message?: string; opsCommit?: string } };
        say(indent(`${answer.result?.message ?? answer.message ?? r.stdout.trim()}${(answer.result?.opsCommit ?? answer.opsCommit) ? ` (ops commit ${(answer.result?.opsCommit ?? answer.opsCommit)!.slice(0, 12)})` : ""}`));
    } finally {
        await service.stop();
    }

    step("web 1.1.0 onwards: preview the exact change to tst, then promote");
    stages(["preview", "web@1.1.0", "--to", "tst", "--commit", shas["1.1.0"], "--quiet"]);
    for (const to of ["tst", "perf"]) stages(["promote", "web@1.1.0", "--to", to, "--commit", shas["1.1.0"], "--quiet"]);
    stages(["approve", "web@1.1.0", "--stage", "prod"], { as: "alice" });
    stages(["promote", "web@1.1.0", "--to", "prod", "--commit", shas["1.1.0"], "--idempotency-key", "web-1.1.0-prod", "--quiet"]);

    step("rollback prod: back to the previous release, and hold web there");
    stages(["rollback", "web", "--stage", "prod", "--reason", "error rate up after 1.1.0", "--quiet"], { as: "alice" });
    say("the hold refuses a new promotion of web to prod:");
    stages(["promote", "web@1.1.0", "--to", "prod", "--commit", shas["1.1.0"], "--idempotency-key", "web-1.1.0-prod-again", "--quiet"], { expect: 3 });

    step("hold and release web in tst");
    stages(["hold", "web", "--stage", "tst", "--reason", "incident 42", "--quiet"]);
    stages(["release", "web", "--stage", "tst", "--quiet"]);

    step("merge-request environment mr-7 (deployed directly, rendered to files), then reap");
    stages(["mr", "deploy", "--mr", "7", "--app", "web", "--bundle", sampleBundle(bundles, "1.2.0-mr.7"), "--image", "registry.example/web:mr-7", "--commit", commit(), "--ttl-hours", "48", "--quiet"]);
    stages(["mr", "reap", "--quiet"]);

    step("status: what runs where");
    stages(["status"]);

    step("history of prod: the audit trail");
    stages(["history", "prod"]);

    step("drift: refresh every stack (platform, stages, MR environments) in preview mode");
    stages(["drift", "--quiet"]);

    step("the ops repository's history");
    const log = spawnSync("git", ["--git-dir", path.join(base, "git", "app-ops.git"), "log", "--format=%h %s", "main"], { encoding: "utf8" });
    say(log.stdout.trimEnd());
    say(`\nrendered manifests: ${path.join(base, "rendered")}\nops repository:     ${path.join(base, "git", "app-ops.git")}`);
    say(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** One value of a secret map output of the platform stack, read with the CLI as a user would (`pulumi stack output --show-secrets`). */
function platformSecret(environment: Awaited<ReturnType<typeof runnerEnvironment>>, output: string, key: string): string {
    const r = spawnSync(environment.toolchain.pulumi, ["stack", "output", output, "--show-secrets", "--json", "--stack", "platform", "--non-interactive"], { cwd: environment.workDir, env: environment.envVars, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`pulumi stack output ${output} failed: ${r.stderr.split("\n").find((l) => l.startsWith("error:")) ?? `exit ${r.status}`}`);
    const value = (JSON.parse(r.stdout) as Record<string, unknown>)[key];
    if (typeof value !== "string") throw new Error(`the platform stack's ${output} output has no ${key}`);
    return value;
}

/** Starts `stages serve` on a free loopback port and waits for its "listening" log line. */
function startService(env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => Promise<void> }> {
    const p = spawn(process.execPath, [stagesBin, "serve", "--port", "0", "--host", "127.0.0.1"], { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    say("$ stages serve --port 0 --host 127.0.0.1");
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    const stop = async () => {
        if (p.exitCode === null) p.kill("SIGTERM");
        await exited;
    };
    return new Promise((resolve, reject) => {
        let buffered = "";
        let errors = "";
        const timer = setTimeout(() => void stop().then(() => reject(new Error(`stages serve did not start within 60 s:\n${errors}`))), 60_000);
        p.stderr.on("data", (d: Buffer) => (errors += d.toString()));
        p.stdout.on("data", (d: Buffer) => {
            buffered += d.toString();
            for (const line of buffered.split("\n").slice(0, -1)) {
                let entry: { msg?: string; url?: string };
                try {
                    entry = JSON.parse(line) as typeof entry;
                } catch {
                    continue; // the service logs JSON lines; anything else is not the line we wait for
                }
                if (entry.msg === "listening" && entry.url) {
                    clearTimeout(timer);
                    say(`   listening on ${entry.url}`);
                    resolve({ url: entry.url, stop });
                }
            }
            buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
        });
        p.once("exit", (code) => {
            clearTimeout(timer);
            reject(new Error(`stages serve exited ${code} before listening:\n${errors}`));
        });
    });
}

main().catch((e: unknown) => {
    process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
});
