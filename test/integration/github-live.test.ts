/**
 * The platform stack against real GitHub, one promotion through its protected ops repo, and the
 * GitHub Deployment the service's watch records of it on the dev repo. Runs
 * only when GITHUB_TOKEN and GITHUB_OWNER are set (an organisation and a token allowed to create
 * repositories and teams there) and GITHUB_RUNNER_ACTOR (the token's own identity as branch
 * protection names it, so that the runner is the ops repo's bypass); otherwise it reports itself
 * skipped with that reason. It creates throw-away repositories and teams with a random prefix and
 * destroys them at the end.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as path from "node:path";

import { LocalWorkspace } from "@pulumi/pulumi/automation";

import { GitHubRepo, GitHubRest } from "../../src/github/rest";
import { prepareProjectCopy } from "../../src/project";
import { observations, reportObservation } from "../../src/service/deployments";
import { createEngine, disposeEngine, repoRoot } from "../support/engine";
import { makeBundleDir } from "../support/fixtures";
import { bootstrapPipeline } from "../support/service";

describe("platform stack on real GitHub (live)", function () {
    before(function () {
        if (!process.env.GITHUB_TOKEN || !process.env.GITHUB_OWNER || !process.env.GITHUB_RUNNER_ACTOR) {
            process.stdout.write("      skipped: set GITHUB_TOKEN, GITHUB_OWNER and GITHUB_RUNNER_ACTOR (/<login> of the token's user, or its App's node ID) to run the live GitHub test\n");
            this.skip();
        }
    });

    it("creates and destroys throw-away repositories, teams, protection and environments", async function () {
        const engine = await createEngine();
        const prefix = `gs-live-${randomBytes(3).toString("hex")}`;
        try {
            const project = path.join(engine.dir, "project");
            prepareProjectCopy(repoRoot, project);
            const stack = await LocalWorkspace.createStack(
                { stackName: "platform", workDir: project },
                { ...engine.workspaceOptions, envVars: { ...engine.env, GITHUB_TOKEN: process.env.GITHUB_TOKEN! } },
            );
            await stack.setAllConfig({
                "gitops-stages:gitHost": { value: JSON.stringify({ kind: "github", owner: process.env.GITHUB_OWNER, runnerActor: process.env.GITHUB_RUNNER_ACTOR }) },
                "gitops-stages:repositories": { value: JSON.stringify({ dev: { name: `${prefix}-dev` }, ops: { name: `${prefix}-ops` } }) },
                "gitops-stages:teams": { value: JSON.stringify({ platformAdmins: `${prefix}-admins`, developers: `${prefix}-devs` }) },
                "gitops-stages:stages": {
                    value: JSON.stringify([
                        { name: "itg", owners: [`${prefix}-itg`] },
                        { name: "prod", owners: [`${prefix}-prod`], requireReview: true },
                    ]),
                },
                "gitops-stages:cluster": { value: JSON.stringify({ renderDir: path.join(engine.dir, "rendered") }) },
            });
            try {
                const up = await stack.up();
                assert.equal(up.summary.result, "succeeded");
                assert.match(up.outputs.repositories.value.ops, new RegExp(`${prefix}-ops\\.git$`));
                const again = await stack.up();
                const changed = Object.entries(again.summary.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
                assert.deepEqual(changed, []);
            } finally {
                await stack.destroy();
            }
        } finally {
            disposeEngine(engine);
        }
    });
    it("promotes one release through the protected ops repo: the runner reports validate and its commit lands on main", async function () {
        const prefix = `gs-live-${randomBytes(3).toString("hex")}`;
        const owner = process.env.GITHUB_OWNER!;
        const token = process.env.GITHUB_TOKEN!;
        const p = await bootstrapPipeline(
            `${prefix}-`,
            [{ name: "itg", owners: [`${prefix}-itg`] }],
            [],
            {},
            {
                gitHost: { kind: "github", owner, runnerActor: process.env.GITHUB_RUNNER_ACTOR },
                repositories: { dev: { name: `${prefix}-dev` }, ops: { name: `${prefix}-ops` } },
                teams: { platformAdmins: `${prefix}-admins`, developers: `${prefix}-devs` },
            },
            { GITHUB_TOKEN: token },
        );
        try {
            const r = spawnSync(
                process.execPath,
                [path.join(repoRoot, "bin", "stages"), "promote", "web@1.0.0", "--to", "itg", "--bundle", makeBundleDir(p.dir, "web"), "--image", "registry.example/web:1.0.0", "--commit", "0123456789abcdef0123456789abcdef01234567", "--json"],
                { env: { ...p.env, GITOPS_STAGES_TOKEN: p.operatorToken }, encoding: "utf8" },
            );
            assert.equal(r.status, 0, r.stderr);
            const gh = async (route: string) => {
                const res = await fetch(`https://api.github.com/repos/${owner}/${prefix}-ops${route}`, { headers: { authorization: `Bearer ${token}`, accept: "application/vnd.github+json" } });
                assert.ok(res.ok, `GET ${route}: ${res.status}`);
                return (await res.json()) as Record<string, unknown>;
            };
            const head = await gh("/commits/main");
            assert.match(String((head.commit as { message: string }).message), /^Promote web 1\.0\.0 to itg/);
            const status = await gh("/commits/main/status");
            const statuses = status.statuses as { context: string; state: string }[];
            assert.ok(statuses.some((s) => s.context === "validate" && s.state === "success"), JSON.stringify(statuses));
            // No side branch is left behind.
            const branches = (await (await fetch(`https://api.github.com/repos/${owner}/${prefix}-ops/branches`, { headers: { authorization: `Bearer ${token}` } })).json()) as { name: string }[];
            assert.deepEqual(branches.map((b) => b.name), ["main"]);

            // The service's watch records what a stage's owners deployed as a Deployment on the dev
            // repo (platform output devRepository), once per promotion commit.
            const dev = JSON.parse(p.pulumi("stack", "output", "devRepository", "--json", "--stack", "platform")) as GitHubRepo;
            assert.equal(dev.repository, `${owner}/${prefix}-dev`);
            const devHead = (await (await fetch(`https://api.github.com/repos/${owner}/${prefix}-dev/commits/main`, { headers: { authorization: `Bearer ${token}` } })).json()) as { sha: string };
            const [o] = observations([{ stage: "itg", apps: {}, lastChange: null, deployment: { state: "deployed", commit: String(head.sha), message: "synced, Healthy" } }]);
            const promotion = { commit: String(head.sha), change: { kind: "promote" as const, app: "web", version: "1.0.0", sourceCommit: devHead.sha } };
            const first = await reportObservation(o, [promotion], { dev, rest: new GitHubRest(token) });
            const id = first.releases[0].githubDeployment;
            assert.ok(id, first.message);
            const again = await reportObservation(o, [promotion], { dev, rest: new GitHubRest(token) });
            assert.equal(again.releases[0].githubDeployment, id);
            const listed = (await (await fetch(`https://api.github.com/repos/${owner}/${prefix}-dev/deployments?environment=itg`, { headers: { authorization: `Bearer ${token}` } })).json()) as { id: number; payload: { app: string; version: string } }[];
            assert.deepEqual(listed.map((d) => [d.id, d.payload.app, d.payload.version]), [[id, "web", "1.0.0"]]);
            const deploymentStatuses = (await (await fetch(`https://api.github.com/repos/${owner}/${prefix}-dev/deployments/${id}/statuses`, { headers: { authorization: `Bearer ${token}` } })).json()) as { state: string }[];
            assert.deepEqual(deploymentStatuses.map((x) => x.state), ["success"]);
        } finally {
            // Each destroy on its own, so that a failed first one still removes the repositories and teams.
            const problems: string[] = [];
            for (const stack of ["itg", "platform"]) {
                try {
                    p.pulumi("destroy", "--yes", "--skip-preview", "--stack", stack);
                } catch (e) {
                    problems.push(`destroy ${stack}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
                }
            }
            p.dispose();
            if (problems.length) process.stdout.write(`      cleanup problems (remove ${prefix}-* by hand): ${problems.join("; ")}\n`);
        }
    });
});
