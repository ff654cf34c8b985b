/**
 * Sealed Secrets encryption, in the exact format the Sealed Secrets controller decrypts: a random
 * 32-byte session key wrapped with RSA-OAEP (SHA-256) under the controller's public key, with the
 * sealing scope as the OAEP label, followed by the value encrypted with AES-256-GCM under that key
 * (zero nonce: each session key is used once). Layout: uint16 big-endian length of the RSA block,
 * the RSA block, then the GCM ciphertext and tag. Node's own crypto does all of it, so no
 * dependency is needed; interoperability is proven against kubeseal built from the controller's
 * module (test/secrets/seal.test.ts).
 */
import { X509Certificate, constants, createCipheriv, createDecipheriv, privateDecrypt, publicEncrypt, randomBytes } from "node:crypto";

/** How widely a sealed value may be used: bound to name and namespace (default), to a namespace, or anywhere. */
export type SealingScope = "strict" | "namespace-wide" | "cluster-wide";

/** The OAEP label for a scope, as the controller computes it. */
export function encryptionLabel(namespace: string, name: string, scope: SealingScope): Buffer {
    switch (scope) {
        case "cluster-wide":
            return Buffer.alloc(0);
        case "namespace-wide":
            return Buffer.from(namespace);
        case "strict":
            return Buffer.from(`${namespace}/${name}`);
    }
}

/** The annotation that tells the controller a secret's scope (none for strict). */
export function scopeAnnotations(scope: SealingScope): Record<string, string> {
    if (scope === "cluster-wide") return { "sealedsecrets.bitnami.com/cluster-wide": "true" };
    if (scope === "namespace-wide") return { "sealedsecrets.bitnami.com/namespace-wide": "true" };
    return {};
}

const ZERO_NONCE = Buffer.alloc(12);

/** Encrypts one value for the controller holding the private half of `certificatePem`. */
export function sealValue(certificatePem: string, plaintext: Buffer, label: Buffer): Buffer {
    const publicKey = new X509Certificate(certificatePem).publicKey;
    if (publicKey.asymmetricKeyType !== "rsa") throw new Error("the sealing certificate must carry an RSA public key");
    const sessionKey = randomBytes(32);
    const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256", oaepLabel: label }, sessionKey);
    const cipher = createCipheriv("aes-256-gcm", sessionKey, ZERO_NONCE);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(wrapped.length);
    return Buffer.concat([length, wrapped, body]);
}

/** Decrypts a sealed value with the controller's private key (what the controller does; used to verify). */
export function unsealValue(privateKeyPem: string, sealed: Buffer, label: Buffer): Buffer {
    if (sealed.length < 2) throw new Error("sealed value is too short");
    const rsaLength = sealed.readUInt16BE(0);
    if (sealed.length < 2 + rsaLength + 16) throw new Error("sealed value is too short");
    const sessionKey = privateDecrypt(
        { key: privateKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256", oaepLabel: label },
        sealed.subarray(2, 2 + rsaLength),
    );
    const body = sealed.subarray(2 + rsaLength);
    const decipher = createDecipheriv("aes-256-gcm", sessionKey, ZERO_NONCE);
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
}

/** A SealedSecret manifest for a Secret `name` in `namespace` holding the given values. */
export function sealedSecret(certificatePem: string, namespace: string, name: string, values: Readonly<Record<string, Buffer>>, scope: SealingScope = "strict") {
    const label = encryptionLabel(namespace, name, scope);
    const annotations = scopeAnnotations(scope);
    const encryptedData: Record<string, string> = {};
    for (const key of Object.keys(values).sort()) encryptedData[key] = sealValue(certificatePem, values[key], label).toString("base64");
    const metadata = { name, namespace, ...(Object.keys(annotations).length ? { annotations } : {}) };
    return {
        apiVersion: "bitnami.com/v1alpha1",
        kind: "SealedSecret",
        metadata,
        spec: { encryptedData, template: { metadata, type: "Opaque" } },
    };
}
