/**
 * Release bundles sent over HTTP: `{ "files": { "chart/Chart.yaml": "...", "values/tst.yaml": "..." } }`.
 * Paths are checked before anything touches the disk, then written into a fresh folder that the
 * release validator (`publishFromDir`) reads like any bundle folder.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { RunnerError } from "../runner/errors";

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const MAX_FILES = 500;

/** Checks an uploaded bundle's file map; throws `invalid` naming the first bad path. */
export function checkBundleFiles(raw: unknown, field = "bundle.files"): Record<string, string> {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new RunnerError("invalid", `${field}: must be an object of path -> text content`);
    const files = raw as Record<string, unknown>;
    const names = Object.keys(files);
    if (names.length === 0) throw new RunnerError("invalid", `${field}: must hold chart/Chart.yaml and values/<stage>.yaml files`);
    if (names.length > MAX_FILES) throw new RunnerError("invalid", `${field}: at most ${MAX_FILES} files`);
    for (const name of names) {
        const parts = name.split("/");
        const shown = JSON.stringify(name.slice(0, 200));
        if (!parts.every((p) => SEGMENT.test(p))) {
            throw new RunnerError("invalid", `${field}[${shown}]: each path segment must be letters, digits, '.', '_' or '-', not starting with '.' or '-' (no absolute paths, no '..')`);
        }
        const allowed = (parts[0] === "chart" && parts.length >= 2) || (parts[0] === "values" && parts.length === 2 && /^[a-z0-9-]+\.ya?ml$/.test(parts[1]));
        if (!allowed) throw new RunnerError("invalid", `${field}[${shown}]: only chart/** and values/<stage>.yaml belong in a bundle`);
        if (typeof files[name] !== "string") throw new RunnerError("invalid", `${field}[${shown}]: must be text`);
    }
    return files as Record<string, string>;
}

/** Writes checked files into `dir` (created; must not exist). */
export function writeBundle(dir: string, files: Readonly<Record<string, string>>): void {
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, content] of Object.entries(files)) {
        const target = path.join(dir, ...name.split("/"));
        // Belt and braces: checkBundleFiles already rules out escapes.
        if (!target.startsWith(dir + path.sep)) throw new RunnerError("invalid", `bundle.files: ${name} leaves the bundle folder`);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, content);
    }
}
