/**
 * The `stages` command line's grammar, on commander: every verb, its arguments and options, and
 * the help generated from them (`stages --help`, `stages <verb> --help`). Parsing stops at the
 * command line's own syntax (unknown options, a flag without its value): what the values mean is
 * the command layer's to check (src/runner/commands.ts), so both transports answer bad input alike.
 * `serve` and `ci` keep parsers of their own (`ci` is shipped to CI as one bundled file).
 */
import { Command, CommanderError } from "commander";

/** A verb's command line once parsed: its options (camelCase) and arguments, in order. */
export interface ParsedVerb {
    readonly verb: string;
    /** For `mr` and `secret`: deploy, destroy, reap; set, list, rm, reseal. */
    readonly sub?: string;
    readonly values: Record<string, unknown>;
    readonly positionals: string[];
}

/** What follows the generated help: identity, exit codes, and the verbs with parsers of their own. */
const HELP_AFTER = `
Every runner verb acts as its principal (the user: --as, $GITOPS_STAGES_USER or the OS user; or
the token in $GITOPS_STAGES_TOKEN), checks its rights, and records it as the requester in the ops
commit and the audit trail. Changes are recorded in the request log and run one per stack.

exit codes: 0 ok, 2 invalid input, 3 refused by policy or not allowed, 4 not found,
            5 conflict, timeout or unavailable, 1 anything else, 130/143 cancelled by SIGINT/SIGTERM

service and CI client (parsers of their own; see docs/service.md):
  serve [--port 8080] [--host 127.0.0.1] [--database postgres://...|sqlite:<file>] [--replica <name>]
        [--concurrency 4] [--rate-per-minute 120] [--watch-seconds 30]
  ci promote|preview <app>@<version> --to <stage> --commit <sha> [--bundle <dir> --image <ref>]
  ci mr-deploy --mr <n> --app <app> --bundle <dir> --image <ref> --commit <sha>
  ci mr-destroy <n>      ci status [--stage <stage>]
  ci wait [<app>@<version>] --stage <stage> [--timeout-minutes 60] [--for deployed|synced]
      promote and preview also take --ci-run <url> (default: the GitHub Actions run), --mr <n>,
      --reason <text>, --idempotency-key <key> and --claimed-requester <name> (default
      $GITHUB_ACTOR, kept as a claim); mr-deploy takes --ttl-hours <h>; every verb --retries 6.
      The client CI calls: GITOPS_STAGES_URL and GITOPS_STAGES_TOKEN; retries 429/503; waits for
      the request and exits with the codes above.
`;

/** What `--claimed-requester` means, in every verb's help. */
const CLAIM = "whom you ask for (say, who merged): kept as your claim in a Claimed-Requester trailer; the requester is always you";

/** Options every runner verb takes. */
function common(c: Command): Command {
    return c
        .option("--json", "print the answer (or the error) as JSON on stdout")
        .option("--as <user>", "act as this local user (not with $GITOPS_STAGES_TOKEN)")
        .option("--quiet", "no engine progress on stderr")
        .option("--controller-url <url>", "the Sealed Secrets controller's URL, instead of the platform's cluster");
}

/** Where commander writes its errors and help while a command line is parsed (see {@link parse}). */
const written: string[] = [];

/**
 * The program. `run` receives each runner verb's parsed command line and `toolchain` the
 * toolchain verb's; both resolve with the exit code, which {@link parse} returns.
 */
