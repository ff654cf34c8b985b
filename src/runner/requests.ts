/**
 * The requests every transport sends, as TypeBox schemas: the one definition the command layer
 * parses with, the service's routes validate with and the OpenAPI document is generated from, so
 * none of them can drift from another. A schema's `title` names it in error messages ("invalid
 * promotion request (2 problems): ..."); rules that JSON Schema cannot say (an image with every
 * bundle) are checked in code next to the parse.
 */
import { type Static, type TObject, type TProperties, type TSchema, Type } from "@sinclair/typebox";

import { Commit, HttpUrl, Label, OneOf, Pattern, RequestId, Requester, Semver, Whole, problemsOf } from "../config/schema";
import { DNS_LABEL, DNS_LABEL_RULE, REQUESTER, REQUESTER_RULE, ValidationError } from "../config/validate";
import { SECRET_KEY, SECRET_KEY_RULE } from "../secrets/store";
import { RunnerError } from "./errors";

/** A reason given with a change: free text for the commit's body, without NUL bytes. */
export const REASON = /^[^\0]{0,1000}$/;
/** The rule {@link REASON} checks. */
export const REASON_RULE = "must be at most 1000 characters";

const Reason = Pattern(REASON, REASON_RULE);
const Mr = Whole(1, 10_000_000);
const optionalRequester = Type.Optional(
    Pattern(REQUESTER, REQUESTER_RULE, { description: "optional; checked, then replaced by the authenticated principal: the requester recorded is always who asked" }),
);
const claimedRequester = Type.Optional(
    Pattern(REQUESTER, REQUESTER_RULE, { description: "optional; the caller's claim of whom it asks for (CI: the actor who merged), recorded as a Claimed-Requester trailer, never as the requester" }),
);
const image = Pattern(/^\S+[:@]\S+$/, "must be an image reference with a tag or digest");

function object<T extends TProperties>(title: string, properties: T) {
    return Type.Object(properties, { title, additionalProperties: false });
}

/** The fields of a promotion or preview, but its bundle (each transport carries that its own way). */
const promoteFields = {
    app: Label,
    version: Semver,
    to: Label,
    image: Type.Optional(Type.String({ description: "image with tag or digest; required with a bundle" })),
    requester: optionalRequester,
    claimedRequester,
    source: object("source", { commit: Commit, mr: Type.Optional(Mr), ciRunUrl: Type.Optional(HttpUrl) }),
    reason: Type.Optional(Reason),
    idempotencyKey: Type.Optional(RequestId),
    overrideOrder: Type.Optional(Type.Boolean()),
};

const mrDeployFields = {
    mr: Mr,
    app: Label,
    image,
    sourceCommit: Commit,
    ttlHours: Type.Optional(Whole(1, 24 * 90)),
    requester: optionalRequester,
};

/** A bundle uploaded with a request (the service's transport): path -> text. */
export const BundleUpload = Type.Object(
    { files: Type.Record(Type.String(), Type.String(), { description: "path -> text: chart/** and values/<stage>.yaml" }) },
    { additionalProperties: false, description: "the release's chart and values, for the first promotion of a version" },
);

/** A bundle as the command layer gets it: a folder on this machine (the CLI reads it; the service writes an upload to one). */
const BundleDir = Type.String({ description: "a folder holding the release's chart and values" });

