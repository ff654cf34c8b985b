/**
 * Sealed Secrets interoperability: what we seal, kubeseal (built from the controller's own module
 * by the toolchain) unseals, and the other way round; tampering and a wrong namespace fail.
 */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import * as YAML from "yaml";

import { encryptionLabel, sealedSecret, sealValue, unsealValue } from "../../src/secrets/seal";
import { testToolchain } from "../support/engine";

describe("sealed secrets: our encryption against the controller's code", function () {
    let dir: string;
    let kubeseal: string;
    let cert: string;
    let key: string;
    const planted = "planted-s3cret-value-7f3a";

    before(async function () {
        const tc = await testToolchain();
        kubeseal = tc.components.find((c) => c.component.name === "kubeseal")!.path;
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-seal-"));
        // A controller key pair as the controller makes one: RSA 4096 in a self-signed certificate.
        execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "30", "-subj", "/CN=sealed-secret/O=sealed-secret"], { stdio: "ignore" });
        cert = fs.readFileSync(path.join(dir, "cert.pem"), "utf8");
        key = fs.readFileSync(path.join(dir, "key.pem"), "utf8");
    });
    after(function () {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const unsealWithKubeseal = (manifest: unknown): Record<string, string> => {
        const out = execFileSync(kubeseal, ["--recovery-unseal", "--recovery-private-key", path.join(dir, "key.pem"), "--format", "yaml"], {
            input: YAML.stringify(manifest),
            encoding: "utf8",
            // kubeseal's own refusal text is expected in the failure cases; keep it out of the test log.
            stdio: ["pipe", "pipe", "pipe"],
        });
        const secret = YAML.parse(out) as { data: Record<string, string> };
        return Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
    };

    for (const scope of ["strict", "namespace-wide", "cluster-wide"] as const) {
        it(`kubeseal unseals what we seal (${scope})`, function () {
            const manifest = sealedSecret(cert, "prod", "web", { DB_PASSWORD: Buffer.from(planted), API_KEY: Buffer.from("k-123") }, scope);
            assert.equal(JSON.stringify(manifest).includes(planted), false, "the plaintext is in the manifest");
            assert.deepEqual(unsealWithKubeseal(manifest), { API_KEY: "k-123", DB_PASSWORD: planted });
        });
    }

    it("we unseal what kubeseal seals", function () {
        const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "web", namespace: "prod" }, type: "Opaque", stringData: { DB_PASSWORD: planted } };
        const sealed = YAML.parse(execFileSync(kubeseal, ["--cert", path.join(dir, "cert.pem"), "--format", "yaml"], { input: YAML.stringify(secret), encoding: "utf8" }));
        const value = unsealValue(key, Buffer.from(sealed.spec.encryptedData.DB_PASSWORD, "base64"), encryptionLabel("prod", "web", "strict"));
        assert.equal(value.toString("utf8"), planted);
    });

    it("a tampered ciphertext does not unseal", function () {
        const manifest = sealedSecret(cert, "prod", "web", { DB_PASSWORD: Buffer.from(planted) });
        const bytes = Buffer.from(manifest.spec.encryptedData.DB_PASSWORD, "base64");
        bytes[bytes.length - 20] ^= 0x01;
        manifest.spec.encryptedData.DB_PASSWORD = bytes.toString("base64");
        assert.throws(() => unsealWithKubeseal(manifest));
        assert.throws(() => unsealValue(key, bytes, encryptionLabel("prod", "web", "strict")));
    });

    it("a strictly sealed value does not unseal in another namespace", function () {
        const manifest = sealedSecret(cert, "prod", "web", { DB_PASSWORD: Buffer.from(planted) });
        const moved = { ...manifest, metadata: { ...manifest.metadata, namespace: "tst" }, spec: { ...manifest.spec, template: { ...manifest.spec.template, metadata: { name: "web", namespace: "tst" } } } };
        assert.throws(() => unsealWithKubeseal(moved));
        const sealed = sealValue(cert, Buffer.from(planted), encryptionLabel("prod", "web", "strict"));
        assert.throws(() => unsealValue(key, sealed, encryptionLabel("tst", "web", "strict")));
    });
});