export function program(handlers: { run: (parsed: ParsedVerb) => Promise<number>; toolchain: (o: { set: string; withGithub?: boolean; json?: boolean; register?: boolean; env?: boolean }) => Promise<number> }): Command {
    const p = new Command("stages")
        .description("Promote releases stage by stage through the GitOps pipeline")
        .addHelpText("after", HELP_AFTER)
        .configureOutput({ writeOut: (s) => written.push(s), writeErr: (s) => written.push(s), outputError: (s) => written.push(s) })
        .exitOverride()
        .showSuggestionAfterError(false);
    const state = { exit: 0 };
    const one = (a: unknown[]) => (a[0] === undefined ? [] : [a[0] as string]);
    const rest = (a: unknown[]) => [...one(a), ...((a[1] as string[] | undefined) ?? [])];
    const none = () => [];
    /** A runner verb (or sub-verb of `parent`): options, arguments and the action that hands them on. */
    const verb = (name: string, positionals: (a: unknown[]) => string[], configure: (c: Command) => Command, parent: Command = p, sub?: string) => {
        const c = common(parent.command(sub ?? name).exitOverride());
        configure(c).action(async (...args: unknown[]) => {
            const cmd = args[args.length - 1] as Command;
            state.exit = await handlers.run({ verb: name, ...(sub ? { sub } : {}), values: cmd.opts(), positionals: positionals(args.slice(0, -2)) });
        });
    };
    const promote = (c: Command) =>
        c
            .argument("[release]", "<app>@<version>")
            .option("--to <stage>", "the stage")
            .option("--commit <sha>", "the dev repo commit the release was built from")
            .option("--bundle <dir>", "the release bundle (chart/ and values/), with its first promotion")
            .option("--image <ref>", "the image, with its first promotion")
            .option("--ci-run <url>", "the CI run that asks")
            .option("--mr <n>", "the merge request")
            .option("--reason <text>", "why, for the commit's body")
            .option("--idempotency-key <key>", "the same key again answers the first request's success")
            .option("--override-order", "skip the stage order (users allowed to; recorded in the commit)")
            .option("--claimed-requester <name>", CLAIM);
    verb("promote", one, (c) => promote(c.description("promote a release into a stage (its first promotion, with its bundle, publishes it)")));
    verb("preview", one, (c) => promote(c.description("the same as promote, as a dry run: the exact file changes, nothing written")));
    verb("rollback", one, (c) => c.description("roll an app back in a stage (to the previous release, or --to) and hold it there").argument("[app]").option("--stage <stage>").option("--to <version>").option("--reason <text>").option("--idempotency-key <key>").option("--claimed-requester <name>", CLAIM));
    verb("hold", one, (c) => c.description("hold an app in a stage: no promotion moves it").argument("[app]").option("--stage <stage>").option("--reason <text>").option("--claimed-requester <name>", CLAIM));
    verb("release", one, (c) => c.description("lift the hold on an app in a stage").argument("[app]").option("--stage <stage>").option("--reason <text>").option("--claimed-requester <name>", CLAIM));
    verb("approve", one, (c) => c.description("an owner of the stage approves that release for it").argument("[release]", "<app>@<version>").option("--stage <stage>"));
    verb("status", none, (c) => c.description("what runs in each stage: desired (the ops repo) and deployed (Argo CD)").option("--stage <stage>"));
    verb("drift", none, (c) => c.description("what differs between the state and the world, per stack").option("--stage <stage>"));
    verb("wait", one, (c) =>
        c
            .description("wait until Argo CD has synced the stage's last commit and it is Healthy (a manual stage: until its owners sync it)")
            .argument("[release]", "<app>@<version> the stage must hold (else exit 4)")
            .option("--stage <stage>")
            .option("--timeout <seconds>", "give up after this long (default 600)")
            .option("--for <state>", "deployed (synced and Healthy, the default) or synced (applied, whatever the rollout's health)"),
    );
    verb("sync", none, (c) =>
        c
            .description("an owner syncs their stage through Argo CD's API as themselves; Argo CD's RBAC and sync windows decide")
            .option("--stage <stage>")
            .option("--wait", "then wait as `wait` does")
            .option("--timeout <seconds>")
            .option("--for <state>")
            .option("--argocd-url <url>", "Argo CD's URL (default: the platform's)")
            .option("--argocd-token-file <file>", "your Argo CD token (default: $ARGOCD_AUTH_TOKEN)"),
    );
    verb("history", one, (c) => c.description("the audit trail of a stage, or one ops repo commit of it").argument("[stage]").option("--commit <sha>"));

    const mr = p.command("mr").description("merge-request environments").exitOverride();
    verb("mr", none, (c) => c.description("deploy (or update) a merge request's environment").option("--mr <n>").option("--app <app>").option("--bundle <dir>").option("--image <ref>").option("--commit <sha>").option("--ttl-hours <h>"), mr, "deploy");
    verb("mr", one, (c) => c.description("destroy a merge request's environment").argument("[number]"), mr, "destroy");
    verb("mr", none, (c) => c.description("destroy every merge-request environment whose time ran out"), mr, "reap");

    const secret = p.command("secret").description("sensitive configuration, sealed for the stage's cluster (values only from files or stdin)").exitOverride();
    const secretVerb = (sub: string, positionals: (a: unknown[]) => string[], configure: (c: Command) => Command) => verb("secret", positionals, (c) => configure(c.option("--stage <stage>").option("--reason <text>")), secret, sub);
    secretVerb("set", rest, (c) =>
        c
            .description("seal KEY=@file or KEY=- (stdin) values into the app's secret")
            .argument("[app]")
            .argument("[values...]", "KEY=@file or KEY=-")
            .option("--name <secret>")
            .option("--namespace <ns>")
            .option("--cert <file>", "the controller's certificate, for sealing offline")
            .option("--namespace-wide")
            .option("--cluster-wide")
            .option("--replace", "replace every key (needed to change the scope)"),
    );
    secretVerb("list", one, (c) => c.description("names, scopes and keys, never values").argument("[app]"));
    secretVerb("rm", rest, (c) => c.description("remove keys, or the whole secret").argument("[app]").argument("[keys...]").option("--name <secret>"));
    secretVerb("reseal", none, (c) => c.description("seal every secret of the stage again with the controller's current key").option("--cert <file>").option("--private-key <file>", "an old private key (repeatable)", (v: string, prev: string[] = []) => [...prev, v]));

    p.command("toolchain")
        .description("find or build the Pulumi CLI, the language host and the provider plugins, and print each with its version and origin")
        .exitOverride()
        .option("--set <set>", "engine, or tests (also the cluster tier's servers and tools)", "engine")
        .option("--with-github", "also the GitHub provider")
        .option("--json")
        .option("--register", "also install the plugins and the language host into $PULUMI_HOME")
        .option("--env", "register them and print shell exports that put the CLI on PATH")
        .action(async (o: { set: string }) => {
            state.exit = await handlers.toolchain(o);
        });
    programs.set(p, state);
    return p;
}

