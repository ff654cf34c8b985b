/** The CI side: the workflow the platform writes into the dev repo, and the `stages ci` client's retries. */
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";

import { parsePlatformConfig } from "../../src/config/platform";
import { devSkeleton } from "../../src/program/ops/skeleton";
import { CI_PATHS, ciClientScript, ciWorkflow } from "../../src/program/ops/workflows";

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        execFile(process.execPath, [file, ...args], { env }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
}

describe("CI of the dev repo", function () {
    it("the workflow: MR deploy and destroy; itg promoted, waited for and tested on push; each stage synced by hand tested and promoted on from the deployment its owners' sync records", function () {
        const cfg = parsePlatformConfig({ stages: [{ name: "itg" }, { name: "tst" }, { name: "perf", requireReview: true }, { name: "prod", requireReview: true }] }, { projectDir: "/srv/project", stack: "platform" });
        type Wf = { on: Record<string, unknown>; jobs: Record<string, { if: string; needs?: string; environment: string; steps: { run?: string }[]; outputs?: Record<string, string> }> };
        const wf = YAML.parse(ciWorkflow(cfg)) as Wf;
        assert.ok("deployment_status" in wf.on, "the workflow does not react to deployment statuses");
        assert.deepEqual(Object.keys(wf.jobs), ["mr-deploy", "mr-destroy", "promote-itg", "promote-tst", "verify-tst", "promote-perf", "verify-perf", "promote-prod", "verify-prod"]);
        assert.match(wf.jobs["mr-deploy"].if, /pull_request.*!= 'closed'/);
        assert.match(wf.jobs["mr-destroy"].if, /== 'closed'/);
        assert.ok(wf.jobs["mr-deploy"].steps.some((s) => /\$CLIENT mr-deploy --mr \$\{\{ github.event.number \}\}/.test(s.run ?? "")));
        // itg syncs itself: tst follows in the same push run.
        assert.equal(wf.jobs["promote-tst"].needs, "promote-itg");
        assert.equal(wf.jobs["promote-tst"].if, "github.event_name == 'push'");
        // tst, perf, prod are synced by their owners: the next step starts from the deployment status.
        for (const [stage, next] of [["tst", "perf"], ["perf", "prod"]]) {
            const verify = wf.jobs[`verify-${stage}`];
            assert.match(verify.if, new RegExp(`deployment_status.state == 'success' && github.event.deployment.environment == '${stage}'`));
            const runs = verify.steps.map((st) => st.run ?? "");
            // A Deployment anyone could have made is checked against what Argo CD runs, before the tests.
            const check = runs.findIndex((r) => r === `$CLIENT wait "$APP@$VERSION" --stage ${stage} --timeout-minutes 5`);
            const testsAt = runs.findIndex((r) => new RegExp(`integration-test\\.sh ${stage}$`).test(r));
            assert.ok(check > 0 && testsAt > check, `${stage}: ${JSON.stringify(runs)}`);
            assert.equal(wf.jobs[`promote-${next}`].needs, `verify-${stage}`);
            assert.equal(wf.jobs[`promote-${next}`].if, verify.if);
            assert.equal(wf.jobs[`promote-${next}`].outputs!.version, "${{ github.event.deployment.payload.version }}");
        }
        assert.match(wf.jobs["verify-prod"].if, /environment == 'prod'/);
        for (const s of ["itg", "tst", "perf", "prod"]) {
            assert.equal(wf.jobs[`promote-${s}`].environment, s);
            assert.ok(wf.jobs[`promote-${s}`].steps.some((st) => new RegExp(`\\$CLIENT promote .* --to ${s} `).test(st.run ?? "")), s);
        }
        const itgSteps = wf.jobs["promote-itg"].steps.map((s) => s.run ?? "");
        const tests = itgSteps.findIndex((r) => /integration-test\.sh itg/.test(r));
        const waits = itgSteps.findIndex((r) => /^\$CLIENT wait "\$APP@\$VERSION" --stage itg /.test(r));
        assert.ok(tests > 0, "the integration tests run after itg");
        // Against what Argo CD deployed: the wait comes between the promotion and the tests.
        assert.ok(waits > 0 && waits < tests, `the wait for Argo CD's sync must precede the tests: ${JSON.stringify(itgSteps)}`);
        // No job waits for a sync by hand.
        for (const s of ["tst", "perf", "prod"]) assert.ok(!wf.jobs[`promote-${s}`].steps.some((st) => /\$CLIENT wait/.test(st.run ?? "")), s);
        // A first stage its owners sync by hand gets no wait either: it is verified from its deployment.
        const manual = parsePlatformConfig({ stages: [{ name: "itg", sync: "manual" }, { name: "prod" }] }, { projectDir: "/srv/project", stack: "platform" });
        const manualWf = YAML.parse(ciWorkflow(manual)) as Wf;
        assert.ok(!manualWf.jobs["promote-itg"].steps.some((st) => /\$CLIENT wait/.test(st.run ?? "")));
        assert.equal(manualWf.jobs["promote-prod"].needs, "verify-itg");
        // Only a promotion of this repository's app moves the pipeline on (not a rollback, not another app).
        assert.match(manualWf.jobs["verify-itg"].if, /payload\.kind == 'promote' && github\.event\.deployment\.payload\.app == \(vars\.GITOPS_STAGES_APP \|\| github\.event\.repository\.name\)/);
        // The version from a payload reaches the script through the environment, never its text.
        const promoteProd = (manualWf.jobs["promote-prod"] as unknown as { steps: { run?: string; env?: Record<string, string> }[] }).steps.find((st) => /\$CLIENT promote/.test(st.run ?? ""))!;
        assert.ok(!promoteProd.run!.includes("${{"), promoteProd.run);
        assert.equal(promoteProd.env!.VERSION, "${{ github.event.deployment.payload.version }}");
        // Manual, then automatic, then manual: the stage after the automatic one follows in the run
        // that the first stage's deployment started.
        const mixed = YAML.parse(ciWorkflow(parsePlatformConfig({ stages: [{ name: "qa", sync: "manual" }, { name: "itg", sync: "automatic" }, { name: "prod" }] }, { projectDir: "/srv/project", stack: "platform" }))) as Wf;
        assert.equal(mixed.jobs["promote-itg"].needs, "verify-qa");
        assert.equal(mixed.jobs["promote-prod"].needs, "promote-itg");
        assert.equal(mixed.jobs["promote-prod"].if, mixed.jobs["promote-itg"].if);
        assert.match(mixed.jobs["promote-prod"].if, /environment == 'qa'/);
    });

    it("the dev repo's skeleton carries the workflow and the client script", function () {
        const cfg = parsePlatformConfig({}, { projectDir: "/srv/project", stack: "platform" });
        const files = devSkeleton(cfg, ciClientScript());
        assert.ok(files[CI_PATHS.workflow].includes("name: gitops-stages"));
        assert.match(files[CI_PATHS.client], /^#!\/usr\/bin\/env node\n/);
        assert.ok(files[CI_PATHS.client].includes("module.exports.ciVerb(process.argv.slice(2))"));
    });

    describe("the client script", function () {
        let dir: string;
        let script: string;
        before(function () {
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-ci-"));
            script = path.join(dir, "ci.js");
            fs.writeFileSync(script, ciClientScript());
        });
        after(() => fs.rmSync(dir, { recursive: true, force: true }));

        it("retries 503 and 429 as Retry-After says, then follows the request to its end", async function () {
            const seen: string[] = [];
            const server = http.createServer((req, res) => {
                seen.push(`${req.method} ${req.url} ${req.headers.authorization === "Bearer tok-123456" ? "auth" : "noauth"}`);
                const n = seen.length;
                if (n === 1) return res.writeHead(503, { "retry-after": "1" }).end("{}");
                if (n === 2) return res.writeHead(429, { "retry-after": "1", "content-type": "application/json" }).end('{"error":{"kind":"rate-limited"}}');
                if (req.method === "POST") return res.writeHead(202, { "content-type": "application/json" }).end('{"requestId":"r-1","state":"queued"}');
                return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ requestId: "r-1", state: "done", result: { message: "web 1.0.0 promoted to itg" } }));
            });
            await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
            const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
            try {
                const r = await run(script, ["promote", "web@1.0.0", "--to", "itg", "--commit", "abcdef0"], { ...process.env, GITOPS_STAGES_URL: url, GITOPS_STAGES_TOKEN: "tok-123456" });
                assert.equal(r.code, 0, r.stderr);
                assert.equal(JSON.parse(r.stdout).state, "done");
                assert.match(r.stderr, /HTTP 503; retrying in 1 s/);
                assert.match(r.stderr, /HTTP 429; retrying in 1 s/);
                assert.deepEqual(seen.slice(0, 4), ["POST /v1/promote auth", "POST /v1/promote auth", "POST /v1/promote auth", "GET /v1/requests/r-1 auth"]);
                assert.ok(!r.stderr.includes("tok-123456") && !r.stdout.includes("tok-123456"), "the token was printed");
            } finally {
                server.close();
            }
        });

        it("gives up with exit 5 and says why; a missing setting is exit 2 naming it", async function () {
            const gone = await run(script, ["status", "--retries", "1"], { ...process.env, GITOPS_STAGES_URL: "http://127.0.0.1:9", GITOPS_STAGES_TOKEN: "tok-123456" });
            assert.equal(gone.code, 5, gone.stderr);
            assert.match(gone.stderr, /gave up after 2 attempts/);
            const env = { ...process.env };
            delete env.GITOPS_STAGES_TOKEN;
            const missing = await run(script, ["status"], { ...env, GITOPS_STAGES_URL: "http://127.0.0.1:9" });
            assert.equal(missing.code, 2);
            assert.match(missing.stderr, /GITOPS_STAGES_TOKEN is not set/);
        });
    });
});
