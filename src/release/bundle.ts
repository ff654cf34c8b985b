/**
 * Release bundles: what CI publishes once per app version (chart, per-stage values, image,
 * provenance) and how it is stored, immutable, under `releases/<app>/<version>/` of the ops repo.
 *
 * Reading a bundle folder is the only I/O here; everything else is pure. A path is only ever
 * built from validated names, and every file of a bundle must stay inside its folder.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import * as YAML from "yaml";

import { COMMIT, COMMIT_RULE, Checker, DNS_LABEL, DNS_LABEL_RULE, Problem, SEMVER, SEMVER_RULE, ValidationError } from "../config/validate";
import { opsPaths } from "../program/ops/paths";

/** Provenance and identity of a release, as CI states it. */
export interface ReleaseMeta {
    readonly app: string;
    readonly version: string;
    /** Image reference, digest preferred: `registry/app@sha256:...` or `registry/app:tag`. */
    readonly image: string;
    readonly source: { readonly commit: string; readonly ciRunUrl?: string };
}

/** The stored `bundle.json`. */
export interface BundleJson extends ReleaseMeta {
    readonly schema: 1;
    /** Name and version of the chart (from its Chart.yaml). */
    readonly chart: { readonly name: string; readonly version: string };
    /** Stages (and `mr`) with a values file. */
    readonly stages: readonly string[];
    /** Bundle-relative path -> sha256 of its content. */
    readonly files: Readonly<Record<string, string>>;
    /** sha256 over the sorted file digests and the metadata: the bundle's identity. */
    readonly digest: string;
}

/** Image reference: registry/path[:tag][@sha256:<64 hex>], at least a tag or a digest. */
const IMAGE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

/** Checks an app name, a version and (optionally) a stage name before any path is built from them. */
export function checkNames(c: Checker, fields: { app?: unknown; version?: unknown; stage?: unknown }, prefix = ""): void {
    if ("app" in fields) c.string(`${prefix}app`, fields.app, undefined, DNS_LABEL, DNS_LABEL_RULE);
    if ("version" in fields) c.string(`${prefix}version`, fields.version, undefined, SEMVER, SEMVER_RULE);
    if ("stage" in fields) c.string(`${prefix}stage`, fields.stage, undefined, DNS_LABEL, DNS_LABEL_RULE);
}

/** Validates release metadata; throws a ValidationError listing every problem. */
export function parseReleaseMeta(raw: unknown): ReleaseMeta {
    const c = new Checker();
    const o = c.object("release", raw, ["app", "version", "image", "source"]);
    checkNames(c, { app: o.app, version: o.version });
    const image = c.string("image", o.image, undefined, IMAGE, "must be an image reference such as registry.example/app@sha256:<64 hex> or registry.example/app:1.2.3");
    if (typeof o.image === "string" && IMAGE.test(o.image) && !/[:@][^/]*$/.test(o.image.split("/").pop() ?? "")) {
        c.fail("image", o.image, "must carry a tag or a digest");
    }
    const s = c.object("source", o.source, ["commit", "ciRunUrl"]);
    const commit = c.string("source.commit", s.commit, undefined, COMMIT, COMMIT_RULE);
    const ciRunUrl = s.ciRunUrl === undefined ? undefined : c.url("source.ciRunUrl", s.ciRunUrl);
    c.throwIfAny("release");
    return { app: o.app as string, version: o.version as string, image, source: { commit, ...(ciRunUrl ? { ciRunUrl } : {}) } };
}

/** Files of a bundle folder: bundle-relative path -> content. */
export type BundleFiles = Record<string, Buffer>;

/**
 * Reads a bundle folder (`chart/`, `values/<stage>.yaml`) refusing symlinks, special files and
 * anything outside those two places. Errors name the offending file.
 */
export function readBundleDir(dir: string): BundleFiles {
    const problems: Problem[] = [];
    const files: BundleFiles = {};
    const root = path.resolve(dir);
    if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
        throw new ValidationError("release bundle", [{ key: "bundle", value: JSON.stringify(dir), rule: "must be a folder" }]);
    }
    const walk = (rel: string): void => {
        for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
            const r = rel ? `${rel}/${entry.name}` : entry.name;
            const full = path.join(root, r);
            const st = fs.lstatSync(full);
            if (st.isSymbolicLink()) problems.push({ key: `bundle:${r}`, rule: "must not be a symbolic link" });
            else if (st.isDirectory()) walk(r);
            else if (!st.isFile()) problems.push({ key: `bundle:${r}`, rule: "must be a regular file" });
            else files[r] = fs.readFileSync(full);
        }
    };
    walk("");
    if (problems.length) throw new ValidationError("release bundle", problems);
    return files;
}

