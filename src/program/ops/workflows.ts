/**
 * What CI of the dev repo runs: a GitHub Actions workflow that calls the runner service through
 * `stages ci` (shipped into the repo as one dependency-free script), and that script itself.
 */
import * as fs from "node:fs";

import * as esbuild from "esbuild";
import * as path from "node:path";

import type { PlatformConfig } from "../../config/platform";

/** Where the client script, the workflow and the starters of the app's own build and tests live in the dev repo. */
export const CI_PATHS = {
    client: ".github/gitops-stages/ci.js",
    workflow: ".github/workflows/gitops-stages.yml",
    build: "ci/build.sh",
    integrationTest: "ci/integration-test.sh",
} as const;

/**
 * A starter script the dev repo is seeded with (the app's build, its tests against a stage): kept
 * as shell files in the source tree, where they can be read and linted as what they are.
 */
export function starterScript(name: "build.sh" | "integration-test.sh"): string {
    // Compiled: dist/src/program/ops/ -> <root>/src/program/ops/starters; from source: ./starters.
    const dir = __filename.endsWith(".js") ? path.resolve(__dirname, "..", "..", "..", "..", "src", "program", "ops", "starters") : path.resolve(__dirname, "starters");
    return fs.readFileSync(path.join(dir, name), "utf8");
}

/** Where the `validate` check and its workflow live in the ops repo. */
export const OPS_CHECK_PATHS = { validator: ".github/gitops-stages/validate.js", workflow: ".github/workflows/validate.yml" } as const;

/**
 * A compiled module of ours as a standalone script: the module bundled with what it imports
 * (esbuild; it must need nothing beyond Node's own modules at run time) followed by a call of its
 * entry point, which returns the exit code.
 */
function shippedScript(compiled: string[], header: string[], call: string): string {
    // Compiled: dist/src/program/ops/ -> dist/src/<...>; from source: <root>/dist/src/<...>.
    const file = __filename.endsWith(".js") ? path.resolve(__dirname, "..", "..", ...compiled) : path.resolve(__dirname, "..", "..", "..", "dist", "src", ...compiled);
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` (or either README command) before \`pulumi up\``);
    // One file with what it imports from the project (the error map), so the dev repo needs
    // nothing but Node.js to run it.
    const bundled = esbuild.buildSync({ entryPoints: [file], bundle: true, platform: "node", format: "cjs", target: "node18", write: false, legalComments: "none", logLevel: "silent" });
    return ["#!/usr/bin/env node", ...header.map((l) => `// ${l}`), bundled.outputFiles[0].text.trimEnd(), call, ""].join("\n");
}

/** The `stages ci` client as a standalone script, for the dev repo. */
export function ciClientScript(): string {
    return shippedScript(
        ["cli", "ci.js"],
        ["gitops-stages CI client, written by the platform stack. Calls the runner service:", "GITOPS_STAGES_URL and GITOPS_STAGES_TOKEN; retries 429/503; waits for the request."],
        "module.exports.ciVerb(process.argv.slice(2)).then((code) => process.exit(code));",
    );
}

/** The ops repo's `validate` check as a standalone script (the runner runs the same rules on its own commits). */
export function opsValidateScript(): string {
    return shippedScript(
        ["program", "ops", "validate.js"],
        ["gitops-stages `validate` check of the ops repository, written by the platform stack.", "Usage: node .github/gitops-stages/validate.js --base origin/main"],
        "process.exit(module.exports.validateMain(process.argv.slice(2)));",
    );
}

/**
 * The ops repo's `validate` workflow: on every pull request to main (operators' changes) it runs
 * the check whose context the protection of main requires. It does not run on pushes: the runner
 * reports `validate` itself on each of its commits, after running the same rules, before it
 * pushes (a workflow run on the push would add a second, later `validate` for the same commit).
 */
export function opsValidateWorkflow(): string {
    return [
        "# Written by the gitops-stages platform stack. The protection of main requires this check.",
        "name: validate",
        "on:",
        "  pull_request:",
        "    branches: [main]",
        "permissions:",
        "  contents: read",
        "jobs:",
        "  validate:",
        "    runs-on: ubuntu-latest",
        "    steps:",
        "      - uses: actions/checkout@v4",
        "        with:",
        "          fetch-depth: 0",
        "      - uses: actions/setup-node@v4",
        "        with:",
        "          node-version: 20",
        `      - run: node ${OPS_CHECK_PATHS.validator} --base "origin/\${{ github.base_ref }}" --head HEAD`,
        "",
    ].join("\n");
}

/** Every job: the stage's runner URL and token from its GitHub Environment, then a checkout. */
const JOB_START = [
    "    env:",
    "      GITOPS_STAGES_URL: ${{ vars.GITOPS_STAGES_RUNNER_URL }}",
    "      GITOPS_STAGES_TOKEN: ${{ secrets.GITOPS_STAGES_RUNNER_TOKEN }}",
    "    steps:",
    "      - uses: actions/checkout@v4",
];

/**
 * The workflow: MR environments, then publish and promote through the stages in order.
 *
 * A stage Argo CD syncs automatically is waited for in the job that promoted into it (`ci wait`),
 * then tested, and the next promotion follows in the same run. A stage its owners sync by hand
 * may be synced hours later, which no job should sit waiting for (GitHub ends a job after 6 hours):
 * the run ends with that promotion, and the runner service, which watches the stages, records a
 * GitHub Deployment of the release on this repository once the owners' sync is Synced and Healthy
 * (or failed). Its `deployment_status` event starts a new run: that stage's tests (`verify-<stage>`),
 * then the promotion into the next stage, with the version from the deployment's payload.
 */
