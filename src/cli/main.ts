/**
 * The `stages` command line: its grammar is commander's (program.ts); each verb calls the core, prints a readable
 * result (or JSON with --json) and exits with the code the error map (src/runner/error-map.ts) gives.
 */
// First: defers modules of @pulumi/pulumi that the CLI never uses (see lazy-closure.ts).
import "../lazy-closure";
import * as path from "node:path";

import { cliPulumiHome } from "../runner/adapters/backend";
import { TOOLCHAIN_SETS, type ToolchainSet } from "../toolchain/recipes";
import { ToolchainError, ensureToolchain, registerPlugins } from "../toolchain/resolve";
import { EXIT } from "../runner/error-map";
import { RunnerError, exitCode } from "../runner/errors";
import { ciVerb } from "./ci";
import { parse, program } from "./program";
import { runnerVerb } from "./verbs";

/** Exit codes of the verbs that are not requests (toolchain, usage); requests' come from the error map. */
const exitCodes = EXIT;

/** Project root: the folder holding package.json, three levels above dist/src/cli. */
export const projectRoot = path.resolve(__dirname, "..", "..", "..");


async function toolchainVerb(o: { set: string; withGithub?: boolean; json?: boolean; register?: boolean; env?: boolean }): Promise<number> {
    const set = o.set as ToolchainSet;
    if (!TOOLCHAIN_SETS.includes(set)) {
        process.stderr.write(`stages toolchain: --set: must be one of ${TOOLCHAIN_SETS.join(", ")}, got "${o.set}"\n`);
        return exitCodes.invalidInput;
    }
    const args = [...(o.withGithub ? ["--with-github"] : []), ...(o.json ? ["--json"] : []), ...(o.register ? ["--register"] : []), ...(o.env ? ["--env"] : [])];
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
        // The service and the CI client parse their own command lines (the client is shipped alone).
        // Loaded only for `serve`: the HTTP stack (fastify and its plugins) costs every other verb a quarter second.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        if (verb === "serve") return await (require("./serve") as typeof import("./serve")).serveVerb(rest, projectRoot);
        if (verb === "ci") return await ciVerb(rest);
        const p = program({ run: (parsed) => runnerVerb(parsed, projectRoot), toolchain: toolchainVerb });
        return await parse(p, argv, { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) });
    } catch (e) {
        // `serve`'s own parser (node:util): an unknown option or a missing value is bad input.
        if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
            process.stderr.write(`stages ${verb}: ${(e as Error).message}\n`);
            return exitCodes.invalidInput;
        }
        // `serve`'s start (its database, the data folder's binding): the runner's errors carry their exit code.
        if (e instanceof RunnerError) {
            process.stderr.write(`stages ${verb}: ${e.message}\n`);
            return exitCode(e);
        }
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
