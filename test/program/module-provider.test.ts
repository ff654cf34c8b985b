/**
 * Our dynamic resources name their provider module instead of serializing a closure, and the
 * processes that run the engine defer @pulumi/pulumi's closure serializer (src/lazy-closure.ts).
 * The real dynamic-provider host runs these providers in every engine suite (GitFiles writes the
 * ops repo); here: what the host is handed, and what a process loads.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import Module from "node:module";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { compiledModule, providerText } from "../../src/program/module-provider";
import { engineEnv } from "../../src/toolchain/resolve";

/** Evaluates a `__provider` text as the host does (a module from a string) and returns its provider. */
function hostProvider(text: string): Record<string, unknown> {
    const m = new Module("__provider") as Module & { _compile(code: string, filename: string): void };
    m.paths = [];
    m._compile(text, "");
    return (m.exports as { handler(): Record<string, unknown> }).handler();
}

/** The compiled project (dist, or wherever the tests were compiled to). */
const built = path.resolve(__dirname, "..", "..");

describe("dynamic resources served by a module of ours", function () {
    it("hands the host a provider text that loads the compiled module and returns its provider", function () {
        const cases: [string, string, string[]][] = [
            ["src/git/providers", "gitFiles", ["create", "diff", "update", "read", "delete"]],
            ["src/git/providers", "bareRepository", ["create", "diff", "update", "read", "delete"]],
            ["src/program/ssh-key-provider", "sshKeyPair", ["create", "diff"]],
        ];
        for (const [module, factory, methods] of cases) {
            const file = compiledModule(module);
            assert.ok(path.isAbsolute(file) && file.endsWith(`${module}.js`) && fs.existsSync(file), file);
            const text = providerText({ module, factory });
            assert.ok(text.includes(JSON.stringify(file)), text);
            const provider = hostProvider(text);
            assert.deepEqual(Object.keys(provider).sort(), [...methods].sort(), `${module}.${factory}`);
        }
    });

    it("looks for the module above the host's working folder first, then where it was written from", function () {
        const text = providerText({ module: "src/git/providers", factory: "gitFiles" });
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "module-provider-"));
        const cwd = process.cwd();
        try {
            // Another installation's folder, as a replica installed elsewhere runs the host in.
            fs.mkdirSync(path.join(dir, "dist", "src", "git"), { recursive: true });
            fs.writeFileSync(path.join(dir, "dist", "src", "git", "providers.js"), "exports.gitFiles = () => ({ from: __filename });\n");
            // The host runs in the program's folder, below the installation's root.
            fs.mkdirSync(path.join(dir, "src", "program"), { recursive: true });
            process.chdir(path.join(dir, "src", "program"));
            assert.deepEqual(hostProvider(text), { from: fs.realpathSync(path.join(dir, "dist", "src", "git", "providers.js")) });
            // A folder without it: the writer's installation.
            process.chdir(os.tmpdir());
            assert.ok(typeof hostProvider(text).create === "function");
        } finally {
            process.chdir(cwd);
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("refuses a module that is not built, naming the file", function () {
        assert.throws(() => compiledModule("src/git/no-such-provider"), /no-such-provider\.js is missing: run `npm run build`/);
    });

    it("the CLI's process loads the Automation API without TypeScript or npm's resolver, and serializes a function when asked", function () {
        const script = `
            require(${JSON.stringify(path.join(built, "src/cli/main.js"))});
            require(${JSON.stringify(require.resolve("@pulumi/pulumi/automation"))});
            const seen = () => Object.keys(require.cache).filter((f) => /node_modules\\/(typescript|@npmcli\\/arborist|normalize-package-data)\\//.test(f)).length;
            const before = seen();
            require(${JSON.stringify(require.resolve("@pulumi/pulumi"))}).runtime.serializeFunction(() => 42).then((s) => {
                process.stdout.write(JSON.stringify({ before, after: seen(), text: s.text.includes("42") }));
            });`;
        const out = JSON.parse(execFileSync(process.execPath, ["--no-deprecation", "--no-warnings", "-e", script], { encoding: "utf8" })) as { before: number; after: number; text: boolean };
        assert.equal(out.before, 0, "TypeScript or npm's resolver loaded at the CLI's start");
        assert.ok(out.after > 0, "serializing a function did not load the deferred modules");
        assert.equal(out.text, true);
    });

    it("starts the engine's Node.js processes with the deferral, once, after the caller's own NODE_OPTIONS", function () {
        // A hook in a folder whose name has a space and a quote, as an installation's may.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lazy closure's "));
        try {
            const hook = path.join(dir, "lazy-closure.js");
            fs.copyFileSync(path.join(built, "src/lazy-closure.js"), hook);
            const toolchain = { binDir: "/nonexistent/bin" } as Parameters<typeof engineEnv>[0];
            const env = engineEnv(toolchain, { PATH: "/usr/bin", NODE_OPTIONS: "--max-old-space-size=512" }, {});
            const ours = `--require ${JSON.stringify(path.join(built, "src/lazy-closure.js"))}`;
            assert.equal(env.NODE_OPTIONS, `--max-old-space-size=512 ${ours}`);
            assert.equal(engineEnv(toolchain, env, {}).NODE_OPTIONS, env.NODE_OPTIONS, "an environment made from one already holding it");
            // Node parses the option: a process started with it has the deferral installed before its
            // own code runs (which does not load the hook itself).
            const installed = execFileSync(process.execPath, ["-e", 'process.stdout.write(String(require("module").__gitopsStagesLazyClosure))'], {
                env: { ...process.env, NODE_OPTIONS: `--require ${JSON.stringify(hook)}` },
                encoding: "utf8",
            });
            assert.equal(installed, "true");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
