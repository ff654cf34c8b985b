/**
 * A git host for tests that serves the bare repositories of a folder over git's smart HTTP, as a
 * company git server does: `git http-backend` (git's own CGI program) behind Basic
 * authentication. Reads and pushes need a user of the password file; the repositories' own hooks
 * (the ops repo's protection) run as with any push. Run as a program on a test host:
 * `node git-http.js <folder> <address> <port> <users.json>` (users.json: {"name": "password"});
 * it prints `listening <url>` once it serves.
 *
 * Hand-written: git ships the protocol (http-backend); what remains is a CGI gateway, which no
 * maintained Node library provides.
 */
import { spawn } from "node:child_process";
import { timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";

function same(a: string, b: string): boolean {
    const x = Buffer.from(a);
    const y = Buffer.from(b);
    return x.length === y.length && timingSafeEqual(x, y);
}

/** Basic credentials that match `users` (name -> password): the user's name, else undefined. */
export function basicUser(authorization: string | undefined, users: Readonly<Record<string, string>>): string | undefined {
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization ?? "");
    if (!m) return undefined;
    const decoded = Buffer.from(m[1], "base64").toString("utf8");
    const at = decoded.indexOf(":");
    if (at < 0) return undefined;
    const name = decoded.slice(0, at);
    const known = users[name];
    return known !== undefined && same(known, decoded.slice(at + 1)) ? name : undefined;
}

/** Options of {@link gitHttpHandler}. */
export interface GitHttpOptions {
    /** The users that may read (and, unless read-only, push): name -> password, asked at each request. */
    readonly users: () => Readonly<Record<string, string>>;
    /** Refuses pushes (403). */
    readonly readOnly?: boolean;
    /** Sees each request: its path and whether its credentials were right. */
    readonly onRequest?: (r: { path: string; authorized: boolean }) => void;
}

/** The request listener of a smart HTTP git host serving the bare repositories under `root`. */
export function gitHttpHandler(root: string, opts: GitHttpOptions): http.RequestListener {
    return (req, res) => {
        const url = new URL(req.url ?? "/", "http://git");
        const who = basicUser(req.headers.authorization, opts.users());
        opts.onRequest?.({ path: url.pathname, authorized: who !== undefined });
        if (!who) {
            res.writeHead(401, { "www-authenticate": 'Basic realm="git"' }).end("authentication required\n");
            return;
        }
        if (opts.readOnly && (url.pathname.endsWith("/git-receive-pack") || url.searchParams.get("service") === "git-receive-pack")) {
            res.writeHead(403).end("read-only\n");
            return;
        }
        const cgi = spawn("git", ["http-backend"], {
            env: {
                PATH: process.env.PATH,
                GIT_PROJECT_ROOT: root,
                GIT_HTTP_EXPORT_ALL: "1",
                REQUEST_METHOD: req.method ?? "GET",
                PATH_INFO: decodeURIComponent(url.pathname),
                QUERY_STRING: url.search.slice(1),
                CONTENT_TYPE: req.headers["content-type"] ?? "",
                ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
                ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
                ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
                // Set, it lets http-backend accept pushes (receive-pack); the repository's hooks still judge them.
                REMOTE_USER: who,
                REMOTE_ADDR: req.socket.remoteAddress ?? "",
            },
            stdio: ["pipe", "pipe", "ignore"],
        });
        req.pipe(cgi.stdin);
        cgi.stdin.on("error", () => undefined);
        // A CGI answer: header lines, a blank line, then the body.
        let head = Buffer.alloc(0);
        let headerDone = false;
        cgi.stdout.on("data", (chunk: Buffer) => {
            if (headerDone) {
                res.write(chunk);
                return;
            }
            head = Buffer.concat([head, chunk]);
            const end = head.indexOf("\r\n\r\n");
            if (end < 0) return;
            headerDone = true;
            let status = 200;
            const headers: Record<string, string> = {};
            for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
                const colon = line.indexOf(":");
                if (colon < 0) continue;
                const k = line.slice(0, colon).trim();
                const v = line.slice(colon + 1).trim();
                if (k.toLowerCase() === "status") status = Number(v.split(" ")[0]);
                else headers[k] = v;
            }
            res.writeHead(status, headers);
            res.write(head.subarray(end + 4));
        });
        cgi.on("close", () => {
            if (!headerDone) res.writeHead(500).end("git http-backend gave no answer\n");
            else res.end();
        });
    };
}

/** Serves `root` on `host:port` for `users`, pushes included; resolves with the server once it listens. */
export function serveGit(root: string, host: string, port: number, users: Record<string, string>): Promise<http.Server> {
    const server = http.createServer(gitHttpHandler(root, { users: () => users }));
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => resolve(server));
    });
}

if (require.main === module) {
    const [root, host, port, usersFile] = process.argv.slice(2);
    const users = JSON.parse(fs.readFileSync(usersFile, "utf8")) as Record<string, string>;
    serveGit(root, host, Number(port), users).then(
        (s) => {
            const a = s.address() as { port: number };
            process.stdout.write(`listening http://${host}:${a.port}\n`);
        },
        (e: unknown) => {
            process.stderr.write(`git host: ${e instanceof Error ? e.message : String(e)}\n`);
            process.exit(1);
        },
    );
}
