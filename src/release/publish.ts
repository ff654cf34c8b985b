/**
 * Publishing a release: its bundle is written once to `releases/<app>/<version>/` of the ops repo,
 * as one commit. The same content again is a no-op; different content under the same version is
 * refused, because stages may already run that version.
 */
import { Person, PushAs, commitFiles } from "../git/engine";
import { BundleFiles, BundleJson, buildBundle, bundleRepoFiles, parseReleaseMeta, readBundleDir } from "./bundle";
import { opsPaths } from "../program/ops/paths";

/** A release version already published with other content. */
export class ReleaseConflictError extends Error {
    constructor(
        readonly app: string,
        readonly version: string,
        readonly publishedDigest: string,
        readonly newDigest: string,
    ) {
        super(
            `release ${app}@${version} is already published with different content ` +
                `(published bundle ${publishedDigest.slice(0, 12)}, this bundle ${newDigest.slice(0, 12)}): ` +
                "releases are immutable, publish a new version",
        );
        this.name = "ReleaseConflictError";
    }
}

/** Result of {@link publishRelease}. */
export interface PublishResult {
    /** The publish commit, or undefined when the identical bundle was already there. */
    readonly commit: string | undefined;
    readonly digest: string;
}

/** Writes a bundle to the ops repo unless it is already there. */
export async function publishRelease(
    remote: string,
    bundle: BundleJson,
    files: BundleFiles,
    author: Person,
    requestId?: string,
    /** The runner's standing on the protected ops main (see PushAs). */
    pushAs?: PushAs,
): Promise<PublishResult> {
    const bundlePath = `${opsPaths.release(bundle.app, bundle.version)}bundle.json`;
    const repoFiles = bundleRepoFiles(bundle, files);
    const trailers = [
        `Release: ${bundle.app}@${bundle.version}`,
        `Source-Commit: ${bundle.source.commit}`,
        ...(bundle.source.ciRunUrl ? [`CI-Run: ${bundle.source.ciRunUrl}`] : []),
        ...(requestId ? [`Request-Id: ${requestId}`] : []),
        `Bundle-Digest: ${bundle.digest}`,
    ];
    const result = await commitFiles({
        remote,
        branch: "main",
        author,
        pushAs,
        message: `Publish ${bundle.app} ${bundle.version}\n\nImage ${bundle.image}\n\n${trailers.join("\n")}\n`,
        compute: async (head) => {
            const existing = await head.read(bundlePath);
            if (existing !== undefined) {
                const published = JSON.parse(existing) as BundleJson;
                if (published.digest === bundle.digest) return undefined;
                throw new ReleaseConflictError(bundle.app, bundle.version, published.digest, bundle.digest);
            }
            return { writes: repoFiles, deletes: [] };
        },
    });
    return { commit: result.commit, digest: bundle.digest };
}

/**
 * Validates a bundle folder and its metadata, then publishes it. Nothing is written unless
 * every check passes.
 */
export async function publishFromDir(remote: string, dir: string, meta: unknown, author: Person, requestId?: string, pushAs?: PushAs): Promise<PublishResult & { bundle: BundleJson }> {
    const release = parseReleaseMeta(meta);
    const files = readBundleDir(dir);
    const bundle = buildBundle(release, files);
    return { ...(await publishRelease(remote, bundle, files, author, requestId, pushAs)), bundle };
}
