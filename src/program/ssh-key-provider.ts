/**
 * The provider of `SshKeyPair` (ssh-key.ts), loaded by path by Pulumi's dynamic-provider host
 * (module-provider.ts): Node built-ins only.
 */
import * as crypto from "node:crypto";

import type * as pulumi from "@pulumi/pulumi";

interface KeyState {
    comment: string;
    publicKey: string;
    privateKey: string;
}

/** The provider of `SshKeyPair`. */
export function sshKeyPair(): pulumi.dynamic.ResourceProvider {
    return {
        async create(inputs: { comment: string }) {
            const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
            // OpenSSH public key: "ssh-ed25519 " + base64(string "ssh-ed25519" + string <32-byte key>).
            const raw = (publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32);
            const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
            const blob = Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]);
            const outs: KeyState = {
                comment: inputs.comment,
                publicKey: `ssh-ed25519 ${blob.toString("base64")} ${inputs.comment}`,
                privateKey: privateKey.export({ format: "pem", type: "pkcs8" }) as string,
            };
            return { id: crypto.createHash("sha256").update(outs.publicKey).digest("hex").slice(0, 16), outs };
        },
        async diff(_id: string, olds: KeyState, news: { comment: string }) {
            return { changes: olds.comment !== news.comment, replaces: olds.comment !== news.comment ? ["comment"] : [] };
        },
    };
}
