/**
 * Sensitive configuration end to end: the `stages secret` verbs on a real ops repo made by a real
 * platform stack, values checked by unsealing with kubeseal built from the controller's module,
 * the rights matrix with the platform's own CI token, and the preview check of referenced secrets.
 */
import * as assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import YAML from "yaml";

import { RunnerError } from "../../src/runner/errors";
import type { AssembledRunner } from "../../src/runner/index";
import { CI_VERBS } from "../../src/runner/rights";
import { repoRoot, testToolchain } from "../support/engine";
import { walk } from "../support/files";
import { makeBundleDir } from "../support/fixtures";
import { plant } from "../support/planted";
import { Pipeline, bootstrapPipeline } from "../support/service";

const STAGES_BIN = path.join(repoRoot, "bin", "stages");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

interface Run {
    code: number | null;
    stdout: string;
    stderr: string;
}

describe("sensitive configuration: stages secret on a real ops repo", function () {
    let dir: string;
    let dataDir: string;
    let ops: string;
    let env: NodeJS.ProcessEnv;
    let assembled: AssembledRunner;
    let pipeline: Pipeline;
    let kubeseal: string;
    let ciToken: string;
    const operatorToken = plant(randomBytes(24).toString("hex"));
    const scopedCiToken = plant(randomBytes(24).toString("hex"));
    // Values planted to prove they never leak: into the repo, output, errors or the runner's log.
    const dbPassword = plant(`db-${randomBytes(12).toString("hex")}`);
    const apiKey = plant(`key-${randomBytes(12).toString("hex")}`);
    const outputs: string[] = [];

    const git = (...args: string[]) => execFileSync("git", ["--git-dir", ops, ...args], { encoding: "utf8" }).trim();
    const commits = () => Number(git("rev-list", "--count", "main"));

    function cli(args: string[], opts: { input?: string; extraEnv?: NodeJS.ProcessEnv } = {}): Promise<Run> {
        return new Promise((resolve) => {
            const child = spawn(process.execPath, [STAGES_BIN, ...args], { env: { ...env, ...opts.extraEnv }, stdio: ["pipe", "pipe", "pipe"] });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
            child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
            child.on("exit", (code) => {
                outputs.push(stdout, stderr);
                resolve({ code, stdout, stderr });
            });
            child.stdin.end(opts.input ?? "");
        });
    }

    function keypair(name: string): { cert: string; key: string } {
        const key = path.join(dir, `${name}.key`);
        const cert = path.join(dir, `${name}.crt`);
        execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`], { stdio: "ignore" });
        return { cert, key };
    }

    /** Unseals one secret of a file with kubeseal and a private key: key -> value. */
    function unseal(file: string, name: string, privateKey: string): Record<string, string> {
        const doc = YAML.parseAllDocuments(git("show", `main:${file}`)).map((d) => d.toJS()).find((d) => d?.metadata?.name === name);
        assert.ok(doc, `no SealedSecret ${name} in ${file}`);
        const out = execFileSync(kubeseal, ["--recovery-unseal", "--recovery-private-key", privateKey, "--format", "json"], { input: JSON.stringify(doc), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
        const secret = JSON.parse(out) as { data: Record<string, string> };
        return Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
    }

    let first: { cert: string; key: string };
    let second: { cert: string; key: string };

    before(async function () {
        const tc = await testToolchain();
        kubeseal = tc.components.find((c) => c.component.name === "kubeseal")!.path;
        pipeline = await bootstrapPipeline(
            "gitops-stages-secrets-",
            [{ name: "itg" }, { name: "tst" }],
            [
                { name: "operator-tst", token: operatorToken, rights: [{ stages: ["tst"], verbs: ["secrets"] }] },
                { name: "ci-extra", token: scopedCiToken, rights: [{ stages: ["*"], verbs: CI_VERBS }] },
            ],
            { olivia: { teams: ["tst-owners"], rights: [{ stages: ["tst"], verbs: ["secrets", "status"] }] }, dev: { teams: [] } },
        );
        ({ dir, dataDir, ops, env } = pipeline);
        assembled = await pipeline.runner();
        // The platform's generated CI token for tst, as CI would hold it.
        ciToken = pipeline.ciTokens.tst;
        assert.match(ciToken, /^[A-Za-z0-9]{48}$/);
        first = keypair("controller-1");
        second = keypair("controller-2");
        fs.writeFileSync(path.join(dir, "db-password"), dbPassword);
    });

    after(function () {
        pipeline?.dispose();
    });

    it("secret set seals values from a file and stdin into one commit that only the controller's key opens", async function () {
        const before = commits();
        const r = await cli(["secret", "set", "web", "--stage", "tst", "--cert", first.cert, `DB_PASSWORD=@${path.join(dir, "db-password")}`, "API_KEY=-", "--as", "olivia", "--json"], { input: apiKey });
        assert.equal(r.code, 0, r.stderr);
        const answer = JSON.parse(r.stdout) as { opsCommit: string; secrets: { app: string; name: string; namespace: string; scope: string; keys: string[] }[] };
        assert.equal(commits(), before + 1);
        assert.equal(answer.opsCommit, git("rev-parse", "main"));
        assert.deepEqual(answer.secrets, [{ app: "web", name: "web", namespace: "tst", scope: "strict", keys: ["API_KEY", "DB_PASSWORD"] }]);
        assert.deepEqual(git("show", "--name-only", "--format=", "main").split("\n"), ["environments/tst/secrets/web.yaml"]);
        const message = git("log", "-1", "--format=%B", "main");
        assert.match(message, /^Seal API_KEY, DB_PASSWORD in secret web of web in tst \(request r-/);
        assert.match(message, /Requester: olivia\nSecret: tst\/web\nScope: strict \(name and namespace\)\n/);
        assert.deepEqual(unseal("environments/tst/secrets/web.yaml", "web", first.key), { API_KEY: apiKey, DB_PASSWORD: dbPassword });
        assert.throws(() => unseal("environments/tst/secrets/web.yaml", "web", second.key), "another key must not open it");
    });

    it("a wider scope needs its flag, is recorded in the commit, and changing a secret's scope needs --replace", async function () {
        const r = await cli(["secret", "set", "web", "--stage", "tst", "--name", "shared", "--cluster-wide", "--cert", first.cert, "TOKEN=-", "--as", "olivia"], { input: apiKey });
        assert.equal(r.code, 0, r.stderr);
        assert.match(git("log", "-1", "--format=%B", "main"), /Scope: cluster-wide \(requested with --cluster-wide\)/);
        const file = YAML.parseAllDocuments(git("show", "main:environments/tst/secrets/web.yaml")).map((d) => d.toJS());
        assert.equal(file.find((d) => d.metadata.name === "shared").metadata.annotations["sealedsecrets.bitnami.com/cluster-wide"], "true");
        const before = commits();
        const strict = await cli(["secret", "set", "web", "--stage", "tst", "--name", "shared", "--cert", first.cert, "OTHER=-", "--as", "olivia"], { input: "x" });
        assert.equal(strict.code, 5, strict.stderr);
        assert.match(strict.stderr, /scope: secret shared of web in tst is sealed cluster-wide; to reseal it strict, give every key again with --replace/);
        assert.equal(commits(), before);
    });

    it("secret list shows names, scopes and keys, never values", async function () {
        const r = await cli(["secret", "list", "--stage", "tst", "--as", "olivia", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const answer = JSON.parse(r.stdout) as { secrets: { name: string; scope: string; keys: string[] }[] };
        assert.deepEqual(answer.secrets.map((s) => [s.name, s.scope, s.keys]), [["shared", "cluster-wide", ["TOKEN"]], ["web", "strict", ["API_KEY", "DB_PASSWORD"]]]);
        const text = await cli(["secret", "list", "--stage", "tst", "--as", "olivia"]);
        assert.match(text.stdout, /web\s+web\s+tst\s+strict\s+API_KEY,DB_PASSWORD/);
    });

    it("rights: only holders of the secrets right on the stage may set, list or remove; CI tokens never", async function () {
        const before = commits();
        const attempts: [string, string[], NodeJS.ProcessEnv, string | undefined][] = [];
        const verbs: [string, string[]][] = [
            ["set", ["secret", "set", "web", "--stage", "tst", "--cert", first.cert, "X=-"]],
            ["list", ["secret", "list", "--stage", "tst"]],
            ["rm", ["secret", "rm", "web", "--stage", "tst", "--name", "shared"]],
        ];
        for (const [verb, args] of verbs) {
            attempts.push([`${verb} as a user without the right`, [...args, "--as", "dev"], {}, "forbidden"]);
            attempts.push([`${verb} with the platform's CI token of tst`, args, { GITOPS_STAGES_TOKEN: ciToken }, "forbidden"]);
            attempts.push([`${verb} with a configured CI token`, args, { GITOPS_STAGES_TOKEN: scopedCiToken }, "forbidden"]);
            attempts.push([`${verb} with an unknown token`, args, { GITOPS_STAGES_TOKEN: "not-a-token" }, "unauthorized"]);
            attempts.push([`${verb} in another stage`, [...args.map((a) => (a === "tst" ? "itg" : a)), "--as", "olivia"], {}, "forbidden"]);
        }
        for (const [what, args, extraEnv, kind] of attempts) {
            const r = await cli([...args, "--json"], { input: "x", extraEnv });
            assert.equal(r.code, 3, `${what}: exit ${r.code} ${r.stderr}`);
            assert.equal((JSON.parse(r.stdout) as { error: { kind: string } }).error.kind, kind, what);
        }
        assert.equal(commits(), before, "a refused request committed something");
        // The operator token may (through the same path as CI would use it).
        const ok = await cli(["secret", "list", "--stage", "tst", "--json"], { extraEnv: { GITOPS_STAGES_TOKEN: operatorToken } });
        assert.equal(ok.code, 0, ok.stderr);
    });

    it("refuses values on the command line without echoing them, and bad input changes nothing", async function () {
        const before = commits();
        const cases: [string[], RegExp][] = [
            [["secret", "set", "web", "--stage", "tst", "--cert", first.cert, `DB_PASSWORD=${dbPassword}`], /values\.DB_PASSWORD: values are never taken from the command line/],
            [["secret", "set", "web", "--stage", "tst", "--cert", first.cert, "bad key=-"], /values\.bad key = "bad key": must be 1 to 253 letters/],
            [["secret", "set", "../etc", "--stage", "tst", "--cert", first.cert, "K=-"], /app = "\.\.\/etc": must be/],
            [["secret", "set", "web", "--stage", "tst", "--namespace", "prod", "--cert", first.cert, "K=-"], /namespace: "prod" is not a namespace of stage tst/],
            [["secret", "set", "web", "--stage", "tst", "--cert", path.join(dir, "db-password"), "K=-"], /certificate: cannot seal with it/],
            [["secret", "set", "web", "--stage", "tst", "K=-"], /certificate: the platform has no cluster .* pass --cert <file>/],
        ];
        for (const [args, pattern] of cases) {
            const r = await cli([...args, "--as", "olivia"], { input: "value" });
            assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code} ${r.stderr}`);
            assert.match(r.stderr, pattern);
        }
        assert.equal(commits(), before);
    });

    it("a promotion whose values name a secret the stage lacks fails at preview with the exact message, and nothing is committed", async function () {
        const bundle = makeBundleDir(dir, "api", { extra: { "values/tst.yaml": "replicas: 1\ndatabase:\n  existingSecret: api-db\n" } });
        const r1 = await assembled.runner.promote({ app: "api", version: "1.0.0", to: "itg", bundle, image: "registry.example/api:1.0.0", requester: "ci", source: { commit: COMMIT } }, { name: "ci", teams: [], canOverrideOrder: false, grants: [{ stages: ["*"], verbs: CI_VERBS }] });
        assert.equal(r1.state, "done");
        const before = commits();
        const expected = 'app api refers to secret "api-db" (values database.existingSecret), which stage tst does not have: seal it first with `stages secret set api --stage tst --name api-db KEY=@file`';
        const preview = await cli(["preview", "api@1.0.0", "--to", "tst", "--commit", COMMIT, "--as", "dev"]);
        assert.equal(preview.code, 3, preview.stderr);
        assert.ok(preview.stderr.includes(expected), preview.stderr);
        const promote = await cli(["promote", "api@1.0.0", "--to", "tst", "--commit", COMMIT, "--as", "dev"]);
        assert.equal(promote.code, 3, promote.stderr);
        assert.ok(promote.stderr.includes(expected), promote.stderr);
        assert.equal(commits(), before);
        // Once the secret is sealed, the same promotion goes through.
        const set = await cli(["secret", "set", "api", "--stage", "tst", "--name", "api-db", "--cert", first.cert, "PASSWORD=-", "--as", "olivia"], { input: dbPassword });
        assert.equal(set.code, 0, set.stderr);
        const ok = await cli(["promote", "api@1.0.0", "--to", "tst", "--commit", COMMIT, "--as", "dev"]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.ok(git("show", "main:environments/tst/values.yaml").includes("existingSecret: api-db"));
    });

    it("secret reseal re-encrypts every secret of the stage for the new key in one commit", async function () {
        const before = commits();
        const r = await cli(["secret", "reseal", "--stage", "tst", "--cert", second.cert, "--private-key", first.key, "--as", "olivia"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(commits(), before + 1);
        assert.deepEqual(git("show", "--name-only", "--format=", "main").split("\n").sort(), ["environments/tst/secrets/api.yaml", "environments/tst/secrets/web.yaml"]);
        assert.deepEqual(unseal("environments/tst/secrets/web.yaml", "web", second.key), { API_KEY: apiKey, DB_PASSWORD: dbPassword });
        assert.deepEqual(unseal("environments/tst/secrets/web.yaml", "shared", second.key), { TOKEN: apiKey });
        assert.throws(() => unseal("environments/tst/secrets/web.yaml", "web", first.key), "the old key must no longer open it");
        const wrong = await cli(["secret", "reseal", "--stage", "tst", "--cert", second.cert, "--private-key", first.key, "--as", "olivia"]);
        assert.equal(wrong.code, 2);
        assert.match(wrong.stderr, /private-key: none of the given keys opens key .* of secret/);
    });

    it("secret rm removes keys, then the secret, then the file, one commit each", async function () {
        let before = commits();
        const key = await cli(["secret", "rm", "web", "--stage", "tst", "--name", "web", "API_KEY", "--as", "olivia", "--json"]);
        assert.equal(key.code, 0, key.stderr);
        assert.deepEqual((JSON.parse(key.stdout) as { secrets: { name: string; keys: string[] }[] }).secrets.map((s) => [s.name, s.keys]), [["shared", ["TOKEN"]], ["web", ["DB_PASSWORD"]]]);
        assert.equal(commits(), ++before);
        assert.equal((await cli(["secret", "rm", "web", "--stage", "tst", "--name", "shared", "--as", "olivia"])).code, 0);
        assert.equal(commits(), ++before);
        assert.equal((await cli(["secret", "rm", "web", "--stage", "tst", "--as", "olivia"])).code, 0);
        assert.equal(commits(), ++before);
        assert.ok(!git("ls-tree", "-r", "--name-only", "main").includes("environments/tst/secrets/web.yaml"));
        const missing = await cli(["secret", "rm", "web", "--stage", "tst", "--as", "olivia"]);
        assert.equal(missing.code, 4);
        assert.equal(commits(), before);
    });

    it("the planted values appear nowhere: not in any commit of the repo, command output, errors or the runner's log", async function () {
        const everything = execFileSync("git", ["--git-dir", ops, "log", "--all", "-p", "--format=%B"], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
        const log = fs.existsSync(path.join(dataDir, "runner.log")) ? fs.readFileSync(path.join(dataDir, "runner.log"), "utf8") : "";
        for (const value of [dbPassword, apiKey, operatorToken, scopedCiToken, ciToken]) {
            assert.ok(!everything.includes(value), "a planted value is in the ops repo");
            assert.ok(!log.includes(value), "a planted value is in the runner's log");
            assert.ok(!outputs.some((o) => o.includes(value)), "a planted value is in command output");
        }
        await assert.rejects(assembled.secrets.list("tst", undefined, { name: "nobody", grants: [] }), (e: RunnerError) => e.kind === "forbidden" && !e.message.includes("web"));
        // The unencrypted parts of Pulumi's state: the generated CI tokens are secrets there, never plaintext.
        const passphrase = fs.readFileSync(path.join(dataDir, "passphrase"), "utf8");
        plant(passphrase);
        for (const f of walk(path.join(dataDir, "state"))) {
            const text = fs.readFileSync(f, "utf8");
            for (const value of [ciToken, passphrase, dbPassword, apiKey]) assert.ok(!text.includes(value), `a planted value is in plaintext in ${path.relative(dataDir, f)}`);
        }
    });
});