/** True when a bundle-relative path is plain: relative, no `..`, no empty or dot segments. */
export function isPlainPath(p: string): boolean {
    if (p.startsWith("/") || p.includes("\\") || p.includes("\0")) return false;
    return p.split("/").every((seg) => seg !== "" && seg !== "." && seg !== "..");
}

/** sha256 hex of a buffer or string. */
export function sha256(data: Buffer | string): string {
    return createHash("sha256").update(data).digest("hex");
}

/**
 * Checks a bundle's files and builds its `bundle.json`. The chart must have a `Chart.yaml` with a
 * name and a semver version; each `values/<stage>.yaml` must be a YAML mapping with a DNS-label
 * stage name; nothing else may be in the bundle.
 */
export function buildBundle(meta: ReleaseMeta, files: BundleFiles): BundleJson {
    const problems: Problem[] = [];
    const stages: string[] = [];
    let chart: { name: string; version: string } | undefined;
    for (const [p, content] of Object.entries(files)) {
        if (!isPlainPath(p)) {
            problems.push({ key: `bundle:${p}`, rule: "must stay inside the bundle folder (no absolute paths, no ..)" });
            continue;
        }
        if (!Buffer.from(content.toString("utf8"), "utf8").equals(content)) {
            // The ops repo stores text so that every promotion's diff can be reviewed.
            problems.push({ key: `bundle:${p}`, rule: "must be a UTF-8 text file (packaged subcharts and other binaries are not accepted)" });
            continue;
        }
        if (p.startsWith("chart/")) continue;
        const m = /^values\/([^/]+)\.ya?ml$/.exec(p);
        if (!m) {
            problems.push({ key: `bundle:${p}`, rule: "is not part of a bundle: only chart/** and values/<stage>.yaml are" });
            continue;
        }
        if (!DNS_LABEL.test(m[1])) problems.push({ key: `bundle:${p}`, rule: `stage name ${DNS_LABEL_RULE}` });
        try {
            const doc = YAML.parse(content.toString("utf8"));
            if (doc !== null && (typeof doc !== "object" || Array.isArray(doc))) {
                problems.push({ key: `bundle:${p}`, rule: "must be a YAML mapping" });
            } else stages.push(m[1]);
        } catch (e) {
            problems.push({ key: `bundle:${p}`, rule: `must be valid YAML (${(e as Error).message.split("\n")[0].replace(/:$/, "")})` });
        }
    }
    const chartYaml = files["chart/Chart.yaml"];
    if (!chartYaml) problems.push({ key: "bundle:chart/Chart.yaml", rule: "is required (the app's Helm chart)" });
    else {
        try {
            const c = YAML.parse(chartYaml.toString("utf8")) as { name?: unknown; version?: unknown };
            if (typeof c?.name !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(c.name)) {
                problems.push({ key: "bundle:chart/Chart.yaml", rule: "must have a chart name (lowercase letters, digits and '-')" });
            } else if (typeof c.version !== "string" || !SEMVER.test(c.version)) {
                problems.push({ key: "bundle:chart/Chart.yaml", rule: `must have a version that ${SEMVER_RULE}` });
            } else chart = { name: c.name, version: c.version };
        } catch (e) {
            problems.push({ key: "bundle:chart/Chart.yaml", rule: `must be valid YAML (${(e as Error).message.split("\n")[0].replace(/:$/, "")})` });
        }
    }
    if (stages.length === 0 && problems.length === 0) problems.push({ key: "bundle:values/", rule: "must hold at least one values/<stage>.yaml" });
    if (problems.length) throw new ValidationError("release bundle", problems);

    const digests: Record<string, string> = {};
    for (const p of Object.keys(files).sort()) digests[p] = sha256(files[p]);
    const identity = JSON.stringify({ app: meta.app, version: meta.version, image: meta.image, chart, files: digests });
    return {
        schema: 1,
        ...meta,
        chart: chart!,
        stages: stages.sort(),
        files: digests,
        digest: sha256(identity),
    };
}

/** The ops-repo files of a bundle: `releases/<app>/<version>/bundle.json` and the bundle's files. */
export function bundleRepoFiles(bundle: BundleJson, files: BundleFiles): Record<string, string> {
    const base = opsPaths.release(bundle.app, bundle.version);
    const out: Record<string, string> = { [`${base}bundle.json`]: JSON.stringify(bundle, null, 2) + "\n" };
    for (const [p, content] of Object.entries(files)) out[`${base}${p}`] = content.toString("utf8");
    return out;
}