export function ciWorkflow(cfg: PlatformConfig): string {
    const stages = cfg.stages;
    const first = stages[0].name;
    const lines = [
        "# Written by the gitops-stages platform stack (once; edit the build steps to fit the app).",
        "# Each job runs in the GitHub Environment of its stage, which holds that stage's runner token;",
        "# environments marked for review wait for their owners before the job starts. Stages synced by",
        "# hand continue from the GitHub Deployment the runner service records once their owners synced.",
        "name: gitops-stages",
        "on:",
        "  pull_request:",
        "    types: [opened, synchronize, reopened, closed]",
        "  push:",
        "    branches: [main]",
        "  deployment_status:",
        "env:",
        "  APP: ${{ vars.GITOPS_STAGES_APP || github.event.repository.name }}",
        "  CLIENT: node .github/gitops-stages/ci.js",
        "jobs:",
        "  mr-deploy:",
        "    if: github.event_name == 'pull_request' && github.event.action != 'closed'",
        "    runs-on: ubuntu-latest",
        `    environment: ${first}`,
        ...JOB_START,
        "      - name: Build the image and the release bundle (chart/ and values/) into build/bundle",
        "        run: bash ci/build.sh \"mr-${{ github.event.number }}\"",
        "      - run: $CLIENT mr-deploy --mr ${{ github.event.number }} --app $APP --bundle build/bundle --image \"$(cat build/image)\" --commit ${{ github.sha }}",
        "  mr-destroy:",
        "    if: github.event_name == 'pull_request' && github.event.action == 'closed'",
        "    runs-on: ubuntu-latest",
        `    environment: ${first}`,
        ...JOB_START,
        "      - run: $CLIENT mr-destroy ${{ github.event.number }}",
    ];
    const tests = (stage: string) => ["      - name: Tests against the stage", `        run: bash ci/integration-test.sh ${stage}`, "        env:", "          SMOKE_URL: ${{ vars.SMOKE_URL }}"];
    // A Deployment the runner service recorded: a promotion of this repository's app that the
    // stage's owners synced and that runs Healthy. Anyone with write access may create Deployments
    // too, so the verify job first asks the runner whether Argo CD really runs that release there.
    const deployedHere = (stage: string) =>
        `github.event_name == 'deployment_status' && github.event.deployment_status.state == 'success' && github.event.deployment.environment == '${stage}' && github.event.deployment.payload.kind == 'promote' && github.event.deployment.payload.app == (vars.GITOPS_STAGES_APP || github.event.repository.name)`;
    // What starts each stage's promotion: the push for the first stage and every stage after an
    // automatic one in the same run; the deployment of the stage before when its owners sync it.
    const triggers: string[] = [];
    for (const [i, stage] of stages.entries()) {
        const prev = i > 0 ? stages[i - 1] : undefined;
        const job = `promote-${stage.name}`;
        const trigger = !prev ? "github.event_name == 'push'" : prev.sync === "automatic" ? triggers[i - 1] : deployedHere(prev.name);
        triggers.push(trigger);
        const needs = !prev ? undefined : prev.sync === "automatic" ? `promote-${prev.name}` : `verify-${prev.name}`;
        // The version: from the build, from the job before in the same run, or from the payload of
        // the deployment whose status started this run (through the environment, never into the
        // script's text: the runner checks it as a version).
        const version = !prev ? "${{ steps.build.outputs.version }}" : prev.sync === "automatic" ? `\${{ needs.promote-${prev.name}.outputs.version }}` : "${{ github.event.deployment.payload.version }}";
        lines.push(
            `  ${job}:`,
            `    if: ${trigger}`,
            ...(needs ? [`    needs: ${needs}`] : []),
            "    runs-on: ubuntu-latest",
            `    environment: ${stage.name}`,
            "    outputs:",
            `      version: ${version}`,
            ...JOB_START,
        );
        if (!prev) {
            lines.push(
                "      - name: Build the image and the release bundle (chart/ and values/) into build/",
                "        id: build",
                "        run: bash ci/build.sh release && echo \"version=$(cat build/version)\" >> \"$GITHUB_OUTPUT\"",
                `      - run: $CLIENT promote "$APP@$VERSION" --to ${stage.name} --bundle build/bundle --image "$(cat build/image)" --commit "$GITHUB_SHA"`,
                "        env:",
                `          VERSION: ${version}`,
            );
        } else {
            lines.push(`      - run: $CLIENT promote "$APP@$VERSION" --to ${stage.name} --commit "$GITHUB_SHA"`, "        env:", `          VERSION: ${version}`);
        }
        if (stage.sync === "automatic") {
            // The tests run against what Argo CD deployed, not against the commit alone.
            lines.push(
                "      - name: Wait until Argo CD has synced the promotion and the stage is Healthy",
                `        run: $CLIENT wait "$APP@$VERSION" --stage ${stage.name} --timeout-minutes 15`,
                "        env:",
                `          VERSION: ${version}`,
                ...tests(stage.name),
            );
        } else {
            // Synced by its owners whenever they choose: tested in the run their sync starts.
            lines.push(
                `  verify-${stage.name}:`,
                `    if: ${deployedHere(stage.name)}`,
                "    runs-on: ubuntu-latest",
                `    environment: ${stage.name}`,
                ...JOB_START,
                "      - name: Check with the runner that Argo CD runs this release in the stage, Healthy",
                `        run: $CLIENT wait "$APP@$VERSION" --stage ${stage.name} --timeout-minutes 5`,
                "        env:",
                "          VERSION: ${{ github.event.deployment.payload.version }}",
                ...tests(stage.name),
            );
        }
    }
    return lines.join("\n") + "\n";
}
