/**
 * Where gitops-stages keeps what it builds or learns once per machine and user (the toolchain,
 * the Go version it was built with, V8's compiled code of the CLI on Node 22.8 and later).
 * Built-ins only: `bin/stages` loads it before anything else when it uses the compile cache.
 */
import * as os from "node:os";
import * as path from "node:path";

/** The per-user cache folder: $GITOPS_STAGES_CACHE, else $XDG_CACHE_HOME/gitops-stages, else ~/.cache/gitops-stages. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
    if (env.GITOPS_STAGES_CACHE) return path.resolve(env.GITOPS_STAGES_CACHE);
    const base = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), ".cache");
    return path.join(base, "gitops-stages");
}
