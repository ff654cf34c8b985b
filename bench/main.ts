/**
 * Benchmarks (`npm run bench`). Each measure is run several times and reported as a median, next
 * to a baseline measured in the same run, because these machines are shared and noisy.
 *
 *   npm run bench                 warm toolchain resolution vs. a bare `pulumi version`
 *   npm run bench -- --cold       also a cold toolchain build into empty Go and toolchain caches
 *                                 (several minutes; uses temporary folders, removed afterwards)
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { ensureToolchain } from "../src/toolchain/resolve";
import { pipelineBenchmarks } from "./pipeline";
import { median, time as timeIt } from "./stats";

const projectRoot = path.resolve(__dirname, "..", "..");

async function warm(runs: number): Promise<void> {
    const tc = await ensureToolchain({ projectRoot, log: () => undefined });
    const resolve: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < runs; i++) {
        resolve.push(await timeIt(() => ensureToolchain({ projectRoot, log: () => undefined, ignorePath: true })));
        baseline.push(
            await timeIt(() => spawnSync(tc.pulumi, ["version"], { env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } })),
        );
    }
    const r = median(resolve);
    const b = median(baseline);
    console.log(`warm toolchain resolution: median ${r.toFixed(0)} ms over ${runs} runs (goal: well under 10 s)`);
    console.log(`baseline \`pulumi version\`: median ${b.toFixed(0)} ms; ratio resolution/baseline ${(r / b).toFixed(2)}`);
}

async function cold(): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-cold-"));
    try {
        const env = {
            ...process.env,
            GOMODCACHE: path.join(dir, "gomod"),
            GOCACHE: path.join(dir, "gobuild"),
            GITOPS_STAGES_CACHE: path.join(dir, "cache"),
        };
        const lines: string[] = [];
        const total = await timeIt(() =>
            ensureToolchain({ projectRoot, env, ignorePath: true, log: (l) => (console.log(l), lines.push(l)) }),
        );
        console.log(`cold toolchain build (empty Go module, build and toolchain caches): ${(total / 1000).toFixed(1)} s`);
    } finally {
        // Go marks its module cache read-only; make it removable.
        spawnSync("chmod", ["-R", "u+w", dir]);
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    console.log(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${new Date().toISOString()}`);
    // --only toolchain,promotion,floor,scale,throughput,argocd,replicas (default: all but argocd, which
    // needs the cluster tier's tools of the tests set, and replicas, which needs root for network
    // namespaces and PostgreSQL); --runs N (default 5).
    const only = (args.find((a) => a.startsWith("--only="))?.slice(7) ?? "").split(",").filter(Boolean);
    const runs = Number(args.find((a) => a.startsWith("--runs="))?.slice(7) ?? 5);
    if (only.length === 0 || only.includes("toolchain")) await warm(7);
    if (args.includes("--cold")) await cold();
    await pipelineBenchmarks(only.filter((o) => o !== "toolchain").length || only.length === 0 ? only.filter((o) => o !== "toolchain") : ["none"], runs);
}

main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
});
