#!/usr/bin/env node
// The README's commands start here, on a machine that may have nothing installed but Node.js:
// install npm dependencies when the lockfile changed, compile, make sure the Pulumi toolchain
// exists (cached outside the repository), then run the requested job. Plain JavaScript with no
// dependencies, because it runs before `npm ci`.
"use strict";

const { spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const started = Date.now();

function say(line) {
    const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[${s}s] ${line}\n`);
}

function step(title, file, args, options = {}) {
    const t0 = Date.now();
    say(`${title}...`);
    const r = spawnSync(file, args, { cwd: root, stdio: "inherit", env: options.env ?? process.env });
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (r.error) {
        say(`${title}: could not start ${file}: ${r.error.message}`);
        process.exit(1);
    }
    if (r.status !== 0) {
        say(`${title}: failed (exit ${r.status}) after ${secs}s`);
        process.exit(r.status || 1);
    }
    say(`${title}: done in ${secs}s`);
}

function npmDependencies() {
    const lock = fs.readFileSync(path.join(root, "package-lock.json"));
    const digest = crypto.createHash("sha256").update(lock).digest("hex");
    const stamp = path.join(root, "node_modules", ".gitops-stages-lock");
    if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === digest) {
        say("npm dependencies: up to date");
        return;
    }
    // The kubernetes SDK's install script only downloads a plugin binary, which the toolchain
    // builds instead, so install scripts stay off (npm 11's default too).
    step("npm dependencies (npm ci)", "npm", ["ci", "--no-audit", "--no-fund", "--ignore-scripts"]);
    fs.writeFileSync(stamp, digest);
}

function bin(name) {
    return path.join(root, "node_modules", ".bin", name);
}

const job = process.argv[2];
const rest = process.argv.slice(3);
const jobs = ["test", "demo", "toolchain", "bench", "reliability"];
if (!jobs.includes(job)) {
    process.stderr.write(`usage: node scripts/bootstrap.js <${jobs.join("|")}> [args]\n`);
    process.exit(2);
}

/**
 * Debian packages the jobs run: git (repositories), openssl (the cluster tier's certificates),
 * python3, make and g++ (node-gyp builds the SQLite driver); for tests also PostgreSQL (the
 * service's replica mode), Chromium (the status page) and Redis (the cluster tier's Argo CD).
 * Installed with apt-get when missing and we may; otherwise the job stops and names them.
 */
function systemPackages(job) {
    const onPath = (cmd) => (process.env.PATH || "").split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
    const wanted = [
        ["git", () => onPath("git")],
        ["openssl", () => onPath("openssl")],
        ["python3", () => onPath("python3")],
        ["make", () => onPath("make")],
        ["g++", () => onPath("g++")],
    ];
    // The scale-out suite and benchmark make test hosts (network namespaces) and run PostgreSQL on them.
    const replicaHosts = job === "test" || job === "reliability" || (job === "bench" && rest.some((a) => a.startsWith("--only=") && a.includes("replicas")));
    if (replicaHosts) {
        wanted.push(["iproute2", () => onPath("ip")]);
        wanted.push(["util-linux", () => onPath("unshare")]);
    }
    if (replicaHosts && !(job === "test" || job === "reliability")) wanted.push(["postgresql", () => fs.existsSync("/usr/lib/postgresql") && fs.readdirSync("/usr/lib/postgresql").some((v) => fs.existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))]);
    if (job === "test" || job === "reliability") {
        wanted.push(["postgresql", () => fs.existsSync("/usr/lib/postgresql") && fs.readdirSync("/usr/lib/postgresql").some((v) => fs.existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))]);
        wanted.push(["chromium", () => fs.existsSync("/usr/bin/chromium")]);
        // Argo CD's repo server and application controller keep their caches in Redis.
        wanted.push(["redis-server", () => onPath("redis-server")]);
    }
    const missing = wanted.filter(([, present]) => !present()).map(([pkg]) => pkg);
    if (missing.length === 0) {
        say(`system packages: ${wanted.map(([pkg]) => pkg).join(", ")} present`);
        return;
    }
    if (process.getuid && process.getuid() === 0 && onPath("apt-get")) {
        step("system packages: apt-get update", "apt-get", ["update"]);
        step(`system packages: apt-get install ${missing.join(" ")}`, "apt-get", ["install", "-y", "--no-install-recommends", ...missing], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
        return;
    }
    say(`missing system packages: ${missing.join(", ")}; install them (e.g. sudo apt-get install ${missing.join(" ")}) and run again`);
    process.exit(1);
}

function cacheRoot() {
    if (process.env.GITOPS_STAGES_CACHE) return path.resolve(process.env.GITOPS_STAGES_CACHE);
    if (process.env.XDG_CACHE_HOME) return path.join(process.env.XDG_CACHE_HOME, "gitops-stages");
    return path.join(require("node:os").homedir(), ".cache", "gitops-stages");
}

/**
 * better-sqlite3's native part. Its install script would download a prebuilt binary (unreachable
 * here) before building, so scripts stay off and we build it with node-gyp against this Node's own
 * headers, once per driver version and Node ABI, cached outside the repository.
 */
function nativeModules() {
    const pkgDir = path.join(root, "node_modules", "better-sqlite3");
    const target = path.join(pkgDir, "build", "Release", "better_sqlite3.node");
    if (fs.existsSync(target)) {
        say("native module better-sqlite3: present");
        return;
    }
    const version = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
    const key = `better-sqlite3-${version}-abi${process.versions.modules}-${process.platform}-${process.arch}`;
    const cached = path.join(cacheRoot(), "native", key, "better_sqlite3.node");
    if (!fs.existsSync(cached)) {
        const nodedir = path.resolve(process.execPath, "..", "..");
        if (!fs.existsSync(path.join(nodedir, "include", "node", "node.h"))) {
            say(`native module better-sqlite3: this Node's headers are missing (${nodedir}/include/node); install Node.js with its headers`);
            process.exit(1);
        }
        step("native module better-sqlite3 (node-gyp, this Node's headers)", process.execPath, [path.join(root, "node_modules", "node-gyp", "bin", "node-gyp.js"), "rebuild", "--release", `--directory=${pkgDir}`, `--nodedir=${nodedir}`]);
        fs.mkdirSync(path.dirname(cached), { recursive: true });
        const partial = `${cached}.partial-${process.pid}`;
        fs.copyFileSync(target, partial);
        fs.renameSync(partial, cached);
        return;
    }
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(cached, target);
    say(`native module better-sqlite3: from cache ${cached}`);
}

