/**
 * The runner's Kubernetes client on a kubeconfig as managed clusters write them: the server's CA
 * from a file and a token from an exec credential plugin (as EKS, GKE and AKS use), against an
 * HTTPS server on loopback with a certificate generated here.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";

import { KubeClient, loadKubeconfig } from "../../src/kube/client";
import { plant } from "../support/planted";

describe("the Kubernetes client's kubeconfig", function () {
    let dir: string;
    let server: https.Server;
    let port: number;
    const seen: string[] = [];
    const token = plant(`exec-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`);

    before(async function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-kube-"));
        fs.writeFileSync(path.join(dir, "san.cnf"), "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=IP:127.0.0.1\n");
        try {
            execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1", "-config", "san.cnf", "-extensions", "ext"], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
        } catch (e) {
            throw new Error(`openssl is needed to generate the test server's certificate: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
        }
        server = https.createServer({ key: fs.readFileSync(path.join(dir, "key.pem")), cert: fs.readFileSync(path.join(dir, "cert.pem")) }, (req, res) => {
            seen.push(String(req.headers.authorization ?? ""));
            if (req.headers.authorization !== `Bearer ${token}`) {
                res.writeHead(401, { "content-type": "application/json" });
                res.end(JSON.stringify({ kind: "Status", message: "Unauthorized" }));
                return;
            }
            res.writeHead(req.url === "/api/v1/namespaces/argocd" ? 200 : 404, { "content-type": "application/json" });
            res.end(JSON.stringify(req.url === "/api/v1/namespaces/argocd" ? { kind: "Namespace", metadata: { name: "argocd" } } : { kind: "Status", message: "not found" }));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
        port = (server.address() as { port: number }).port;
        // The plugin prints an ExecCredential, as aws eks get-token or gke-gcloud-auth-plugin do.
        const plugin = path.join(dir, "credential-plugin.sh");
        fs.writeFileSync(plugin, `#!/bin/sh\ncat <<'JSON'\n{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"${token}"}}\nJSON\n`, { mode: 0o755 });
        fs.writeFileSync(
            path.join(dir, "kubeconfig"),
            [
                "apiVersion: v1",
                "kind: Config",
                "clusters:",
                `  - name: managed\n    cluster:\n      server: https://127.0.0.1:${port}\n      certificate-authority: cert.pem`,
                "users:",
                `  - name: plugin\n    user:\n      exec:\n        apiVersion: client.authentication.k8s.io/v1\n        command: ${plugin}\n        interactiveMode: Never`,
                "contexts:",
                "  - name: managed\n    context:\n      cluster: managed\n      user: plugin",
                "current-context: managed",
                "",
            ].join("\n"),
        );
    });

    after(async function () {
        await new Promise((r) => server?.close(r));
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("authenticates with an exec credential plugin's token and trusts the CA file the kubeconfig names", async function () {
        const client = KubeClient.fromKubeconfig(path.join(dir, "kubeconfig"));
        try {
            assert.deepEqual(await client.get("/api/v1/namespaces/argocd"), { kind: "Namespace", metadata: { name: "argocd" } });
            assert.equal(await client.get("/api/v1/namespaces/missing"), undefined);
        } finally {
            client.close();
        }
        assert.ok(seen.length >= 2 && seen.every((h) => h === `Bearer ${token}`), "a request went out without the plugin's token");
    });

    it("names a context the file does not have", function () {
        assert.throws(() => loadKubeconfig(path.join(dir, "kubeconfig"), "prod"), /kubeconfig .*kubeconfig: no context named "prod"/);
    });
});
