/** File helpers shared by the integration tests. */
import * as fs from "node:fs";
import * as path from "node:path";

/** Every file below a folder (none when it does not exist). */
export function walk(dir: string): string[] {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
