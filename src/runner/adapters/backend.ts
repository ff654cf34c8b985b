/**
 * Which Pulumi state backend the runner uses, found the way the Pulumi CLI finds it: an explicit
 * `PULUMI_BACKEND_URL`, else the project's `backend.url` in Pulumi.yaml, else the CLI's current
 * login (`current` in `credentials.json` of the Pulumi home), else the runner's embedded default, a `file://` folder in its data folder. A platform
 * engineer who ran `pulumi login` and `pulumi up` on the platform stack therefore promotes against
 * that same stack without configuring the runner again.
 *
 * Pulumi itself has no library call for this (the Automation API leaves it to the CLI it starts),
 * and the runner must know the URL before any CLI runs (to read `file://` checkpoints, to name the
 * backend in errors and in `/readyz`), so the lookup is written out here, following the CLI's
 * `workspace.GetCurrentCloudURL` order.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import YAML from "yaml";

import { RunnerError } from "../errors";

/** Where the backend URL came from. */
export type BackendSource = "PULUMI_BACKEND_URL" | "Pulumi.yaml" | "pulumi login" | "embedded default";

/** The backend the runner uses, and why. */
export interface BackendChoice {
    readonly url: string;
    readonly source: BackendSource;
    /** The credentials file the login was read from (source `pulumi login`). */
    readonly credentialsFile?: string;
    /**
     * The login's access token for a Pulumi Cloud URL: the runner keeps its own Pulumi home, so the
     * engine gets it as PULUMI_ACCESS_TOKEN. A secret: never logged, never part of {@link describeBackend}.
     */
    readonly accessToken?: string;
}

/**
 * The Pulumi home the CLI reads its login from: $PULUMI_HOME, else `.pulumi` in the account's home
 * folder. The CLI takes that folder from the user database (Go's user.Current), not from $HOME, so
 * this does too.
 */
export function cliPulumiHome(env: NodeJS.ProcessEnv): string {
    return env.PULUMI_HOME ? path.resolve(env.PULUMI_HOME) : path.join(os.userInfo().homedir, ".pulumi");
}

/** Finds the backend for a project, a data folder and an environment (see the module comment for the order). */
export function resolveBackend(env: NodeJS.ProcessEnv, dataDir: string, projectRoot?: string): BackendChoice {
    const found = findBackend(env, dataDir, projectRoot);
    // As the CLI does, `file://~` (what `pulumi login --local` records) is the user's home.
    return /^file:\/\/~(\/|$)/.test(found.url) ? { ...found, url: `file://${env.HOME || os.homedir()}${found.url.slice("file://~".length)}` } : found;
}

function findBackend(env: NodeJS.ProcessEnv, dataDir: string, projectRoot?: string): BackendChoice {
    // Whatever named the backend, a token the CLI stored for that URL is what the CLI would use
    // (an unreadable login file matters only when the login is what names the backend).
    const withToken = (b: BackendChoice): BackendChoice => {
        let token: unknown;
        try {
            token = readLogin(env)?.creds.accessTokens?.[b.url];
        } catch {
            token = undefined;
        }
        return typeof token === "string" && token ? { ...b, accessToken: token } : b;
    };
    if (env.PULUMI_BACKEND_URL) return withToken({ url: env.PULUMI_BACKEND_URL, source: "PULUMI_BACKEND_URL" });
    if (projectRoot) {
        const file = path.join(projectRoot, "Pulumi.yaml");
        let project: { backend?: { url?: unknown } } | null;
        try {
            project = YAML.parse(fs.readFileSync(file, "utf8")) as typeof project;
        } catch (e) {
            throw new RunnerError("invalid", `${file}: cannot be read as the project's settings (${(e as Error).message.split("\n")[0]})`);
        }
        if (typeof project?.backend?.url === "string" && project.backend.url) return withToken({ url: project.backend.url, source: "Pulumi.yaml" });
    }
    const login = readLogin(env);
    if (login && typeof login.creds.current === "string" && login.creds.current !== "") {
        return withToken({ url: login.creds.current, source: "pulumi login", credentialsFile: login.file });
    }
    return { url: `file://${path.join(dataDir, "state")}`, source: "embedded default" };
}

/** The Pulumi CLI's login file, when there is one. */
function readLogin(env: NodeJS.ProcessEnv): { file: string; creds: { current?: unknown; accessTokens?: Record<string, unknown> } } | undefined {
    const file = path.join(cliPulumiHome(env), "credentials.json");
    try {
        return { file, creds: JSON.parse(fs.readFileSync(file, "utf8")) ?? {} };
    } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw new RunnerError("invalid", `${file}: the Pulumi CLI's login file cannot be read (${(e as Error).message.split("\n")[0]}); run pulumi login again or set PULUMI_BACKEND_URL`);
    }
}

/**
 * A backend URL with its credentials, query and fragment removed, safe to show in answers and
 * logs. Done on the text (everything between `://` and the last `@` is user information), since a
 * password may hold characters a URL parser reads as a port or a path.
 */
export function redactBackendUrl(url: string): string {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)(.*)$/.exec(url);
    if (!m) return url.replace(/[?#].*$/, "");
    const [, scheme, rest] = m;
    if (scheme.toLowerCase() === "file://") return url;
    const at = rest.lastIndexOf("@");
    const host = (at >= 0 ? rest.slice(at + 1) : rest).replace(/[?#].*$/, "");
    if (at < 0) return scheme + host;
    const user = rest.slice(0, at).split(":")[0];
    return `${scheme}${user}:****@${host}`;
}

/** One line for people: the backend (redacted) and where it came from. */
export function describeBackend(b: Pick<BackendChoice, "url" | "source" | "credentialsFile">): string {
    const from = b.source === "pulumi login" ? `the Pulumi CLI's current login in ${b.credentialsFile}` : b.source === "PULUMI_BACKEND_URL" ? "$PULUMI_BACKEND_URL" : b.source === "Pulumi.yaml" ? "the project's Pulumi.yaml" : "the runner's embedded default";
    return `${redactBackendUrl(b.url)} (from ${from})`;
}

/** A Pulumi Cloud (service) backend: https:// or http:// URLs; they keep secrets without a passphrase. */
export function isCloudUrl(url: string): boolean {
    return /^https?:\/\//.test(url);
}

/** A backend's kind, as its URL's scheme says it (file, s3, postgres, https, ...). */
export function backendKind(url: string): string {
    return /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1] ?? "unknown";
}

/** The platform stack's fully qualified name as the backend knows it. */
export function platformStackName(b: Pick<BackendChoice, "url">, project = "gitops-stages"): string {
    // Self-managed backends keep every stack under the fixed organization "organization".
    return isCloudUrl(b.url) ? `${project}/platform (in the login's default organization)` : `organization/${project}/platform`;
}
