/**
 * `SshKeyPair`: an Ed25519 key pair generated once and kept in Pulumi's state (private half as a
 * secret). Argo CD reads the ops repository with it; GitHub holds the public half as a read-only
 * deploy key.
 */
import * as pulumi from "@pulumi/pulumi";

interface KeyState {
    comment: string;
    publicKey: string;
    privateKey: string;
}

const provider: pulumi.dynamic.ResourceProvider = {
    async create(inputs: { comment: string }) {
        // Only Node built-ins here: Pulumi serializes this function for its dynamic-provider host.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const crypto = require("crypto") as typeof import("crypto");
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

/** An Ed25519 key pair. */
export class SshKeyPair extends pulumi.dynamic.Resource {
    /** OpenSSH public key line. */
    declare readonly publicKey: pulumi.Output<string>;
    /** PKCS#8 PEM private key (secret). */
    declare readonly privateKey: pulumi.Output<string>;

    constructor(name: string, args: { comment: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super(provider, name, { ...args, publicKey: undefined, privateKey: undefined }, { ...opts, additionalSecretOutputs: ["privateKey"] }, "gitops-stages-ssh", "SshKeyPair");
    }
}
