/**
 * `npm run demo`: the whole story on the embedded defaults, from nothing: bootstrap the platform
 * (local git host, Kubernetes rendered to files), publish the sample app, promote it through
 * every stage, ship a second release, roll prod back (which holds the app there), show the
 * refusal that hold causes, a merge-request environment, status, history and drift.
 *
 * Everything lives under `.demo/` (git-ignored) and each run starts from scratch.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { AutomationEngine } from "../runner/adapters/automation";
import { RunnerError } from "../runner/errors";
import { selfContainedEnv } from "../runner/adapters/environment";
import { DEFAULT_USER_VERBS } from "../runner/rights";
import { createRunner } from "../runner/index";

/** Project root (dist/src/demo -> repo). */
const projectRoot = path.resolve(__dirname, "..", "..", "..");

const say = (line: string) => process.stdout.write(`${line}\n`);
const step = (title: string) => say(`\n== ${title}`);

/** A bundle of the sample app for a version: the chart and values from examples/web, the given replicas in prod. */
function sampleBundle(into: string, version: string): string {
    const dir = path.join(into, `web-${version}`);
    fs.cpSync(path.join(projectRoot, "examples", "web"), dir, { recursive: true });
    const chart = path.join(dir, "chart", "Chart.yaml");
    fs.writeFileSync(chart, fs.readFileSync(chart, "utf8").replace(/^appVersion: .*$/m, `appVersion: "${version}"`));
    return dir;
}

async function main(): Promise<void> {
    const base = path.join(projectRoot, ".demo");
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(base, { recursive: true });
    // Only users named here may approve prod or override the stage order.
    fs.writeFileSync(path.join(base, "runner.json"), JSON.stringify({ users: { alice: { teams: ["prod-owners"], overrideOrder: true } } }, null, 2));

    const env = selfContainedEnv(base);
    step("toolchain and runner environment");
    const { runner, environment } = await createRunner({ projectRoot, dataDir: base, env, log: (l) => say(`   ${l}`) });
    say(`state: ${environment.backendUrl}   workspace: ${environment.workDir}`);

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

    const bundles = path.join(base, "bundles");
    const ci = { name: "ci", teams: [], canOverrideOrder: false, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };
    const alice = { name: "alice", teams: ["prod-owners"], canOverrideOrder: true, grants: [{ stages: ["*"], verbs: DEFAULT_USER_VERBS }] };
    const commit = () => randomBytes(20).toString("hex");
    const show = (r: { message: string; opsCommit?: string; state: string; requestId: string }) =>
        say(`${r.message} [${r.state}, request ${r.requestId}${r.opsCommit ? `, ops commit ${r.opsCommit.slice(0, 12)}` : ""}]`);

    for (const version of ["1.0.0", "1.1.0"]) {
        const sha = commit();
        step(`release web ${version}: publish with the first promotion, then promote stage by stage`);
        show(await runner.promote({ app: "web", version, to: "itg", requester: "ci", source: { commit: sha, ciRunUrl: `https://ci.example/runs/${version}` }, bundle: sampleBundle(bundles, version), image: `registry.example/web:${version}` }, ci));
        if (version !== "1.0.0") {
            say(`preview of web ${version} to tst (tst runs the previous release): the exact change, nothing written`);
            const preview = await runner.promote({ app: "web", version, to: "tst", requester: "ci", source: { commit: sha }, dryRun: true }, ci);
            for (const [file, d] of Object.entries(preview.files ?? {})) {
                say(`  --- ${file}`);
                for (const l of d.removed) say(`  - ${l}`);
                for (const l of d.added) say(`  + ${l}`);
            }
        }
        for (const to of ["tst", "perf"]) show(await runner.promote({ app: "web", version, to, requester: "ci", source: { commit: sha } }, ci));
        const id = `web-${version}-prod`;
        try {
            await runner.promote({ app: "web", version, to: "prod", requester: "ci", source: { commit: sha }, idempotencyKey: id }, ci);
        } catch (e) {
            if (!(e instanceof RunnerError)) throw e;
            say(`refused (${e.reason}): ${e.message}`);
        }
        await runner.approve(id, "prod", alice);
        say(`alice (prod owner) approved ${id}`);
        show(await runner.promote({ app: "web", version, to: "prod", requester: "ci", source: { commit: sha }, idempotencyKey: id }, ci));
    }

    step("rollback prod: back to the previous release, and hold web there");
    show(await runner.rollback({ app: "web", stage: "prod", requester: "alice", reason: "error rate up after 1.1.0" }));
    try {
        await runner.approve("web-1.1.0-prod-again", "prod", alice);
        await runner.promote({ app: "web", version: "1.1.0", to: "prod", requester: "ci", source: { commit: commit() }, idempotencyKey: "web-1.1.0-prod-again" }, ci);
    } catch (e) {
        if (!(e instanceof RunnerError)) throw e;
        say(`promotion refused as expected (${e.reason}): ${e.message}`);
    }

    step("merge-request environment mr-7 (deployed directly, rendered to files)");
    const mr = await runner.mrDeploy({ mr: 7, app: "web", bundle: sampleBundle(bundles, "1.2.0-mr.7"), image: "registry.example/web:mr-7", sourceCommit: commit(), requester: "ci", ttlHours: 48 });
    say(`${mr.message}`);
    const reaped = await runner.mrReap("ci");
    say(`reap: destroyed ${reaped.destroyed.length ? reaped.destroyed.join(", ") : "nothing"}; kept ${reaped.kept.map((k) => `${k.stack} until ${k.expiresAt}`).join(", ")}`);

    step("status: what runs where");
    for (const row of await runner.status()) {
        const apps = Object.entries(row.apps).map(([app, r]) => `${app} ${r.version}${r.hold ? ` (held by ${r.hold.by}: ${r.hold.reason})` : ""}`);
        say(`${row.stage.padEnd(5)} ${apps.join(", ") || "-"}`);
    }

    step("history of prod: the audit trail");
    for (const h of await runner.history("prod")) {
        const c = h.change;
        say(`${h.startTime} ${h.kind} ${h.result}: ${c ? `${c.kind} ${c.app} ${c.version ?? ""} by ${c.requester} (request ${c.requestId}${c.sourceCommit ? `, commit ${c.sourceCommit.slice(0, 12)}` : ""})` : "-"}`);
    }

    step("drift: refresh every stack (platform, stages, MR environments) in preview mode");
    for (const d of await runner.drift()) say(`${d.stack}: ${d.details.length ? d.details.join("; ") : "no drift"}`);

    step("the ops repository's history");
    const { execFileSync } = await import("node:child_process");
    say(execFileSync("git", ["--git-dir", path.join(base, "git", "app-ops.git"), "log", "--format=%h %s", "main"], { encoding: "utf8" }).trimEnd());
    say(`\nrendered manifests: ${path.join(base, "rendered")}\nops repository:     ${path.join(base, "git", "app-ops.git")}`);
}

main().catch((e: unknown) => {
    process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
});
