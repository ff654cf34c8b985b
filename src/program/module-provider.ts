/**
 * Dynamic resources whose provider is an export of one of our compiled modules, named by path.
 *
 * Pulumi's `dynamic.Resource` serializes the provider object's closure into the resource's
 * `__provider` input on every construction, which parses the functions with TypeScript's compiler
 * (a few hundred milliseconds in a fresh process, docs/BENCHMARKS.md). Our providers already loaded
 * their code by path, so the serialized text said no more than "require this file": we write that
 * text ourselves. The dynamic-provider host evaluates `__provider` and calls its `handler()` for the
 * provider, exactly as it does for a serialized closure, so resources written by either form keep
 * working (same type token, same host).
 */
import * as fs from "node:fs";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";

/** A provider: the compiled module (path under the project, without extension) and its factory export. */
export interface ProviderModule {
    /** E.g. "src/git/providers": resolved to dist/src/git/providers.js. */
    readonly module: string;
    /** The module's export that returns the provider object. */
    readonly factory: string;
}

/**
 * Path of the compiled form of one of our modules. Pulumi's dynamic-provider host runs plain
 * Node.js without a TypeScript loader, so the provider is always the compiled file, even when
 * the program itself runs from sources.
 */
export function compiledModule(module: string): string {
    // From dist/src/program when compiled; from src/program when run from sources.
    const here = path.resolve(__dirname, "..", "..");
    const dist = __filename.endsWith(".js") ? here : path.join(here, "dist");
    const file = path.join(dist, `${module}.js`);
    if (!fs.existsSync(file)) {
        throw new Error(`${file} is missing: run \`npm run build\` (or either README command) before \`pulumi up\``);
    }
    return file;
}

/**
 * The `__provider` text the dynamic-provider host evaluates: its `handler()` returns the provider.
 * The host runs in the program's folder (`main` of Pulumi.yaml, src/program, of the installation
 * that runs the engine: a runner's workspace links it), so the module is looked for in the `dist`
 * folder above it first: a state written by a replica installed in another folder still finds
 * this installation's code. The absolute path of the installation that wrote the text is the
 * fallback.
 */
export function providerText(provider: ProviderModule): string {
    const file = compiledModule(provider.module);
    const relative = path.join("dist", `${provider.module}.js`);
    return [
        "exports.handler = function () {",
        '    const fs = require("fs"), path = require("path");',
        `    let file = ${JSON.stringify(file)};`,
        "    for (let dir = process.cwd(); ; dir = path.dirname(dir)) {",
        `        const here = path.join(dir, ${JSON.stringify(relative)});`,
        "        if (fs.existsSync(here)) { file = here; break; }",
        "        if (path.dirname(dir) === dir) break;",
        "    }",
        `    return require(file)[${JSON.stringify(provider.factory)}]();`,
        "};",
        "",
    ].join("\n");
}

/** A dynamic resource (type `pulumi-nodejs:dynamic/<module>:<type>`) served by a {@link ProviderModule}. */
export class ModuleProvidedResource extends pulumi.CustomResource {
    constructor(provider: ProviderModule, name: string, props: pulumi.Inputs, opts: pulumi.CustomResourceOptions | undefined, module: string, type: string) {
        if ("__provider" in props) throw new Error("a dynamic resource must not define the __provider key");
        super(`pulumi-nodejs:dynamic/${module}:${type}`, name, { ...props, __provider: providerText(provider) }, opts);
    }
}