systemPackages(job);
npmDependencies();
nativeModules();
// Compiling also type-checks; a type error stops every job here.
step("compile and typecheck (tsc)", bin("tsc"), ["-p", "tsconfig.json"]);
// The demo, the benchmarks and user commands need only the engine; the test suites also start the
// cluster tier's servers, so only they wait for those builds.
const toolchainArgs = job === "toolchain" ? rest : job === "test" || job === "reliability" ? ["--set", "tests"] : [];
step("pulumi toolchain", process.execPath, [path.join(root, "dist/src/cli/main.js"), "toolchain", ...toolchainArgs]);

switch (job) {
    case "toolchain":
        break;
    case "test": {
        step("lint (eslint)", bin("eslint"), ["."]);
        const specs = rest.length > 0 ? rest : ["dist/test/**/*.test.js"];
        step("tests (mocha)", bin("mocha"), ["--reporter", path.join(root, "test/support/reporter.js"), ...specs]);
        break;
    }
    case "reliability":
        // The reliability suites at full size (npm test runs them at CI size).
        step("reliability suites (mocha, full size)", bin("mocha"), ["--reporter", path.join(root, "test/support/reporter.js"), "dist/test/reliability/*.test.js", "dist/test/cluster/argocd.test.js"], {
            env: { ...process.env, FUZZ_RUNS: process.env.FUZZ_RUNS || "10000", CRASH_TRIALS: process.env.CRASH_TRIALS || "100", ARGOCD_SCENARIOS: "full", PARITY: "full", SCALE: "full" },
        });
        break;
    case "demo":
        step("demo", process.execPath, [path.join(root, "dist/src/demo/main.js"), ...rest]);
        break;
    case "bench":
        step("benchmarks", process.execPath, [path.join(root, "dist/bench/main.js"), ...rest]);
        break;
}
say(`${job}: finished`);
