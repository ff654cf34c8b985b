/**
 * The `stages` command line. Each verb parses its arguments, calls the core, prints a readable
 * result (or JSON with --json) and exits with the code the error map (src/runner/error-map.ts) gives.
 */
import * as path from "node:path";

import { cliPulumiHome } from "../runner/adapters/backend";
import { TOOLCHAIN_SETS, type ToolchainSet } from "../toolchain/recipes";
import { ToolchainError, ensureToolchain, registerPlugins } from "../toolchain/resolve";
import { EXIT } from "../runner/error-map";
import { ciVerb } from "./ci";
import { serveVerb } from "./serve";
import { runnerVerb } from "./verbs";

/** Exit codes of the verbs that are not requests (toolchain, usage); requests' come from the error map. */
const exitCodes = EXIT;

/** Project root: the folder holding package.json, three levels above dist/src/cli. */
export const projectRoot = path.resolve(__dirname, "..", "..", "..");


const USAGE = `usage: stages <verb> [options]        (every runner verb takes --json and --as <user>)
  Every verb checks its principal's rights (the user, or GITOPS_STAGES_TOKEN's token) and records
  that principal as the requester in the ops commit and the audit trail.

runner verbs:
  promote <app>@<version> --to <stage> --commit <sha> [--bundle <dir> --image <ref>]
          [--ci-run <url>] [--mr <n>] [--reason <text>]
          [--idempotency-key <key>] [--override-order]
  preview <app>@<version> --to <stage> --commit <sha> ...   the same, as a dry run: nothing written
  rollback <app> --stage <stage> [--to <version>] [--reason <text>]   and hold the app there
  hold <app> --stage <stage> [--reason <text>]     release <app> --stage <stage>
  approve <app>@<version> --stage <stage>          (an owner of the stage approves that release)
  status [--stage <stage>]                         drift [--stage <stage>]
  wait [<app>@<version>] --stage <stage> [--timeout <seconds>] [--for deployed|synced]
          until Argo CD has synced the stage's last commit and it is Healthy (--for synced: applied,
          whatever the rollout's health); default 600 s; a manual stage waits for its owners;
          with <app>@<version>, the stage must hold that release (else exit 4)
  sync --stage <stage> [--wait [--timeout <seconds>] [--for deployed|synced]]
          [--argocd-url <url>] [--argocd-token-file <file>]
          an owner syncs their stage through Argo CD's API as themselves: the token comes from
          $ARGOCD_AUTH_TOKEN or the file; Argo CD's RBAC and sync windows decide (refusal: exit 3)
  history <stage> [--commit <sha>]                 the audit trail, or one ops repo commit of it
  mr deploy --mr <n> --app <app> --bundle <dir> --image <ref> --commit <sha> [--ttl-hours <h>]
  mr destroy <n>                                   mr reap

sensitive configuration (needs the secrets right on the stage; values only from files or stdin):
  secret set <app> --stage <stage> KEY=@file|KEY=- ... [--name <secret>] [--namespace <ns>]
          [--cert <file>] [--namespace-wide | --cluster-wide] [--replace] [--reason <text>]
  secret list --stage <stage> [<app>]              keys and scopes only, never values
  secret rm <app> --stage <stage> [--name <secret> [KEY ...]]
  secret reseal --stage <stage> [--cert <new.pem> --private-key <old.pem> ...]
  (the controller is reached through the platform's cluster, or --controller-url <url>)
  GITOPS_STAGES_TOKEN=<token> makes any verb act with that token's rights instead of the user's

exit codes: 0 ok, 2 invalid input, 3 refused by policy or not allowed, 4 not found,
            5 conflict or timeout, 1 anything else, 130/143 cancelled by SIGINT/SIGTERM

service:
  serve [--port 8080] [--host 127.0.0.1] [--database postgres://...|sqlite:<file>] [--replica <name>]
        [--concurrency 4] [--rate-per-minute 120]
      The runner over HTTP (/v1, OpenAPI at /v1/openapi.json, status page at /); JSON logs on stdout.
  ci promote|preview <app>@<version> --to <stage> --commit <sha> [--bundle <dir> --image <ref>]
  ci mr-deploy --mr <n> --app <app> --bundle <dir> --image <ref> --commit <sha>
  ci mr-destroy <n>      ci status [--stage <stage>]
  ci wait [<app>@<version>] --stage <stage> [--timeout-minutes 60] [--for deployed|synced]   as wait, through the service
      The client CI calls: GITOPS_STAGES_URL and GITOPS_STAGES_TOKEN; retries 429/503; waits for
      the request and exits with the codes above.

other verbs:
  toolchain [--set engine|tests] [--with-github] [--json] [--register] [--env]
      Find or build the Pulumi CLI, Node.js language host and provider plugins, and print each
      with its version and origin. --set tests also builds the cluster tier's servers and tools
      (kube-apiserver, etcd, the Sealed Secrets controller, kubeseal), which only the tests run. --register also installs the plugins and the language host
      into $PULUMI_HOME (default ~/.pulumi) so that a plain \`pulumi up\` finds them without
      downloading. --env registers them and prints shell exports that put the CLI on PATH:
      eval "$(npx stages toolchain --env)".
`;

