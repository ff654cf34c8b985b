/**
 * How the runner finds its state backend: the Pulumi CLI's order (PULUMI_BACKEND_URL, the
 * project's Pulumi.yaml, the CLI's current login), then the embedded default; and what it shows.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { describeBackend, platformStackName, redactBackendUrl, resolveBackend } from "../../src/runner/adapters/backend";
import { runnerEnvironment, selfContainedEnv } from "../../src/runner/adapters/environment";
import type { RunnerError } from "../../src/runner/errors";
import { repoRoot } from "../support/engine";

describe("the runner's state backend", function () {
    let dir: string;
    let home: string;
    let project: string;
    const data = "/srv/runner";

    beforeEach(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-backend-"));
        home = path.join(dir, "home");
        project = path.join(dir, "project");
        fs.mkdirSync(path.join(home, ".pulumi"), { recursive: true });
        fs.mkdirSync(project);
        fs.writeFileSync(path.join(project, "Pulumi.yaml"), "name: gitops-stages\nruntime: nodejs\n");
    });

    afterEach(function () {
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const login = (current: string, tokens: Record<string, string> = { [current]: "" }) =>
        fs.writeFileSync(path.join(home, ".pulumi", "credentials.json"), JSON.stringify({ current, accessTokens: tokens }));

    it("takes the embedded default when nothing else is said", function () {
        const b = resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi") }, data, project);
        assert.deepEqual(b, { url: "file:///srv/runner/state", source: "embedded default" });
    });

    it("takes the Pulumi CLI's current login from $PULUMI_HOME/credentials.json (default .pulumi in the account's home)", function () {
        login(`file://${home}/.gitops-stages-state`);
        const b = resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi") }, data, project);
        assert.equal(b.url, `file://${home}/.gitops-stages-state`);
        assert.equal(b.source, "pulumi login");
        assert.equal(b.credentialsFile, path.join(home, ".pulumi", "credentials.json"));
        assert.equal(b.accessToken, undefined, "a file login has no token");
    });

    it("reads the login from $PULUMI_HOME when it is set, and expands file://~ as the CLI does", function () {
        const other = path.join(dir, "other-home");
        fs.mkdirSync(other);
        fs.writeFileSync(path.join(other, "credentials.json"), JSON.stringify({ current: "file://~" }));
        login("file:///not/this/one");
        const b = resolveBackend({ HOME: home, PULUMI_HOME: other }, data, project);
        assert.equal(b.url, `file://${home}`);
        assert.equal(b.credentialsFile, path.join(other, "credentials.json"));
    });

    it("passes a Pulumi Cloud login's token on, and never shows it", function () {
        login("https://api.pulumi.example", { "https://api.pulumi.example": "pul-secret-token" });
        const b = resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi") }, data, project);
        assert.equal(b.accessToken, "pul-secret-token");
        assert.equal(describeBackend(b).includes("pul-secret-token"), false);
        assert.equal(platformStackName(b), "gitops-stages/platform (in the login's default organization)");
    });

    it("lets the project's Pulumi.yaml win over the login, and PULUMI_BACKEND_URL over both", function () {
        login("file:///from/login");
        fs.writeFileSync(path.join(project, "Pulumi.yaml"), "name: gitops-stages\nruntime: nodejs\nbackend:\n  url: file:///from/project\n");
        assert.deepEqual(resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi") }, data, project), { url: "file:///from/project", source: "Pulumi.yaml" });
        assert.deepEqual(resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi"), PULUMI_BACKEND_URL: "s3://bucket/state" }, data, project), { url: "s3://bucket/state", source: "PULUMI_BACKEND_URL" });
    });

    it("says which file is broken when the login file cannot be read", function () {
        fs.writeFileSync(path.join(home, ".pulumi", "credentials.json"), "{not json");
        assert.throws(() => resolveBackend({ HOME: home, PULUMI_HOME: path.join(home, ".pulumi") }, data, project), (e: Error) => e.message.startsWith(`${path.join(home, ".pulumi", "credentials.json")}: the Pulumi CLI's login file cannot be read`));
    });

    it("on the user's own self-managed backend a missing passphrase is an error saying how to give it, before anything is written", async function () {
        login(`file://${home}/.gitops-stages-state`);
        const dataDir = path.join(dir, "data");
        await assert.rejects(runnerEnvironment({ projectRoot: repoRoot, dataDir, env: { HOME: home, PULUMI_HOME: path.join(home, ".pulumi"), PATH: process.env.PATH } }), (e: RunnerError) => {
            assert.equal(e.kind, "invalid");
            assert.equal(
                e.message,
                `PULUMI_CONFIG_PASSPHRASE: not set. The state backend file://${home}/.gitops-stages-state (from the Pulumi CLI's current login in ${path.join(home, ".pulumi", "credentials.json")}) ` +
                    "encrypts stack secrets with your passphrase: export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) as for pulumi up on the platform stack, then run this again",
            );
            return true;
        });
        assert.equal(fs.existsSync(dataDir), false, "the data folder was created");
    });

    it("a self-contained runner environment ignores the caller's login", function () {
        login("file:///the/callers/backend");
        const env = selfContainedEnv(path.join(dir, "data"), { HOME: home, PULUMI_HOME: path.join(home, ".pulumi"), PULUMI_BACKEND_URL: "file:///x", PULUMI_CONFIG_PASSPHRASE: "p" });
        assert.equal(env.PULUMI_BACKEND_URL, undefined);
        assert.equal(env.PULUMI_CONFIG_PASSPHRASE, undefined);
        assert.equal(resolveBackend(env, path.join(dir, "data"), project).source, "embedded default");
    });

    it("shows URLs without passwords or query strings, and names where they came from", function () {
        assert.equal(redactBackendUrl("postgres://runner:hunter2@db.internal:5432/state?sslmode=require"), "postgres://runner:****@db.internal:5432/state");
        assert.equal(redactBackendUrl("file:///srv/state"), "file:///srv/state");
        assert.equal(describeBackend({ url: "s3://b", source: "PULUMI_BACKEND_URL" }), "s3://b (from $PULUMI_BACKEND_URL)");
        assert.equal(describeBackend({ url: "file:///s", source: "pulumi login", credentialsFile: "/h/.pulumi/credentials.json" }), "file:///s (from the Pulumi CLI's current login in /h/.pulumi/credentials.json)");
        assert.equal(platformStackName({ url: "file:///s" }), "organization/gitops-stages/platform");
    });
});
