/**
 * A real Argo CD for the cluster tier: Redis, the repo server and the application controller, from
 * the toolchain's `argocd` multi-call binary and `helm`, as processes on loopback against the
 * tier's kube-apiserver (no pods: Argo CD runs "fake in cluster", the kubeconfig standing in for
 * the in-cluster configuration). What it needs in the cluster (namespace, argocd-cm, argocd-rbac-cm,
 * argocd-secret, AppProjects, Applications, the ops repo's credentials) is what the platform stack
 * installs. Stopped and removed by `stop()`.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { argoCdModuleDir } from "./argocd-chart";
import type { Cluster } from "./cluster";
import { testToolchain } from "./engine";
import { freePort, listening } from "./fixtures";

/** A running Argo CD. */
export interface ArgoCd {
    readonly dir: string;
    /** The API server's URL (plain HTTP on loopback). */
    readonly url: string;
    /**
     * An API token for a local account the platform declared, issued as an admin does it
     * (`argocd account generate-token`): a session of `admin` with the platform's generated
     * password, then `POST /api/v1/account/<name>/token`.
     */
    token(account: string, adminPassword: string): Promise<string>;
    /** The last lines of every component's log, for failure messages. */
    logs(): string;
    stop(): Promise<void>;
}

function onPath(cmd: string): string | undefined {
    for (const d of (process.env.PATH ?? "").split(path.delimiter)) {
        const p = path.join(d, cmd);
        if (d && fs.existsSync(p)) return p;
    }
    return undefined;
}

/**
 * Starts Redis, the repo server, the application controller and the API server (with
 * authentication and our RBAC on, on `serverPort`); resolves when they listen.
 */
