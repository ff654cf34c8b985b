/**
 * The Pulumi program of every gitops-stages stack. Issue-by-issue this grows into the platform,
 * stage and merge-request roles; today it declares the platform's generated Argo CD admin password.
 */
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

const admin = new random.RandomPassword("argocd-admin", { length: 32, special: false });

/** The generated Argo CD admin password (secret). */
export const argocdAdminPassword = pulumi.secret(admin.result);
/** The stack this program ran as. */
export const stackName = pulumi.getStack();
