/**
 * `SshKeyPair`: an Ed25519 key pair generated once and kept in Pulumi's state (private half as a
 * secret). Argo CD reads the ops repository with it; GitHub holds the public half as a read-only
 * deploy key.
 */
import * as pulumi from "@pulumi/pulumi";

import { ModuleProvidedResource } from "./module-provider";

/** An Ed25519 key pair. */
export class SshKeyPair extends ModuleProvidedResource {
    /** OpenSSH public key line. */
    declare readonly publicKey: pulumi.Output<string>;
    /** PKCS#8 PEM private key (secret). */
    declare readonly privateKey: pulumi.Output<string>;

    constructor(name: string, args: { comment: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super({ module: "src/program/ssh-key-provider", factory: "sshKeyPair" }, name, { ...args, publicKey: undefined, privateKey: undefined }, { ...opts, additionalSecretOutputs: ["privateKey"] }, "gitops-stages-ssh", "SshKeyPair");
    }
}