export async function startArgoCd(cluster: Cluster, serverPort: number, opts: { appResyncSeconds?: number } = {}): Promise<ArgoCd> {
    const tc = await testToolchain();
    const paths = Object.fromEntries(tc.components.map((c) => [c.component.name, c.path]));
    for (const name of ["argocd", "helm"]) {
        if (!paths[name] || !fs.existsSync(paths[name])) throw new Error(`the Argo CD scenarios need ${name}, which the toolchain did not provide: run \`npm run toolchain -- --set tests\``);
    }
    const redis = onPath("redis-server");
    if (!redis) throw new Error("the Argo CD scenarios need redis-server (Debian package redis-server); `npm test` installs it");
    const dir = fs.mkdtempSync(path.join(cluster.dir, "argocd-"));
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    // The repo server execs these wrappers by name (hack/ of the module); without them manifest
    // generation fails with a bare "permission denied".
    for (const f of ["git-verify-wrapper.sh", "gpg-wrapper.sh"]) {
        fs.copyFileSync(path.join(argoCdModuleDir(), "hack", f), path.join(bin, f));
        fs.chmodSync(path.join(bin, f), 0o755);
    }
    fs.symlinkSync(paths.helm, path.join(bin, "helm"));
    // git's credential prompt for HTTP repositories: Argo CD sets GIT_ASKPASS=argocd, the CLI mode of
    // the same binary, which asks the repo server's askpass socket for the repository's credentials.
    fs.symlinkSync(paths.argocd, path.join(bin, "argocd"));
    for (const sub of ["tls", "ssh", "gnupg", "gpg", "tmp"]) fs.mkdirSync(path.join(dir, sub), { mode: 0o700 });
    const env: NodeJS.ProcessEnv = {
        ...process.env,
        PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`,
        KUBECONFIG: cluster.kubeconfig,
        ARGOCD_FAKE_IN_CLUSTER: "true",
        ARGOCD_GPG_ENABLED: "false",
        ARGOCD_TLS_DATA_PATH: path.join(dir, "tls"),
        ARGOCD_SSH_DATA_PATH: path.join(dir, "ssh"),
        ARGOCD_GNUPGHOME: path.join(dir, "gnupg"),
        ARGOCD_GPG_DATA_PATH: path.join(dir, "gpg"),
        ARGOCD_ASK_PASS_SOCK: path.join(dir, "askpass.sock"),
        TMPDIR: path.join(dir, "tmp"),
    };
    const procs: { name: string; p: ChildProcess; log: string }[] = [];
    const start = (name: string, file: string, args: string[], extra: NodeJS.ProcessEnv = {}) => {
        const log = path.join(dir, `${name}.log`);
        const fd = fs.openSync(log, "a");
        const p = spawn(file, args, { cwd: dir, stdio: ["ignore", fd, fd], env: { ...env, ...extra } });
        fs.closeSync(fd);
        procs.push({ name, p, log });
        return { p, log };
    };
    const logs = () => procs.map((x) => `--- ${x.name} (${x.p.exitCode === null ? "running" : `exited ${x.p.exitCode}`})\n${fs.existsSync(x.log) ? fs.readFileSync(x.log, "utf8").split("\n").slice(-15).join("\n") : ""}`).join("\n");
    const stop = async () => {
        for (const x of [...procs].reverse()) {
            if (x.p.exitCode === null && x.p.signalCode === null) {
                const exited = new Promise((r) => x.p.once("exit", r));
                x.p.kill("SIGTERM");
                const timer = setTimeout(() => x.p.kill("SIGKILL"), 10_000);
                await exited;
                clearTimeout(timer);
            }
        }
    };
    const ready = async (name: string, port: number) => {
        const deadline = Date.now() + 60_000;
        const proc = procs.find((x) => x.name === name)!;
        while (Date.now() < deadline && proc.p.exitCode === null) {
            if (await listening(port)) return;
            await new Promise((r) => setTimeout(r, 200));
        }
        throw new Error(`${name} did not start listening on ${port}:\n${logs()}`);
    };
    try {
        const [redisPort, repoPort, repoMetrics, controllerMetrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
        start("redis", redis, ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        await ready("redis", redisPort);
        const redisAddr = `127.0.0.1:${redisPort}`;
        start(
            "repo-server",
            paths.argocd,
            // --client-ca-path= : the default path cannot be combined with --disable-tls.
            ["--port", String(repoPort), "--address", "127.0.0.1", "--metrics-port", String(repoMetrics), "--disable-tls", "--client-ca-path=", "--redis", redisAddr, "--loglevel", "info"],
            { ARGOCD_BINARY_NAME: "argocd-repo-server" },
        );
        await ready("repo-server", repoPort);
        start(
            "application-controller",
            paths.argocd,
            [
                "--kubeconfig", cluster.kubeconfig, "--namespace", "argocd", "--redis", redisAddr,
                "--repo-server", `127.0.0.1:${repoPort}`, "--repo-server-plaintext", "--metrics-port", String(controllerMetrics),
                // Reconcile often: the tests wait on it (the default is 3 minutes; the benchmark keeps it).
                "--app-resync", String(opts.appResyncSeconds ?? 20), "--loglevel", "info",
            ],
            { ARGOCD_BINARY_NAME: "argocd-application-controller" },
        );
        await ready("application-controller", controllerMetrics);
        const serverMetrics = await freePort();
        start(
            "server",
            paths.argocd,
            [
                "--kubeconfig", cluster.kubeconfig, "--namespace", "argocd", "--redis", redisAddr,
                "--repo-server", `127.0.0.1:${repoPort}`, "--repo-server-plaintext",
                // Plain HTTP on loopback; no Dex (tokens of local accounts stand in for SSO sessions).
                "--insecure", "--address", "127.0.0.1", "--port", String(serverPort), "--metrics-port", String(serverMetrics),
                "--dex-server", "http://127.0.0.1:1", "--loglevel", "info",
            ],
            { ARGOCD_BINARY_NAME: "argocd-server" },
        );
        await ready("server", serverPort);
        const url = `http://127.0.0.1:${serverPort}`;
        const post = async (route: string, body: unknown, token?: string) => {
            const res = await fetch(url + route, { method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
            const text = await res.text();
            if (!res.ok) throw new Error(`Argo CD ${route} answered ${res.status}: ${text.slice(0, 300)}`);
            return JSON.parse(text) as { token: string };
        };
        const token = async (account: string, adminPassword: string) => {
            const session = await post("/api/v1/session", { username: "admin", password: adminPassword });
            return (await post(`/api/v1/account/${encodeURIComponent(account)}/token`, { id: `test-${Date.now()}` }, session.token)).token;
        };
        return { dir, url, token, logs, stop };
    } catch (e) {
        await stop();
        throw e;
    }
}