async function toolchainVerb(argv: string[]): Promise<number> {
    const known = new Set(["--with-github", "--json", "--register", "--env"]);
    const args: string[] = [];
    let set: ToolchainSet = "engine";
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = a === "--set" ? argv[++i] : a.startsWith("--set=") ? a.slice("--set=".length) : undefined;
        if (value !== undefined || a === "--set") {
            if (!TOOLCHAIN_SETS.includes(value as ToolchainSet)) {
                process.stderr.write(`stages toolchain: --set: must be one of ${TOOLCHAIN_SETS.join(", ")}, got "${value ?? ""}"\n`);
                return exitCodes.invalidInput;
            }
            set = value as ToolchainSet;
            continue;
        }
        if (!known.has(a)) {
            process.stderr.write(`stages toolchain: unknown option ${a}\n${USAGE}`);
            return exitCodes.invalidInput;
        }
        args.push(a);
    }
    const json = args.includes("--json");
    const tc = await ensureToolchain({
        projectRoot,
        set,
        withGithub: args.includes("--with-github"),
        log: json || args.includes("--env") ? () => undefined : undefined,
    });
    if (args.includes("--register") || args.includes("--env")) {
        // Where the Pulumi CLI itself looks (see cliPulumiHome).
        const home = cliPulumiHome(process.env);
        registerPlugins(home, tc);
        if (!json) process.stderr.write(`toolchain: plugins registered in ${home}/plugins\n`);
    }
    if (args.includes("--env")) {
        process.stdout.write(`export PATH="${tc.binDir}:$PATH"\nexport PULUMI_SKIP_UPDATE_CHECK=true\n`);
        return exitCodes.ok;
    }
    if (json) {
        process.stdout.write(
            JSON.stringify(
                {
                    set: tc.set,
                    binDir: tc.binDir,
                    components: tc.components.map((r) => ({
                        name: r.component.name,
                        binary: r.component.binary,
                        version: r.component.version,
                        origin: r.origin,
                        path: r.path,
                        seconds: r.seconds,
                    })),
                },
                null,
                2,
            ) + "\n",
        );
    } else {
        process.stdout.write(`toolchain ready (set ${tc.set}: ${tc.components.map((c) => c.component.name).join(", ")}): ${tc.binDir}\n`);
    }
    return exitCodes.ok;
}

/** Runs the CLI with these arguments and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
    const [verb, ...rest] = argv;
    try {
        switch (verb) {
            case "toolchain":
                return await toolchainVerb(rest);
            case "serve":
                return await serveVerb(rest, projectRoot);
            case "ci":
                return await ciVerb(rest);
            case "promote":
            case "preview":
            case "rollback":
            case "hold":
            case "release":
            case "approve":
            case "status":
            case "history":
            case "drift":
            case "wait":
            case "sync":
            case "mr":
            case "secret":
                return await runnerVerb(verb, rest, projectRoot);
            case undefined:
            case "help":
            case "--help":
            case "-h":
                process.stdout.write(USAGE);
                return verb === undefined ? exitCodes.invalidInput : exitCodes.ok;
            default:
                process.stderr.write(`stages: unknown verb "${verb}"\n${USAGE}`);
                return exitCodes.invalidInput;
        }
    } catch (e) {
        if (e instanceof ToolchainError) {
            process.stderr.write(`stages ${verb}: ${e.message}\n`);
            if (e.detail) process.stderr.write(`${e.detail}\n`);
            return exitCodes.failure;
        }
        throw e;
    }
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => process.exit(code),
        (e: unknown) => {
            process.stderr.write(`stages: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
            process.exit(exitCodes.failure);
        },
    );
}
