/**
 * A real Kubernetes control plane for the cluster test tier: etcd, kube-apiserver and the
 * kube-controller-manager (namespace deletion, garbage collection, Deployment status), built by the toolchain
 * and started on free loopback ports with generated certificates. No kubelet runs, so pods never
 * start: the stacks are configured with skipAwait. Everything is stopped and removed by `stop()`.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import YAML from "yaml";

import { KubeClient } from "../../src/kube/client";
import { testToolchain } from "./engine";
import { freePort } from "./fixtures";

/** A running control plane. */
export interface Cluster {
    readonly dir: string;
    readonly kubeconfig: string;
    readonly server: string;
    readonly client: KubeClient;
    /** How long start-up took, per part, in milliseconds. */
    readonly timings: Record<string, number>;
    /**
     * Starts the real Sealed Secrets controller as a process on `host` (its CRD must be installed):
     * it keeps its keys in kube-system as in a cluster, unseals SealedSecrets into Secrets, and
     * serves /v1/cert.pem and /v1/rotate. Stopped with the cluster.
     */
    startSealedSecretsController(host: string): Promise<SealedSecretsController>;
    stop(): Promise<void>;
}

/** The Sealed Secrets controller of the test cluster. */
export interface SealedSecretsController {
    readonly port: number;
    readonly log: string;
    /** Makes the controller generate a new sealing key (SIGUSR1, as upstream documents) and waits until it is active. */
    newKey(): Promise<void>;
    /** The PEM private keys the controller holds now. */
    privateKeys(): Promise<string[]>;
}

function tool(name: string, paths: Record<string, string>): string {
    const p = paths[name];
    if (!p || !fs.existsSync(p)) {
        throw new Error(`the cluster test tier needs ${name}, which the toolchain did not provide: run \`npm run toolchain\` and read its output`);
    }
    return p;
}

function openssl(args: string[], cwd: string): void {
    try {
        execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
    } catch (e) {
        throw new Error(`openssl ${args[0]} failed (the cluster tier generates its certificates with openssl): ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
    }
}

function certificates(dir: string): void {
    openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=gitops-stages-test-ca"], dir);
    const sign = (name: string, subject: string, ext: string) => {
        fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
        openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject], dir);
        openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`], dir);
    };
    sign("server", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n");
    sign("admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth\n");
    openssl(["genrsa", "-out", "sa.key", "2048"], dir);
    openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

function kubeconfigText(server: string, dir: string): string {
    const b64 = (f: string) => fs.readFileSync(path.join(dir, f)).toString("base64");
    return YAML.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster: { server, "certificate-authority-data": b64("ca.crt") } }],
        users: [{ name: "admin", user: { "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key") } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
        "current-context": "test",
    });
}

async function waitFor(what: string, proc: ChildProcess, log: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        if (proc.exitCode !== null) break;
        try {
            if (await check()) return;
        } catch {
            // Not up yet.
        }
        await new Promise((r) => setTimeout(r, 200));
    }
    const tail = fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-25).join("\n") : "";
    throw new Error(`${what} did not become ready (${proc.exitCode !== null ? `exited with ${proc.exitCode}` : `within ${timeoutMs / 1000} s`}); last lines of its log:\n${tail}`);
}

