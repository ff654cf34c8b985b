/**
 * `npm run demo`: the main job on the embedded defaults. Everything lives under `.demo/` in the
 * project (git-ignored): a `file://` state backend, a Pulumi home with the toolchain's plugins, a
 * generated passphrase, and a copy of the project's Pulumi settings so that stack files the engine
 * writes never touch the tracked `stacks/` folder.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation";

import { prepareProjectCopy } from "../project";
import { ensureToolchain, registerPlugins, toolchainEnv } from "../toolchain/resolve";

/** Project root (dist/src/demo -> repo). */
const projectRoot = path.resolve(__dirname, "..", "..", "..");

/** Paths of the demo's private folder. */
export function demoLayout(root: string) {
    const base = path.join(root, ".demo");
    return {
        base,
        state: path.join(base, "state"),
        pulumiHome: path.join(base, "pulumi-home"),
        passphraseFile: path.join(base, "passphrase"),
        project: path.join(base, "project"),
        git: path.join(base, "git"),
        rendered: path.join(base, "rendered"),
    };
}

function passphrase(file: string): string {
    if (!fs.existsSync(file)) {
        fs.writeFileSync(file, randomBytes(24).toString("base64url"), { mode: 0o600 });
    }
    return fs.readFileSync(file, "utf8").trim();
}

async function main(): Promise<void> {
    const layout = demoLayout(projectRoot);
    for (const dir of [layout.state, layout.pulumiHome, layout.project]) fs.mkdirSync(dir, { recursive: true });
    const toolchain = await ensureToolchain({ projectRoot });
    registerPlugins(layout.pulumiHome, toolchain);
    prepareProjectCopy(projectRoot, layout.project);

    const base = { ...process.env };
    delete base.KUBECONFIG;
    const env = toolchainEnv(toolchain, {
        ...base,
        PULUMI_HOME: layout.pulumiHome,
        PULUMI_BACKEND_URL: `file://${layout.state}`,
        PULUMI_CONFIG_PASSPHRASE: passphrase(layout.passphraseFile),
    });
    const envVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
    const pulumiCommand = await PulumiCommand.get({ root: toolchain.root });

    process.stdout.write(`\n== platform stack: pulumi up (state: ${layout.state})\n`);
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: "platform", workDir: layout.project },
        { envVars, pulumiCommand, pulumiHome: layout.pulumiHome },
    );
    // The embedded default, with its folders kept together under .demo/.
    await stack.setAllConfig({
        "gitops-stages:gitHost": { value: JSON.stringify({ kind: "local", path: layout.git }) },
        "gitops-stages:cluster": { value: JSON.stringify({ renderDir: path.join(layout.rendered, "platform") }) },
    });
    const up = await stack.up({ onOutput: (s) => process.stdout.write(s), message: "demo: bootstrap platform" });
    process.stdout.write(`\n== result: ${up.summary.result}; outputs:\n`);
    for (const [name, out] of Object.entries(up.outputs)) {
        process.stdout.write(`  ${name} = ${out.secret ? "[secret]" : JSON.stringify(out.value)}\n`);
    }
    const history = await stack.history();
    process.stdout.write(`\n== history of the platform stack (${history.length} updates)\n`);
    for (const h of history) {
        process.stdout.write(`  #${h.version} ${h.kind} ${h.result} ${h.startTime} ${h.message}\n`);
    }
}

main().catch((e: unknown) => {
    process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
});
