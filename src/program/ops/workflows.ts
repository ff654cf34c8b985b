/**
 * What CI of the dev repo runs: a GitHub Actions workflow that calls the runner service through
 * `stages ci` (shipped into the repo as one dependency-free script), and that script itself.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import type { PlatformConfig } from "../../config/platform";

/** Where the client script and the workflow live in the dev repo. */
export const CI_PATHS = { client: ".github/gitops-stages/ci.js", workflow: ".github/workflows/gitops-stages.yml" } as const;

/**
 * The `stages ci` client as a standalone script: the compiled module (it uses only Node's own
 * modules) followed by a call of its entry point.
 */
export function ciClientScript(): string {
    // Compiled: dist/src/program/ops/ -> dist/src/cli/ci.js; from source: <root>/dist/src/cli/ci.js.
    const file = __filename.endsWith(".js") ? path.resolve(__dirname, "..", "..", "cli", "ci.js") : path.resolve(__dirname, "..", "..", "..", "dist", "src", "cli", "ci.js");
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` (or either README command) before \`pulumi up\``);
    return [
        "#!/usr/bin/env node",
        "// gitops-stages CI client, written by the platform stack. Calls the runner service:",
        "// GITOPS_STAGES_URL and GITOPS_STAGES_TOKEN; retries 429/503; waits for the request.",
        fs.readFileSync(file, "utf8").replace(/\/\/# sourceMappingURL=.*$/m, ""),
        "module.exports.ciVerb(process.argv.slice(2)).then((code) => process.exit(code));",
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

/** The workflow: MR environments, then publish and promote through the stages in order. */
export function ciWorkflow(cfg: PlatformConfig): string {
    const stages = cfg.stages.map((s) => s.name);
    const first = stages[0];
    const lines = [
        "# Written by the gitops-stages platform stack (once; edit the build steps to fit the app).",
        "# Each job runs in the GitHub Environment of its stage, which holds that stage's runner token;",
        "# environments marked for review wait for their owners before the job starts.",
        "name: gitops-stages",
        "on:",
        "  pull_request:",
        "    types: [opened, synchronize, reopened, closed]",
        "  push:",
        "    branches: [main]",
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
        "        run: ./ci/build.sh \"mr-${{ github.event.number }}\"",
        "      - run: $CLIENT mr-deploy --mr ${{ github.event.number }} --app $APP --bundle build/bundle --image \"$(cat build/image)\" --commit ${{ github.sha }}",
        "  mr-destroy:",
        "    if: github.event_name == 'pull_request' && github.event.action == 'closed'",
        "    runs-on: ubuntu-latest",
        `    environment: ${first}`,
        ...JOB_START,
        "      - run: $CLIENT mr-destroy ${{ github.event.number }}",
    ];
    let previous: string | undefined;
    for (const [i, stage] of stages.entries()) {
        const job = `promote-${stage}`;
        // The version travels from the first job to the last through job outputs.
        const version = i === 0 ? "${{ steps.build.outputs.version }}" : `\${{ needs.${previous}.outputs.version }}`;
        lines.push(
            `  ${job}:`,
            "    if: github.event_name == 'push'",
            ...(previous ? [`    needs: ${previous}`] : []),
            "    runs-on: ubuntu-latest",
            `    environment: ${stage}`,
            "    outputs:",
            `      version: ${version}`,
            ...JOB_START,
        );
        if (i === 0) {
            lines.push(
                "      - name: Build the image and the release bundle (chart/ and values/) into build/",
                "        id: build",
                "        run: ./ci/build.sh release && echo \"version=$(cat build/version)\" >> \"$GITHUB_OUTPUT\"",
                `      - run: $CLIENT promote "$APP@${version}" --to ${stage} --bundle build/bundle --image "$(cat build/image)" --commit \${{ github.sha }}`,
                "      - name: Integration tests against the stage",
                `        run: ./ci/integration-test.sh ${stage}`,
            );
        } else {
            lines.push(`      - run: $CLIENT promote "$APP@${version}" --to ${stage} --commit \${{ github.sha }}`);
        }
        previous = job;
    }
    return lines.join("\n") + "\n";
}