/** Starts etcd, the API server and the controller manager; resolves when the API server is ready. */
export async function startCluster(): Promise<Cluster> {
    const tc = await testToolchain();
    const paths = Object.fromEntries(tc.components.map((c) => [c.component.name, c.path]));
    const etcdBin = tool("etcd", paths);
    const apiserverBin = tool("kube-apiserver", paths);
    const kcmBin = tool("kube-controller-manager", paths);
    const controllerBin = tool("sealed-secrets-controller", paths);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-cluster-"));
    const procs: ChildProcess[] = [];
    const timings: Record<string, number> = {};
    const stop = async () => {
        for (const p of [...procs].reverse()) {
            if (p.exitCode === null && p.signalCode === null) {
                const exited = new Promise((r) => p.once("exit", r));
                p.kill("SIGTERM");
                const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
                await exited;
                clearTimeout(timer);
            }
        }
        fs.rmSync(dir, { recursive: true, force: true });
    };
    const start = (name: string, bin: string, args: string[], env: NodeJS.ProcessEnv = process.env) => {
        const log = path.join(dir, `${name}.log`);
        const fd = fs.openSync(log, "a");
        const p = spawn(bin, args, { cwd: dir, stdio: ["ignore", fd, fd], env });
        fs.closeSync(fd);
        procs.push(p);
        return { p, log };
    };
    try {
        let t = Date.now();
        certificates(dir);
        timings.certificates = Date.now() - t;

        t = Date.now();
        const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
        const etcdUrl = `http://127.0.0.1:${etcdPort}`;
        const etcd = start("etcd", etcdBin, [
            "--name", "test", "--data-dir", path.join(dir, "etcd"),
            "--listen-client-urls", etcdUrl, "--advertise-client-urls", etcdUrl,
            "--listen-peer-urls", `http://127.0.0.1:${peerPort}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peerPort}`,
            "--initial-cluster", `test=http://127.0.0.1:${peerPort}`,
            // A test cluster's data need not survive a power cut; fsync only slows it down.
            "--unsafe-no-fsync", "--log-level", "warn",
        ]);
        await waitFor("etcd", etcd.p, etcd.log, async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000);
        timings.etcd = Date.now() - t;

        t = Date.now();
        const server = `https://127.0.0.1:${apiPort}`;
        const kubeconfig = path.join(dir, "kubeconfig");
        fs.writeFileSync(kubeconfig, kubeconfigText(server, dir), { mode: 0o600 });
        const api = start("kube-apiserver", apiserverBin, [
            "--etcd-servers", etcdUrl,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", String(apiPort),
            "--tls-cert-file", "server.crt", "--tls-private-key-file", "server.key", "--client-ca-file", "ca.crt",
            "--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", "sa.pub",
            "--service-account-signing-key-file", "sa.key", "--api-audiences", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", "10.96.0.0/24", "--authorization-mode", "Node,RBAC",
            "--cert-dir", path.join(dir, "certs"), "--profiling=false", "--v", "1",
        ]);
        const client = KubeClient.fromKubeconfig(kubeconfig);
        await waitFor("kube-apiserver", api.p, api.log, async () => (await client.request("GET", "/readyz")) === "ok", 90_000);
        timings.apiserver = Date.now() - t;

        t = Date.now();
        const kcm = start("kube-controller-manager", kcmBin, [
            "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            // deployment: Deployments get a status, so Argo CD judges their health for real (a
            // rollout of no pods completes; one of pods, which no kubelet starts, stays Progressing).
            "--controllers", "namespace,garbagecollector,deployment", "--leader-elect=false", "--secure-port", "0",
            "--use-service-account-credentials=false", "--v", "1",
        ]);
        // The controller manager has no readiness endpoint here; it is ready when it runs.
        await waitFor("kube-controller-manager", kcm.p, kcm.log, async () => fs.readFileSync(kcm.log, "utf8").includes("Started controller") || fs.readFileSync(kcm.log, "utf8").includes("Starting namespace controller"), 60_000);
        timings.controllerManager = Date.now() - t;

        const keysPath = "/api/v1/namespaces/kube-system/secrets?labelSelector=" + encodeURIComponent("sealedsecrets.bitnami.com/sealed-secrets-key=active");
        const privateKeys = async () =>
            ((await client.request("GET", keysPath)) as { items: { data: Record<string, string> }[] }).items.map((s) => Buffer.from(s.data["tls.key"], "base64").toString("utf8"));
        const startSealedSecretsController = async (host: string): Promise<SealedSecretsController> => {
            const t0 = Date.now();
            const [port, metricsPort] = [await freePort(), await freePort()];
            const env = { ...process.env, KUBECONFIG: kubeconfig, POD_NAMESPACE: "kube-system" };
            const c = start("sealed-secrets-controller", controllerBin, [
                "--listen-addr", `${host}:${port}`, "--listen-metrics-addr", `127.0.0.1:${metricsPort}`,
                // Rotation only when a test asks for it.
                "--key-renew-period", "0", "--log-info-stdout",
            ], env);
            await waitFor("sealed-secrets-controller", c.p, c.log, async () => (await fetch(`http://${host}:${port}/healthz`)).ok && (await privateKeys()).length > 0, 60_000);
            timings.sealedSecretsController = Date.now() - t0;
            return {
                port,
                log: c.log,
                privateKeys,
                newKey: async () => {
                    const before = (await privateKeys()).length;
                    c.p.kill("SIGUSR1");
                    await waitFor("a new sealing key", c.p, c.log, async () => (await privateKeys()).length > before, 60_000);
                },
            };
        };
        return { dir, kubeconfig, server, client, timings, startSealedSecretsController, stop };
    } catch (e) {
        await stop();
        throw e;
    }
}

/**
 * Makes a controller process reachable as the chart's Service `sealed-secrets-controller` in
 * kube-system: no kubelet runs Pods here, so a Pod object whose status carries the host's address
 * backs the Service's endpoints (and endpoint slices), and the API server's proxy, our client and
 * the controller are all the real ones. `host` must be a non-loopback address of this machine (the
 * API server refuses to proxy to loopback).
 */
export async function exposeSealedSecretsController(cluster: Cluster, controller: SealedSecretsController, host: string): Promise<void> {
    const client = cluster.client;
    const port = controller.port;
    const ns = "/api/v1/namespaces/kube-system";
    if (!(await client.get(`${ns}/serviceaccounts/default`))) await client.request("POST", `${ns}/serviceaccounts`, { metadata: { name: "default" } });
    await client.request("POST", `${ns}/pods`, {
        metadata: { name: "sealed-secrets-controller-0", labels: { "app.kubernetes.io/name": "sealed-secrets" } },
        spec: { automountServiceAccountToken: false, containers: [{ name: "controller", image: "registry.example/sealed-secrets-controller:process" }] },
    });
    await client.request("PATCH", `${ns}/pods/sealed-secrets-controller-0/status`, { status: { podIP: host, podIPs: [{ ip: host }] } }, "application/merge-patch+json");
    const targetRef = { kind: "Pod", name: "sealed-secrets-controller-0", namespace: "kube-system" };
    await client.request("POST", `${ns}/endpoints`, { metadata: { name: "sealed-secrets-controller" }, subsets: [{ addresses: [{ ip: host, targetRef }], ports: [{ name: "http", port }] }] });
    await client.request("POST", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", {
        metadata: { name: "sealed-secrets-controller-test", labels: { "kubernetes.io/service-name": "sealed-secrets-controller" } },
        addressType: "IPv4",
        endpoints: [{ addresses: [host], conditions: { ready: true }, targetRef }],
        ports: [{ name: "http", port, protocol: "TCP" }],
    });
}

/** A non-loopback IPv4 address of this machine (for endpoints the API server will proxy to). */
export function hostAddress(): string {
    const host = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal)?.address;
    if (!host) throw new Error("the cluster tier needs a non-loopback IPv4 address for the controller's endpoint");
    return host;
}
