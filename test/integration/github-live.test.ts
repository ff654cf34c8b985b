/**
 * The platform stack against real GitHub. Runs only when GITHUB_TOKEN and GITHUB_OWNER are set
 * (an organisation and a token allowed to create repositories and teams there); otherwise it
 * reports itself skipped with that reason. It creates throw-away repositories and teams with a
 * random prefix and destroys them at the end.
 */
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as path from "node:path";

import { LocalWorkspace } from "@pulumi/pulumi/automation";

import { prepareProjectCopy } from "../../src/project";
import { createEngine, disposeEngine, repoRoot } from "../support/engine";

describe("platform stack on real GitHub (live)", function () {
    before(function () {
        if (!process.env.GITHUB_TOKEN || !process.env.GITHUB_OWNER) {
            process.stdout.write("      skipped: set GITHUB_TOKEN and GITHUB_OWNER to run the live GitHub test\n");
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
                "gitops-stages:gitHost": { value: JSON.stringify({ kind: "github", owner: process.env.GITHUB_OWNER }) },
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
});
