/** A runner data folder with a bootstrapped platform, and the service on loopback, for service tests. */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import inject from "light-my-request";

import { pushEnv } from "../../src/git/engine";
import { AutomationEngine } from "../../src/runner/adapters/automation";
import { AssembledRunner, createRunner } from "../../src/runner/index";
import { selfContainedEnv } from "../../src/runner/adapters/environment";
import { hashToken, VERBS } from "../../src/runner/rights";
import type { Service } from "../../src/service/server";
import { testToolchain, repoRoot } from "./engine";
import { plant } from "./planted";

/** A bootstrapped platform in a temporary folder. */
export interface Pipeline {
    readonly dir: string;
    readonly dataDir: string;
    readonly ops: string;
    readonly env: NodeJS.ProcessEnv;
    /** The platform's generated CI tokens, stage -> token. */
    readonly ciTokens: Record<string, string>;
    /** A configured operator token with every right on every stage, owner of every stage. */
    readonly operatorToken: string;
    /**
     * The environment that makes `git push` carry the runner's push token, which the ops repo's
     * hook requires on main (a third party holding it stands in for a merged pull request).
     */
    readonly opsPushEnv: NodeJS.ProcessEnv;
    git(...args: string[]): string;
    /** Runs the Pulumi CLI in the runner's workspace, with its environment. */
    pulumi(...args: string[]): string;
    runner(now?: () => Date): Promise<AssembledRunner>;
    dispose(): void;
}

/** Bootstraps the platform (local git host, render mode) with stages itg, tst, perf, prod. */
export async function bootstrapPipeline(
    prefix: string,
    stages: unknown[] = [{ name: "itg" }, { name: "tst" }, { name: "perf" }, { name: "prod", owners: ["prod-owners"], requireApproval: true }],
    /** More configured tokens: name, token, rights. */
    tokens: { name: string; token: string; rights: unknown[] }[] = [],
    /** CLI users of runner.json. */
    users: Record<string, unknown> = {},
    /** Platform settings replacing the local defaults (the live GitHub test's git host). */
    platformConfig: Record<string, unknown> = {},
    /** More environment for the runner (GITHUB_TOKEN). */
    extraEnv: NodeJS.ProcessEnv = {},
): Promise<Pipeline> {
    await testToolchain();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    const dataDir = path.join(dir, "data");
    fs.mkdirSync(dataDir, { recursive: true });
    const operatorToken = plant(`op-${randomBytes(16).toString("hex")}`);
    fs.writeFileSync(
        path.join(dataDir, "runner.json"),
        JSON.stringify({
            users,
            tokens: [{ name: "operator", sha256: hashToken(operatorToken), rights: [{ stages: ["*"], verbs: VERBS }], teams: ["prod-owners"] }, ...tokens.map((t) => ({ name: t.name, sha256: hashToken(t.token), rights: t.rights }))],
            lockWaitSeconds: 300,
        }),
    );
    const env = { ...selfContainedEnv(dataDir), ...extraEnv };
    const assembled = await createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined });
    const engine = new AutomationEngine(assembled.environment, { lockWaitMs: 60_000, log: () => undefined });
    const up = await engine.update("platform", async () => ({ gitHost: { kind: "local", path: path.join(dir, "git") }, cluster: { renderDir: path.join(dir, "rendered") }, stages, ...platformConfig }), { message: "bootstrap" });
    assert.equal(up?.result, "succeeded");
    const e = assembled.environment;
    const ciTokens = JSON.parse(execFileSync(e.toolchain.pulumi, ["stack", "output", "runnerTokens", "--show-secrets", "--json", "--stack", "platform"], { cwd: e.workDir, env: { ...env, ...e.envVars }, encoding: "utf8" })) as Record<string, string>;
    for (const t of Object.values(ciTokens)) plant(t);
    // Null on the GitHub host, whose protection the runner passes by reporting the validate check.
    const opsPushToken = (JSON.parse(execFileSync(e.toolchain.pulumi, ["stack", "output", "opsPushToken", "--show-secrets", "--json", "--stack", "platform"], { cwd: e.workDir, env: { ...env, ...e.envVars }, encoding: "utf8" })) as string | null) ?? "";
    if (opsPushToken) plant(opsPushToken);
    for (const t of tokens) plant(t.token);
    const gitHostPath = (platformConfig.gitHost as { path?: string } | undefined)?.path ?? path.join(dir, "git");
    const ops = path.join(gitHostPath, "app-ops.git");
    return {
        dir,
        dataDir,
        ops,
        env,
        ciTokens,
        operatorToken,
        opsPushEnv: { ...process.env, ...pushEnv({ token: opsPushToken }) },
        git: (...args: string[]) => execFileSync("git", ["--git-dir", ops, ...args], { encoding: "utf8" }).trim(),
        pulumi: (...args: string[]) => execFileSync(e.toolchain.pulumi, args, { cwd: e.workDir, env: { ...env, ...e.envVars }, encoding: "utf8" }),
        runner: (now?: () => Date) => createRunner({ projectRoot: repoRoot, dataDir, env, log: () => undefined, ...(now ? { now } : {}) }),
        // Engine processes may still be exiting; retry the removal briefly.
        dispose: () => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }),
    };
}

/** A request's headers and body as both clients send them. */
function outgoing(token: string | undefined, body: unknown, headers: Record<string, string>): { headers: Record<string, string>; payload?: string } {
    return {
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
        ...(body !== undefined ? { payload: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    };
}

/** An answer's body as JSON, or `{text}` when it is not JSON (an event stream, a page). */
function incoming(text: string): Record<string, unknown> {
    try {
        return JSON.parse(text) as Record<string, unknown>;
    } catch {
        return { text };
    }
}

/** A client for the service's API. */
export function api(base: string, token?: string) {
    return async (method: string, route: string, body?: unknown, headers: Record<string, string> = {}) => {
        const o = outgoing(token, body, headers);
        const res = await fetch(base + route, { method, headers: o.headers, ...(o.payload !== undefined ? { body: o.payload } : {}) });
        return { status: res.status, body: incoming(await res.text()), headers: res.headers };
    };
}

/**
 * The same client driving the service's request listener in process, without a socket (the way
 * `inject` does in HTTP frameworks): every route, check and log line runs as over the network.
 */
export function injectApi(service: Service, token?: string): ReturnType<typeof api> {
    return async (method: string, route: string, body?: unknown, headers: Record<string, string> = {}) => {
        const o = outgoing(token, body, headers);
        const res = await inject(service.handler, { method: method as "GET" | "POST", url: route, headers: o.headers, ...(o.payload !== undefined ? { payload: o.payload } : {}) });
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(", ") : String(v));
        return { status: res.statusCode, body: incoming(res.payload), headers: out };
    };
}

/** Polls a request until it is final. */
export async function settle(call: ReturnType<typeof api>, id: string, timeoutMs = 300_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const r = await call("GET", `/v1/requests/${id}`);
        if (["done", "failed", "superseded"].includes(String(r.body.state))) return r.body;
        if (Date.now() > deadline) throw new Error(`request ${id} still ${String(r.body.state)} after ${timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 200));
    }
}