/** Every command's input as the command layer parses it (a bundle already a folder; secret values carried apart). */
export const COMMAND_INPUT = {
    promote: object("promotion request", { ...promoteFields, bundle: Type.Optional(BundleDir) }),
    preview: object("preview request", { ...promoteFields, bundle: Type.Optional(BundleDir) }),
    rollback: object("rollback request", { app: Label, stage: Label, to: Type.Optional(Semver), requester: optionalRequester, claimedRequester, reason: Type.Optional(Reason), idempotencyKey: Type.Optional(RequestId) }),
    hold: object("hold request", { app: Label, stage: Label, requester: optionalRequester, claimedRequester, reason: Type.Optional(Reason) }),
    release: object("release request", { app: Label, stage: Label, requester: optionalRequester, claimedRequester, reason: Type.Optional(Reason) }),
    approve: object("approval", { app: Label, version: Semver, stage: Label }),
    status: object("status request", { stage: Type.Optional(Label) }),
    deployment: object("deployment request", { stage: Label, refresh: Type.Optional(Type.Boolean()), release: Type.Optional(Type.String({ description: "<app>@<version>: the stage must hold this release" })) }),
    wait: object("wait request", { stage: Label, timeoutSeconds: Type.Optional(Whole(1, 86_400)), until: Type.Optional(OneOf(["deployed", "synced"])), release: Type.Optional(Type.String()) }),
    history: object("history request", { stage: Label, commit: Type.Optional(Commit) }),
    drift: object("drift request", { stage: Type.Optional(Pattern(DNS_LABEL, DNS_LABEL_RULE, { description: "a stage, platform or mr-<n>; all of them when left out" })) }),
    "mr-deploy": object("merge-request deployment", { ...mrDeployFields, bundle: BundleDir }),
    "mr-destroy": object("merge-request destruction", { mr: Mr, requester: optionalRequester }),
    "mr-reap": object("reap request", { requester: optionalRequester }),
    "secret-set": object("secret request", {
        app: Label,
        stage: Label,
        name: Type.Optional(Label),
        namespace: Type.Optional(Label),
        scope: Type.Optional(OneOf(["strict", "namespace-wide", "cluster-wide"])),
        replace: Type.Optional(Type.Boolean()),
        certificate: Type.Optional(Type.String({ description: "the controller's certificate (PEM) for offline sealing" })),
        reason: Type.Optional(Reason),
    }),
    "secret-list": object("secret listing", { stage: Label, app: Type.Optional(Label) }),
    "secret-rm": object("secret removal", { app: Label, stage: Label, name: Type.Optional(Label), keys: Type.Optional(Type.Array(Type.String())), reason: Type.Optional(Reason) }),
    "secret-reseal": object("reseal request", {
        stage: Label,
        certificate: Type.Optional(Type.String()),
        privateKeys: Type.Optional(Type.Array(Type.String({ writeOnly: true }), { writeOnly: true, description: "the controller's private keys (PEM), to decrypt what they sealed; never logged, stored or returned" })),
        reason: Type.Optional(Reason),
    }),
} as const;

/** The verbs with an input schema. */
export type InputVerb = keyof typeof COMMAND_INPUT;

/** What the HTTP routes receive, where it differs from the command: bundles uploaded, secret values as base64. */
export const HTTP_BODY = {
    promote: object("promotion request", { ...promoteFields, bundle: Type.Optional(BundleUpload) }),
    preview: object("preview request", { ...promoteFields, bundle: Type.Optional(BundleUpload) }),
    "mr-deploy": object("merge-request deployment", { ...mrDeployFields, bundle: BundleUpload }),
    "secret-set": object("secret request", {
        ...COMMAND_INPUT["secret-set"].properties,
        values: Type.Record(Type.String({ pattern: SECRET_KEY.source }), Type.String({ contentEncoding: "base64", pattern: "^[A-Za-z0-9+/]*={0,2}$", "x-rule": "must be base64", writeOnly: true }), {
            description: "KEY -> base64 value; never logged, stored or returned",
            writeOnly: true,
            // A key that breaks the pattern would leave its value unchecked: such keys are refused.
            additionalProperties: false,
            "x-key-rule": `key ${SECRET_KEY_RULE}`,
        }),
    }),
} as const;

/** The runner's own promotion request: the requester set (the principal), a preview flag. */
export const PROMOTE_REQUEST = object("promotion request", { ...promoteFields, bundle: Type.Optional(BundleDir), requester: Requester, dryRun: Type.Optional(Type.Boolean()) });
/** The runner's own rollback request. */
export const ROLLBACK_REQUEST = object("rollback request", { ...COMMAND_INPUT.rollback.properties, requester: Requester });
/** The runner's own hold or release request. */
export const HOLD_REQUEST = object("hold request", { ...COMMAND_INPUT.hold.properties, requester: Requester });
/** The runner's own merge-request deployment. */
export const MR_DEPLOY_REQUEST = object("merge-request deployment", { ...mrDeployFields, bundle: BundleDir, requester: Requester });

/**
 * `value` checked against `schema` (its `title` names it in the error), or RunnerError(invalid)
 * listing the problems. `more` adds problems of rules a schema cannot state, once the shape is right.
 */
export function parseWith<T extends TObject>(schema: T, value: unknown, more: (v: Static<T>) => { key: string; rule: string; value?: string }[] = () => []): Static<T> {
    const problems = problemsOf(schema, value ?? {});
    if (!problems.length) problems.push(...more(value as Static<T>));
    if (problems.length) throw new RunnerError("invalid", new ValidationError(String(schema.title ?? "request"), problems).message);
    return value as Static<T>;
}

/** A command's input, checked against its schema. */
export function parseInput<V extends InputVerb>(verb: V, value: unknown): Static<(typeof COMMAND_INPUT)[V]> {
    return parseWith(COMMAND_INPUT[verb] as TObject, value) as Static<(typeof COMMAND_INPUT)[V]>;
}

/** The schema for a route body: the HTTP encoding where it has one, the command's otherwise. */
export function bodySchema(verb: InputVerb): TSchema {
    return (HTTP_BODY as Record<string, TSchema>)[verb] ?? COMMAND_INPUT[verb];
}
