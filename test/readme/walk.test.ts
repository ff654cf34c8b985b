/**
 * The README, walked as a new user would: every shell block marked `<!-- walk -->` (the platform's
 * bootstrap, the promotions with the `stages` CLI, the service with the CI client), in the order
 * written, run by bash in a copy of the project with a home folder of its own, on the embedded
 * defaults. The only edit is the passphrase placeholder, which gets a value. So the README cannot
 * drift from the code: a renamed flag, a missing step or a runner that ignores the user's
 * `pulumi login` fails here.
 */
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { parseLedger } from "../../src/program/stage/files";
import { defaultCacheDir } from "../../src/toolchain/resolve";
import { repoRoot, testToolchain } from "../support/engine";
import { plant } from "../support/planted";

/** The walked blocks of a README, in order. */
export function walkedBlocks(readme: string): string[] {
    return [...readme.matchAll(/<!-- walk -->\n```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

const PASSPHRASE_LINE = /^export PULUMI_CONFIG_PASSPHRASE=\.\.\.(?=\s)/m;

describe("README walk: bootstrap, promotions and the service as written", function () {
    this.timeout(20 * 60_000);
    let dir: string;

    before(async function () {
        // The walk finds the engine in the shared cache, as a user's second command would.
        await testToolchain();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-walk-"));
    });

    after(function () {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("finds the walked blocks: bootstrap, promotion and service", function () {
        const blocks = walkedBlocks(fs.readFileSync(path.join(repoRoot, "README.md"), "utf8"));
        assert.equal(blocks.length, 3, "three walked blocks");
        assert.match(blocks[0], /pulumi login/);
        assert.match(blocks[0], PASSPHRASE_LINE);
        assert.match(blocks[1], /npx stages promote/);
        assert.match(blocks[2], /stages serve/);
    });

    it("runs every walked block in a fresh copy and home, and the promotions land in the ops repo", async function () {
        const home = path.join(dir, "home");
        const project = path.join(dir, "project");
        fs.mkdirSync(home);
        // The project as a clone has it: tracked and new files, no build output, no local state.
        const files = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot, encoding: "utf8" });
        assert.equal(files.status, 0, files.stderr);
        for (const f of files.stdout.split("\0").filter(Boolean)) {
            if (!fs.existsSync(path.join(repoRoot, f))) continue; // deleted in the work tree
            fs.mkdirSync(path.dirname(path.join(project, f)), { recursive: true });
            fs.copyFileSync(path.join(repoRoot, f), path.join(project, f));
        }
        // Dependencies are the checkout's (installed by the README command that runs this test). The
        // copy's `npm run toolchain` must find them up to date: an `npm ci` through this link would
        // empty the checkout's node_modules, so a stale install fails here instead, saying why.
        const lock = createHash("sha256").update(fs.readFileSync(path.join(repoRoot, "package-lock.json"))).digest("hex");
        const stamp = path.join(repoRoot, "node_modules", ".gitops-stages-lock");
        assert.equal(fs.existsSync(stamp) ? fs.readFileSync(stamp, "utf8") : "(none)", lock, "node_modules is older than package-lock.json: run the README's test command (it installs first), not this file alone");
        fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(project, "node_modules"));
        const git = (...args: string[]) => spawnSync("git", args, { cwd: project, encoding: "utf8", env: { ...process.env, HOME: home, GIT_AUTHOR_NAME: "walk", GIT_AUTHOR_EMAIL: "walk@example.invalid", GIT_COMMITTER_NAME: "walk", GIT_COMMITTER_EMAIL: "walk@example.invalid" } });
        assert.equal(git("init", "-q", "-b", "main").status, 0);
        assert.equal(git("add", "-A").status, 0);
        assert.equal(git("commit", "-q", "-m", "clone").status, 0);

        const blocks = walkedBlocks(fs.readFileSync(path.join(project, "README.md"), "utf8"));
        const passphrase = plant(randomBytes(18).toString("base64url"));
        assert.match(blocks[0], PASSPHRASE_LINE);
        blocks[0] = blocks[0].replace(PASSPHRASE_LINE, `export PULUMI_CONFIG_PASSPHRASE=${passphrase}`);
        // No `set -x`: the trace would print the passphrase and the CI token. The trap is the
        // harness's, not the README's: whatever fails, no background service outlives the walk.
        const script = ["set -euo pipefail", "trap 'for p in $(jobs -p); do kill $p 2>/dev/null; wait $p 2>/dev/null; done' EXIT", ...blocks].join("\n");
        // The service block listens on the README's port 8080: say so at once if something else holds it.
        const taken = await new Promise<boolean>((resolve) => {
            const probe = net.createServer().once("error", () => resolve(true)).once("listening", () => probe.close(() => resolve(false)));
            probe.listen(8080, "127.0.0.1");
        });
        assert.equal(taken, false, "port 8080 on 127.0.0.1 is in use; the README's service block needs it");

        // A user's shell: their own home, no other Pulumi settings, no runner settings, no npm lifecycle
        // variables; the toolchain cache of this machine (so nothing is rebuilt). PULUMI_SKIP_CONFIRMATIONS
        // answers `pulumi up`'s question, which a person answers at the terminal.
        const env: NodeJS.ProcessEnv = {};
        for (const [k, v] of Object.entries(process.env)) {
            if (/^(npm_|PULUMI_|GITOPS_STAGES_|KUBECONFIG$|INIT_CWD$)/.test(k)) continue;
            env[k] = v;
        }
        // PULUMI_HOME is the one setting a user's shell would not have: the Pulumi CLI finds its
        // home in the user database, not in $HOME, so without it the walk would log this machine's
        // account in and register plugins there.
        Object.assign(env, { HOME: home, PULUMI_HOME: path.join(home, ".pulumi"), GITOPS_STAGES_CACHE: defaultCacheDir(process.env), PULUMI_SKIP_CONFIRMATIONS: "true", CI: "" });
        const logFile = path.join(dir, "walk.log");
        const code = await new Promise<number | null>((resolve) => {
            const out = fs.openSync(logFile, "w");
            // Its own process group, so a timeout ends everything the walk started.
            const p = spawn("bash", ["-c", script], { cwd: project, env, stdio: ["ignore", out, out], detached: true });
            const timer = setTimeout(() => process.kill(-p.pid!, "SIGKILL"), 18 * 60_000);
            p.on("exit", (c) => {
                clearTimeout(timer);
                fs.closeSync(out);
                resolve(c);
            });
        });
        // The CI tokens the walk used are secrets of this run: planted for the leak scan, and cut
        // from the output before any of it is shown.
        const tokens = spawnSync((await testToolchain()).pulumi, ["stack", "output", "runnerTokens", "--stack", "platform", "--show-secrets", "--json", "--non-interactive"], {
            cwd: project,
            env: { ...env, PATH: `${(await testToolchain()).binDir}:${env.PATH}`, PULUMI_CONFIG_PASSPHRASE: passphrase },
            encoding: "utf8",
        });
        const secrets = [passphrase, ...(tokens.status === 0 ? Object.values(JSON.parse(tokens.stdout) as Record<string, string>).map((t) => plant(t)) : [])];
        const raw = fs.readFileSync(logFile, "utf8");
        const log = secrets.reduce((text, secret) => text.split(secret).join("[secret]"), raw);
        assert.equal(code, 0, `the README's commands failed (exit ${code}); the end of their output:\n${log.split("\n").slice(-40).join("\n")}`);

        // The runner used the backend the user logged in to, not a backend of its own.
        const state = path.join(home, ".gitops-stages-state");
        assert.match(log, new RegExp(`state backend:  file://${escape(state)} \\(from the Pulumi CLI's current login in ${escape(path.join(home, ".pulumi", "credentials.json"))}\\)`));
        assert.match(log, /platform stack: organization\/gitops-stages\/platform/);
        assert.equal(fs.existsSync(path.join(project, ".gitops-stages", "runner", "state")), false, "no embedded default backend was created");
        const stacks = fs.readdirSync(path.join(state, ".pulumi", "stacks", "gitops-stages")).filter((f) => f.endsWith(".json"));
        for (const s of ["platform", "itg", "tst", "perf"]) assert.ok(stacks.includes(`${s}.json`), `stack ${s} in the user's backend (has ${stacks.join(", ")})`);

        // What the ops repo holds is what the walk asked for.
        const gitDir = path.join(project, ".gitops-stages", "git");
        const ops = fs.readdirSync(gitDir).find((d) => d.endsWith("-ops.git"));
        assert.ok(ops, `an ops repository in ${gitDir}`);
        const show = (what: string) => {
            const r = spawnSync("git", ["--git-dir", path.join(gitDir, ops), "show", what], { encoding: "utf8" });
            assert.equal(r.status, 0, r.stderr);
            return r.stdout;
        };
        const version = (stage: string) => parseLedger(show(`main:environments/${stage}/releases.json`)).web?.version;
        assert.equal(version("itg"), "1.6.0", "the CI client's promotion through the service is what itg runs");
        assert.equal(version("tst"), "1.4.0");
        assert.equal(version("perf"), "1.4.0");
        const subjects = spawnSync("git", ["--git-dir", path.join(gitDir, ops), "log", "--format=%s%n%b", "main"], { encoding: "utf8" }).stdout;
        assert.match(subjects, /^Roll back web 1\.4\.0 to itg /m, "the rollback is a commit of its own");
        assert.match(subjects, /Requester: ci-itg/, "the service's commit names the token's principal");
        for (const secret of secrets) assert.equal(raw.includes(secret), false, "a passphrase or token showed in the commands' output");
    });
});

function escape(s: string): string {
    return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
