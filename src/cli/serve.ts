/**
 * `stages serve`: runs the service until SIGTERM or SIGINT, then shuts down gracefully (running
 * updates cancelled cleanly and requeued, no stack left locked). Logs are JSON lines on stdout.
 */
import * as os from "node:os";
import { parseArgs } from "node:util";

import { dataDirFrom, parseOpsUrl } from "../runner/adapters/environment";
import { resolveBackend } from "../runner/adapters/backend";
import { createRunner, openStore, readSettings } from "../runner/index";
import { serviceLog } from "../service/log";
import { checkBackendReachable, postgresBackend } from "../runner/adapters/backend-locks";
import { RunnerError } from "../runner/errors";
import { Service, pruneBundles } from "../service/server";

/** Runs `stages serve`; resolves with the exit code once stopped. */
export async function serveVerb(argv: string[], projectRoot: string): Promise<number> {
    const { values } = parseArgs({
        args: argv,
        options: {
            port: { type: "string", default: "8080" },
            host: { type: "string", default: "127.0.0.1" },
            database: { type: "string" },
            replica: { type: "string" },
            concurrency: { type: "string" },
            "rate-per-minute": { type: "string" },
            "watch-seconds": { type: "string" },
        },
        strict: true,
        allowPositionals: false,
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
        process.stderr.write(`stages serve: --port: must be a port number, got ${JSON.stringify(values.port)}\n`);
        return 2;
    }
    // A limit that is not a whole number would leave a service that runs nothing while /readyz says ready.
    for (const [flag, min, max] of [["concurrency", 1, 64], ["rate-per-minute", 1, 1_000_000], ["watch-seconds", 0, 86_400]] as const) {
        const v = values[flag];
        if (v !== undefined && !(/^\d+$/.test(v) && Number(v) >= min && Number(v) <= max)) {
            process.stderr.write(`stages serve: --${flag}: must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}\n`);
            return 2;
        }
    }
    // `cli:` names the CLI's own requests in the log (failed, never requeued, when their process ends).
    if (values.replica !== undefined && (values.replica.startsWith("cli:") || !/^\S{1,200}$/.test(values.replica))) {
        process.stderr.write(`stages serve: --replica: must be 1 to 200 characters without spaces, not starting with "cli:", got ${JSON.stringify(values.replica)}\n`);
        return 2;
    }
    const log = serviceLog();
    // One database for the request log and the runner's records (approvals, answers): the same
    // one the CLIs of this deployment use ($GITOPS_STAGES_DATABASE), so they see each other's.
    const database = values.database ?? process.env.GITOPS_STAGES_DATABASE;
    // Refused when the data folder is bound to another log (request-log.ts): the log's running
    // request is each stack's one lock, so the folder's processes must share it.
    // What can be checked without the database is checked first: a bad setting opens (and binds) nothing.
    const dataDir = dataDirFrom(projectRoot);
    readSettings(dataDir);
    parseOpsUrl(process.env.GITOPS_STAGES_OPS_URL);
    postgresBackend(resolveBackend(process.env, dataDir, projectRoot).url);
    const store = await openStore(database, dataDir, { setting: values.database !== undefined ? "--database" : "$GITOPS_STAGES_DATABASE" });
    const assembled = await createRunner({ projectRoot, store, log: (line) => log({ level: "info", msg: line }) });
    // A replica that cannot reach its state backend says so at once, naming the setting, rather
    // than answering every request with the engine's failure.
    const { url: backendUrl, source } = assembled.environment.backend;
    try {
        await checkBackendReachable(backendUrl, source === "PULUMI_BACKEND_URL" ? "$PULUMI_BACKEND_URL" : source);
    } catch (e) {
        await store.close();
        throw new RunnerError("unavailable", e instanceof Error ? e.message : String(e));
    }
    pruneBundles(assembled.environment.dataDir);
    const service = new Service({
        assembled,
        store,
        // Stable across restarts, so a restarted replica takes back its own interrupted requests at
        // once; the port keeps two services of one host apart (each would requeue the other's
        // running requests at its start). On a port chosen by the system, the process instead (its
        // requests come back to the queue when their lease runs out).
        replicaId: values.replica ?? `serve:${os.hostname()}:${port === 0 ? `pid-${process.pid}` : port}`,
        log,
        limits: {
            ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
            ...(values["rate-per-minute"] ? { ratePerMinute: Number(values["rate-per-minute"]) } : {}),
            ...(values["watch-seconds"] !== undefined ? { watchIntervalMs: Number(values["watch-seconds"]) * 1000 } : {}),
        },
    });
    const { url } = await service.start(port, values.host);
    log({ level: "info", msg: "listening", url, database: database && /^postgres(ql)?:/.test(database) ? "postgres" : "sqlite" });
    return new Promise<number>((resolve) => {
        let stopping = false;
        const stop = (sig: NodeJS.Signals) => {
            if (stopping) return;
            stopping = true;
            log({ level: "info", msg: `${sig}: shutting down; running updates are cancelled cleanly and requeued` });
            service.stop().then(
                () => {
                    log({ level: "info", msg: "stopped" });
                    resolve(0);
                },
                (e) => {
                    log({ level: "error", msg: "shutdown failed", error: e instanceof Error ? e.message : String(e) });
                    resolve(1);
                },
            );
        };
        process.on("SIGTERM", stop);
        process.on("SIGINT", stop);
    });
}
