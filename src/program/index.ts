/**
 * Entry point of `pulumi up` on any gitops-stages stack (Pulumi.yaml `main: src/program/`): the
 * module's export is the program function, whose result becomes the stack's outputs.
 */
import { runStack } from "./run";

export = runStack;
