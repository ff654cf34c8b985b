/**
 * The test stand-in for the Argo CD chart, with Argo CD's own CustomResourceDefinitions: the chart
 * folder `test/charts/argo-cd` (configuration templates only) plus `crds/` taken from the
 * `github.com/argoproj/argo-cd/v3` module at the version the toolchain builds, so that the API
 * server accepts exactly what Argo CD accepts. The module comes from Go's module cache (downloaded
 * through the module proxy when absent); nothing of it is copied into the repository.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { ARGOCD_VERSION } from "../../src/toolchain/recipes";
import { repoRoot } from "./engine";

/** The CRDs gitops-stages declares objects of (ApplicationSets are not used). */
const CRDS = ["application-crd.yaml", "appproject-crd.yaml"];

let built: string | undefined;

/** Folder of the Argo CD module at the toolchain's version. */
export function argoCdModuleDir(): string {
    const mod = `github.com/argoproj/argo-cd/v3@${ARGOCD_VERSION}`;
    let out: string;
    try {
        // GOFLAGS from the caller (e.g. -mod=vendor) must not apply to a download outside any module.
        out = execFileSync("go", ["mod", "download", "-json", mod], { encoding: "utf8", env: { ...process.env, GOFLAGS: "" }, cwd: os.tmpdir(), maxBuffer: 16 * 1024 * 1024 });
    } catch (e) {
        const err = e as { stdout?: string; stderr?: string; message: string };
        throw new Error(`the Argo CD CRDs come from the Go module ${mod}, which \`go mod download\` could not provide: ${(err.stdout || err.stderr || err.message).trim()}`);
    }
    const dir = (JSON.parse(out) as { Dir?: string }).Dir;
    if (!dir || !fs.existsSync(path.join(dir, "manifests", "crds"))) throw new Error(`${mod}: no manifests/crds in ${dir ?? "(no folder)"}`);
    return dir;
}

/** Path of the assembled chart (built once per process, in a temporary folder). */
export function argoCdTestChart(): string {
    if (built && fs.existsSync(built)) return built;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-argocd-chart-"));
    process.once("exit", () => fs.rmSync(root, { recursive: true, force: true }));
    const dir = path.join(root, "argo-cd");
    fs.cpSync(path.join(repoRoot, "test", "charts", "argo-cd"), dir, { recursive: true });
    fs.mkdirSync(path.join(dir, "crds"), { recursive: true });
    const crds = path.join(argoCdModuleDir(), "manifests", "crds");
    for (const f of CRDS) fs.copyFileSync(path.join(crds, f), path.join(dir, "crds", f));
    built = dir;
    return dir;
}
