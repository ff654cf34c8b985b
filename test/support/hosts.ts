/**
 * Test hosts: one network namespace per host (`ip netns`), each with its own loopback and one
 * veth link to a bridge that lives in a namespace of its own (the "switch"); the test process
 * joins the switch too (as the CI machine calling the service), with no listener of its own.
 * A host's processes run in its namespace, with a hostname of their own (a UTS namespace) and,
 * where asked, folders hidden from them (a mount namespace with an empty tmpfs on top), so that
 * what another host keeps on this machine's disk cannot be read by path. Cutting a host's link
 * (its veth down) partitions it from every other host.
 *
 * Hand-written on iproute2 and util-linux: no Node library creates namespaces.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

/** A host of the test network. */
export interface Host {
    readonly name: string;
    /** Its address on the switch. */
    readonly ip: string;
    /** Its network namespace. */
    readonly netns: string;
}

/** The test network. */
export interface Hosts {
    readonly hosts: Record<string, Host>;
    /** The test process's own address on the switch. */
    readonly ciIp: string;
    /**
     * Starts a program on `host`: in its network namespace, with hostname `host`, with `hide`
     * folders covered by an empty tmpfs. Output goes to `onOutput`.
     */
    spawn(host: string, cmd: string, args: readonly string[], opts?: { env?: NodeJS.ProcessEnv; hide?: readonly string[]; onOutput?: (text: string) => void; cwd?: string }): ChildProcess;
    /** Takes the host's link down (partition) or up again. */
    link(host: string, up: boolean): void;
    /** Removes every namespace and link. */
    dispose(): void;
}

function ip(...args: string[]): void {
    execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** What the machine must allow; a test that cannot have it fails saying so (never a silent skip). */
export function checkHostsSupport(): void {
    if (process.getuid?.() !== 0) throw new Error("the scale-out tests make network namespaces (ip netns) and need root; run npm test as root");
    for (const [cmd, pkg] of [["ip", "iproute2"], ["unshare", "util-linux"], ["git", "git"]] as const) {
        try {
            execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
        } catch {
            throw new Error(`${cmd} is not installed (Debian package ${pkg}): npm test installs it; run it, or apt-get install ${pkg}`);
        }
    }
}

/** Makes the hosts `names` on a fresh switch (addresses 10.231.<n>.<10+i>). */
export function createHosts(names: readonly string[]): Hosts {
    checkHostsSupport();
    const tag = randomBytes(2).toString("hex");
    const subnet = `10.231.${parseInt(tag, 16) % 250}`;
    const sw = `gs${tag}-sw`;
    const made: string[] = [];
    const ciLink = `gs${tag}ci`;
    const hosts: Record<string, Host> = {};
    const dispose = () => {
        for (const ns of made.reverse()) {
            try {
                ip("netns", "del", ns);
            } catch {
                // already gone
            }
        }
        try {
            ip("link", "del", ciLink);
        } catch {
            // went with the switch
        }
    };
    try {
        try {
            ip("netns", "add", sw);
        } catch (e) {
            throw new Error(`this machine refuses network namespaces (ip netns add failed: ${(e as { stderr?: Buffer }).stderr?.toString().trim() ?? String(e)}); the scale-out tests need them`);
        }
        made.push(sw);
        ip("-n", sw, "link", "add", "br0", "type", "bridge");
        ip("-n", sw, "link", "set", "br0", "up");
        ip("-n", sw, "link", "set", "lo", "up");
        names.forEach((name, i) => {
            const ns = `gs${tag}-${name}`;
            ip("netns", "add", ns);
            made.push(ns);
            ip("-n", ns, "link", "set", "lo", "up");
            ip("link", "add", `gs${tag}h${i}`, "type", "veth", "peer", "name", `gs${tag}p${i}`);
            ip("link", "set", `gs${tag}h${i}`, "netns", ns);
            ip("-n", ns, "link", "set", `gs${tag}h${i}`, "name", "eth0");
            ip("-n", ns, "addr", "add", `${subnet}.${10 + i}/24`, "dev", "eth0");
            ip("-n", ns, "link", "set", "eth0", "up");
            ip("link", "set", `gs${tag}p${i}`, "netns", sw);
            ip("-n", sw, "link", "set", `gs${tag}p${i}`, "master", "br0");
            ip("-n", sw, "link", "set", `gs${tag}p${i}`, "up");
            hosts[name] = { name, ip: `${subnet}.${10 + i}`, netns: ns };
        });
        ip("link", "add", ciLink, "type", "veth", "peer", "name", `gs${tag}cp`);
        ip("link", "set", `gs${tag}cp`, "netns", sw);
        ip("-n", sw, "link", "set", `gs${tag}cp`, "master", "br0");
        ip("-n", sw, "link", "set", `gs${tag}cp`, "up");
        ip("addr", "add", `${subnet}.2/24`, "dev", ciLink);
        ip("link", "set", ciLink, "up");
    } catch (e) {
        dispose();
        throw e;
    }
    const index = (host: string) => {
        const i = names.indexOf(host);
        if (i < 0) throw new Error(`no host ${host}`);
        return i;
    };
    return {
        hosts,
        ciIp: `${subnet}.2`,
        spawn(host, cmd, args, opts = {}) {
            const h = hosts[host];
            if (!h) throw new Error(`no host ${host}`);
            // The hostname and the hidden folders are set inside new UTS and mount namespaces, then
            // the program replaces the shell; "$@" keeps every argument as given.
            const script = ['hostname "$0"', 'for d in $HIDE; do mount -t tmpfs -o size=1m none "$d"; done', 'exec "$@"'].join(" && ");
            const child = spawn("ip", ["netns", "exec", h.netns, "unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script, host, cmd, ...args], {
                env: { ...process.env, ...opts.env, HIDE: (opts.hide ?? []).join(" ") },
                cwd: opts.cwd,
                // A process group of its own: a kill of the group takes everything it started (a lost machine).
                detached: true,
                stdio: ["ignore", "pipe", "pipe"],
            });
            child.stdout!.on("data", (b: Buffer) => opts.onOutput?.(b.toString()));
            child.stderr!.on("data", (b: Buffer) => opts.onOutput?.(b.toString()));
            return child;
        },
        link(host, up) {
            index(host);
            ip("-n", hosts[host].netns, "link", "set", "eth0", up ? "up" : "down");
        },
        dispose,
    };
}
