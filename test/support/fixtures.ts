/** Release bundles and git servers for tests. */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";

import { gitHttpHandler } from "./git-http";

/** Writes a small but real Helm chart and per-stage values files; returns the bundle folder. */
export function makeBundleDir(root: string, app: string, opts: { stages?: string[]; replicas?: number; extra?: Record<string, string> } = {}): string {
    const dir = path.join(root, `${app}-bundle-${Math.random().toString(36).slice(2, 8)}`);
    fs.mkdirSync(path.join(dir, "chart", "templates"), { recursive: true });
    fs.mkdirSync(path.join(dir, "values"), { recursive: true });
    fs.writeFileSync(path.join(dir, "chart", "Chart.yaml"), `apiVersion: v2\nname: ${app}\nversion: 1.0.0\nappVersion: "1.0.0"\n`);
    fs.writeFileSync(path.join(dir, "chart", "values.yaml"), "replicas: 1\nimage:\n  repository: example.invalid/app\n  tag: latest\n");
    fs.writeFileSync(
        path.join(dir, "chart", "templates", "deployment.yaml"),
        [
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata:",
            "  name: {{ .Chart.Name }}",
            "  labels:",
            "    app: {{ .Chart.Name }}",
            "spec:",
            "  replicas: {{ .Values.replicas }}",
            // No kubelet runs in the cluster tier: a rollout of pods never completes there, and must
            // not turn Degraded (the default deadline is 600 s) while a test suite runs.
            "  progressDeadlineSeconds: 86400",
            "  selector:",
            "    matchLabels:",
            "      app: {{ .Chart.Name }}",
            "  template:",
            "    metadata:",
            "      labels:",
            "        app: {{ .Chart.Name }}",
            "    spec:",
            "      containers:",
            "        - name: app",
            '          image: "{{ .Values.image.repository }}{{ if .Values.image.digest }}@{{ .Values.image.digest }}{{ else }}:{{ .Values.image.tag }}{{ end }}"',
            "",
        ].join("\n"),
    );
    for (const s of opts.stages ?? ["itg", "tst", "perf", "prod", "mr"]) {
        fs.writeFileSync(path.join(dir, "values", `${s}.yaml`), `replicas: ${opts.replicas ?? 1}\nenv:\n  STAGE: ${s}\n`);
    }
    for (const [p, c] of Object.entries(opts.extra ?? {})) {
        fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
        fs.writeFileSync(path.join(dir, p), c);
    }
    return dir;
}

/** Release metadata for a test bundle. */
export function releaseMeta(app: string, version: string, commit = "0123456789abcdef0123456789abcdef01234567") {
    return { app, version, image: `registry.example/${app}@sha256:${"a".repeat(64)}`, source: { commit, ciRunUrl: `https://ci.example/runs/${app}-${version}` } };
}

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as net.AddressInfo).port;
            srv.close(() => resolve(port));
        });
        srv.on("error", reject);
    });
}

/** Whether something accepts connections on the loopback port. */
export function listening(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
        s.on("error", () => resolve(false));
    });
}

/** A `git daemon` serving a folder on loopback, with pushes enabled. */
export interface GitDaemon {
    readonly url: (repo: string) => string;
    stop(): Promise<void>;
}

/** Starts `git daemon` on a free loopback port and waits until it accepts connections. */
export async function startGitDaemon(basePath: string): Promise<GitDaemon> {
    const port = await freePort();
    const child: ChildProcess = spawn(
        "git",
        ["daemon", "--reuseaddr", `--base-path=${basePath}`, "--export-all", "--enable=receive-pack", "--listen=127.0.0.1", `--port=${port}`, basePath],
        { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
        if (await listening(port)) break;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`git daemon did not start: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
    }
    return {
        url: (repo) => `git://127.0.0.1:${port}/${repo}`,
        stop: () =>
            new Promise<void>((resolve) => {
                if (child.exitCode !== null) return resolve();
                child.once("exit", () => resolve());
                child.kill("SIGTERM");
            }),
    };
}

/** Git's smart HTTP on loopback, read-only, behind basic authentication. */
export interface GitHttpServer {
    readonly url: (repo: string) => string;
    /** Requests seen: whether each carried the right credentials (for assertions). */
    readonly requests: { path: string; authorized: boolean }[];
    stop(): Promise<void>;
}

/**
 * Serves the bare repositories under `basePath` with `git http-backend` (git's own smart HTTP CGI
 * program) on a free loopback port, as a company git server would: every request must carry basic
 * credentials equal to what `credentials()` returns then (so a test can start the server before the
 * platform stack generated them); pushes are refused. Node's http module stands in for the web
 * server that would run the CGI program.
 */
export async function startGitHttp(basePath: string, credentials: () => { username: string; password: string } | undefined): Promise<GitHttpServer> {
    const requests: { path: string; authorized: boolean }[] = [];
    const users = () => {
        const want = credentials();
        return want ? { [want.username]: want.password } : {};
    };
    const server = http.createServer(gitHttpHandler(basePath, { users, readOnly: true, onRequest: (r) => requests.push(r) }));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    return {
        url: (repo) => `http://127.0.0.1:${port}/${repo}`,
        requests,
        stop: () => new Promise<void>((r) => server.close(() => r())),
    };
}
