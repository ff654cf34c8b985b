/**
 * The project as a Pulumi workspace: where it is, and how to give the engine a private copy of its
 * settings so that stack files written by the engine (encryption salt, config set by the runner)
 * never touch the tracked `stacks/` folder of a checkout.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** Root of the project (holds Pulumi.yaml and package.json), from dist/src or src. */
export function findProjectRoot(from: string = __dirname): string {
    let dir = from;
    for (;;) {
        if (fs.existsSync(path.join(dir, "Pulumi.yaml")) && fs.existsSync(path.join(dir, "package.json"))) return dir;
        const parent = path.dirname(dir);
        if (parent === dir) throw new Error(`no Pulumi.yaml with package.json above ${from}`);
        dir = parent;
    }
}

/** A workspace folder that mirrors the project: copies of Pulumi.yaml and stacks/, links to the rest. */
export function prepareProjectCopy(root: string, into: string): void {
    fs.mkdirSync(path.join(into, "stacks"), { recursive: true });
    // An empty `.git` folder ends Pulumi's search for the repository enclosing the workspace here: it
    // finds no repository in it, so it records the update's metadata from the PULUMI_GIT_* and
    // PULUMI_VCS_* variables the runner sets (the release's), never from the checkout or folder the
    // data folder happens to sit in (which is not what the update deployed).
    fs.mkdirSync(path.join(into, ".git"), { recursive: true });
    fs.copyFileSync(path.join(root, "Pulumi.yaml"), path.join(into, "Pulumi.yaml"));
    for (const f of fs.readdirSync(path.join(root, "stacks"))) {
        const target = path.join(into, "stacks", f);
        if (!fs.existsSync(target)) fs.copyFileSync(path.join(root, "stacks", f), target);
    }
    for (const name of ["src", "dist", "node_modules", "package.json", "tsconfig.json", "tsconfig.pulumi.json"]) {
        const link = path.join(into, name);
        if (!fs.existsSync(link) && fs.existsSync(path.join(root, name))) fs.symlinkSync(path.join(root, name), link);
    }
}