const programs = new WeakMap<Command, { exit: number }>();

/**
 * Parses and runs a command line; returns the exit code: the action's, 0 for help asked for, and
 * 2 for the command line's own errors (and for no verb at all), said on stderr and, with --json,
 * as the error JSON every verb prints.
 */
export async function parse(p: Command, argv: string[], out: { stdout: (t: string) => void; stderr: (t: string) => void }): Promise<number> {
    written.length = 0;
    if (argv.length === 0) {
        p.outputHelp({ error: true });
        out.stderr(written.join(""));
        return 2;
    }
    try {
        await p.parseAsync(argv, { from: "user" });
        return programs.get(p)?.exit ?? 1;
    } catch (e) {
        if (!(e instanceof CommanderError)) throw e;
        if (e.code === "commander.helpDisplayed" || e.code === "commander.help" || e.code === "commander.version") {
            // Help asked for is an answer (commander's exit code 0); help shown because a verb is missing (`stages mr`) is not.
            const asked = e.exitCode === 0;
            (asked ? out.stdout : out.stderr)(written.join(""));
            return asked ? 0 : 2;
        }
        out.stderr(written.join("") || `${e.message}\n`);
        if (argv.includes("--json")) out.stdout(JSON.stringify({ error: { kind: "invalid", message: e.message.replace(/^error: /, "") } }, null, 2) + "\n");
        return 2;
    }
}
