/**
 * What the toolchain is made of and how each part is obtained. Pure data and pure functions:
 * nothing here touches the disk, the network or a process.
 */

/** The versions the installed npm SDKs ask for. */
export interface Pins {
    /** Version of @pulumi/pulumi; the CLI and language host are built at this version. */
    readonly pulumi: string;
    /** Resource plugins: name -> version requested by the npm SDK's package.json. */
    readonly plugins: Readonly<Record<string, string>>;
}

/** Where a component comes from when nothing usable is installed. */
export type Recipe =
    | {
          /** A wrapper module we generate that requires `module@version` and builds `mainPackage`. */
          readonly type: "go-wrapper";
          readonly module: string;
          readonly version: string;
          readonly mainPackage: string;
          readonly ldflags: readonly string[];
          /** A generated main package instead of the module's own (see `kubernetesMain`). */
          readonly generatedMain?: "kubernetes";
          /** Sibling modules of the same repository, required at the same version (their local replaces). */
          readonly siblings?: readonly string[];
          /**
           * What stands in for the module's local replaces (`k8s.io/api => ./staging/...`): one
           * version for all (Kubernetes publishes its staging modules as `v0.X.Y` for release
           * `v1.X.Y`), or per module the published `module version` to use instead of the folder.
           */
          readonly localReplacesAt?: string | Readonly<Record<string, string>>;
          /**
           * Build with `-mod=mod`: the wrapper's go.sum is completed while building, for modules
           * whose packages need requirements that `go get` of the main package does not record.
           */
          readonly modMode?: "mod";
          /** Source changes to a copy of the module, which then replaces it (see `SourcePatch`). */
          readonly patch?: SourcePatch;
      }
    | {
          /** A Go module kept in this repository under `toolchain/<dir>`. */
          readonly type: "go-local";
          readonly dir: string;
          readonly ldflags: readonly string[];
      }
    | {
          /** A wrapper like `go-wrapper`, for a Terraform-bridged provider pinned through its SDK's tag. */
          readonly type: "go-bridged";
          readonly sdkModule: string;
          readonly sdkVersion: string;
          readonly providerModule: string;
          readonly mainPackage: string;
          readonly ldflags: readonly string[];
      }
    | {
          /** A small shell script, as the official distribution ships next to `pulumi`. */
          readonly type: "shim";
          readonly script: string;
      };

/**
 * Changes to a module's source for a build: each edit's `from` must occur exactly once in its file
 * (so an upstream change fails the build loudly instead of building something else), and `add`
 * puts new files into the copy. Paths are relative to the module's root.
 */
export interface SourcePatch {
    readonly edits: readonly { readonly file: string; readonly from: string; readonly to: string }[];
    readonly add: Readonly<Record<string, string>>;
}

/**
 * The Sealed Secrets controller takes its API server only from inside a Pod (`rest.InClusterConfig`,
 * fixed paths under /var/run/secrets). The cluster tier runs it as a process next to the test API
 * server, so this build reads `KUBECONFIG` when it is set, and behaves as upstream otherwise.
 */
export const CONTROLLER_KUBECONFIG_PATCH: SourcePatch = {
    edits: [{ file: "pkg/controller/main.go", from: "config, err := rest.InClusterConfig()", to: "config, err := restConfig(rest.InClusterConfig)" }],
    add: {
        "pkg/controller/zz_gitops_stages_kubeconfig.go": [
            "package controller",
            "",
            "import (",
            '\t"os"',
            "",
            '\t"k8s.io/client-go/rest"',
            '\t"k8s.io/client-go/tools/clientcmd"',
            ")",
            "",
            "// restConfig reads KUBECONFIG when it is set (the controller runs outside a cluster), else asks inCluster.",
            "func restConfig(inCluster func() (*rest.Config, error)) (*rest.Config, error) {",
            '\tif p := os.Getenv("KUBECONFIG"); p != "" {',
            '\t\treturn clientcmd.BuildConfigFromFlags("", p)',
            "\t}",
            "\treturn inCluster()",
            "}",
            "",
        ].join("\n"),
    },
};

/** One executable of the toolchain. */
export interface Component {
    /** Short name shown in progress output. */
    readonly name: string;
    /** File name of the executable. */
    readonly binary: string;
    readonly version: string;
    /** How it is used: the CLI, registered as a plugin, or a tool our code and tests run by path. */
    readonly role: "cli" | "language" | "shim" | "resource-plugin" | "tool";
    /** For resource plugins: the plugin name the engine asks for. */
    readonly pluginName?: string;
    readonly recipe: Recipe;
    /** Built only on request (`--with-github`). */
    readonly optional: boolean;
    /** The smallest set that needs it: `engine` (stacks and the runner) or `tests` (run only by the test suites). */
    readonly set: ToolchainSet;
}

/**
 * Which components a command resolves. `engine`: what the stacks and the runner run (the CLI, the
 * language host, the shims, the resource plugins); the demo and every user command need only this.
 * `tests`: the engine plus the cluster tier's servers and tools, which only the test suites start.
 */
export type ToolchainSet = "engine" | "tests";

/** The sets, smallest first. */
export const TOOLCHAIN_SETS: readonly ToolchainSet[] = ["engine", "tests"];

/** Options that change which components are wanted. */
export interface RecipeOptions {
    /** Also build the GitHub provider plugin. */
    readonly withGithub: boolean;
    /** Default `engine`. */
    readonly set?: ToolchainSet;
}

/**
 * kubeseal from the Sealed Secrets controller's own module, to prove that what we seal is what the
 * controller unseals. Later releases moved to the module path github.com/bitnami/sealed-secrets,
 * which the checksum database does not know; v0.27.1 is the newest served under the original path.
 */
export const KUBESEAL_VERSION = "v0.27.1";

/** The Kubernetes API server of the cluster test tier; its staging modules are published as v0.36.3. */
export const KUBERNETES_VERSION = "v1.36.3";

/**
 * Argo CD for the cluster tier. v3.6 needs Go 1.27; v3.5.7 builds on Go 1.26. Its go.mod replaces
 * its nested gitops-engine module with a folder the module zip lacks, and the pseudo-version it
 * requires is refused by the proxy; the module's version that the proxy serves as latest stands in
 * (a snapshot of argo-cd's main: see docs/decisions.md).
 */
export const ARGOCD_VERSION = "v3.5.7";

/** The gitops-engine module version that replaces Argo CD's local `./gitops-engine`. */
export const ARGOCD_GITOPS_ENGINE = "v0.0.0-20260914071520-c9c369efcc5b";

/** The Helm that Argo CD v3.5.7 pins (`hack/tool-versions.sh`: helm4_version=4.2.1); its repo server shells out to it. */
export const HELM_VERSION = "v4.2.1";

/** actionlint, the linter of GitHub Actions workflows the tests run over every generated workflow. */
export const ACTIONLINT_VERSION = "v1.7.12";

/** The etcd behind that API server. */
export const ETCD_VERSION = "v3.6.16";

/** Bump when a recipe's meaning changes without its data changing, so caches are rebuilt. */
export const RECIPE_REVISION = 1;

/**
 * The newest pulumi-kubernetes provider commit the Go module proxy serves to these machines. The
 * provider module is not tagged (only pseudo-versions exist); this build is registered under the
 * version the npm SDK requests so the engine never tries to download that version.
 */
export const KUBERNETES_PROVIDER_PSEUDO_VERSION = "v4.0.0-20260115033456-f47bc2d6f199";

const VERSION_PKG = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version";

/** Shell shim that runs @pulumi/pulumi's dynamic-provider host from the program's node_modules. */
export const DYNAMIC_PROVIDER_SHIM = shim("@pulumi/pulumi/cmd/dynamic-provider", "dynamic providers");

/** Shell shim that runs @pulumi/pulumi's policy-pack host from the policy pack's node_modules. */
export const POLICY_SHIM = shim("@pulumi/pulumi/cmd/run-policy-pack", "local policy packs");

function shim(module: string, purpose: string): string {
    return [
        "#!/bin/sh",
        `# Runs ${module} (used by the Pulumi engine for ${purpose}).`,
        "# The engine starts this in the program's directory, so the program's own copy is used: looked",
        "# for in node_modules up from there, as Node resolves it, by the shell (a Node.js start for",
        "# require.resolve cost a tenth of a second per engine run); else by Node (NODE_PATH and such).",
        "dir=$PWD",
        "entry=",
        "while :; do",
        `  if [ -f "$dir/node_modules/${module}/index.js" ]; then entry="$dir/node_modules/${module}/index.js"; break; fi`,
        '  [ -z "$dir" ] || [ "$dir" = / ] && break',
        '  dir=${dir%/*}',
        "done",
        `[ -n "$entry" ] || entry=$(node -e "process.stdout.write(require.resolve('${module}'))") || {`,
        `  echo "cannot find ${module}: run npm install in the Pulumi project" >&2`,
        "  exit 1",
        "}",
        'exec node "$entry" "$@"',
        "",
    ].join("\n");
}

/** The components of a set for these pins, in build order. */
export function components(pins: Pins, options: RecipeOptions): Component[] {
    const v = pins.pulumi.replace(/^v/, "");
    const list: Component[] = [
        {
            name: "pulumi",
            binary: "pulumi",
            version: v,
            role: "cli",
            optional: false,
            set: "engine",
            recipe: {
                type: "go-wrapper",
                module: "github.com/pulumi/pulumi/pkg/v3",
                version: `v${v}`,
                mainPackage: "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
                ldflags: [`-X ${VERSION_PKG}=v${v}`],
            },
        },
        {
            name: "language-nodejs",
            binary: "pulumi-language-nodejs",
            version: v,
            role: "language",
            optional: false,
            set: "engine",
            recipe: { type: "go-local", dir: "language-nodejs", ldflags: [`-X ${VERSION_PKG}=v${v}`] },
        },
        {
            name: "dynamic-provider-shim",
            binary: "pulumi-resource-pulumi-nodejs",
            version: v,
            role: "shim",
            optional: false,
            set: "engine",
            recipe: { type: "shim", script: DYNAMIC_PROVIDER_SHIM },
        },
        {
            name: "policy-shim",
            binary: "pulumi-analyzer-policy",
            version: v,
            role: "shim",
            optional: false,
            set: "engine",
            recipe: { type: "shim", script: POLICY_SHIM },
        },
    ];
    const k8s = requirePin(pins, "kubernetes");
    list.push({
        name: "kubernetes",
        binary: "pulumi-resource-kubernetes",
        version: k8s,
        role: "resource-plugin",
        pluginName: "kubernetes",
        optional: false,
        set: "engine",
        recipe: {
            type: "go-wrapper",
            module: "github.com/pulumi/pulumi-kubernetes/provider/v4",
            version: KUBERNETES_PROVIDER_PSEUDO_VERSION,
            mainPackage: ".",
            ldflags: [`-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${k8s}`],
            generatedMain: "kubernetes",
        },
    });
    const random = requirePin(pins, "random");
    list.push({
        name: "random",
        binary: "pulumi-resource-random",
        version: random,
        role: "resource-plugin",
        pluginName: "random",
        optional: false,
        set: "engine",
        recipe: { type: "go-local", dir: "provider-random", ldflags: [`-X main.version=${random}`] },
    });
    list.push(sealedSecretsComponent("kubeseal", "kubeseal"), sealedSecretsComponent("sealed-secrets-controller", "controller", CONTROLLER_KUBECONFIG_PATCH));
    // The API server and the controller manager come from the same module build.
    for (const binary of ["kube-apiserver", "kube-controller-manager"]) list.push(kubernetesComponent(binary));
    list.push({
        name: "etcd",
        binary: "etcd",
        version: ETCD_VERSION.slice(1),
        role: "tool",
        optional: false,
        set: "tests",
        recipe: {
            type: "go-wrapper",
            module: "go.etcd.io/etcd/server/v3",
            version: ETCD_VERSION,
            mainPackage: "go.etcd.io/etcd/server/v3",
            siblings: ["go.etcd.io/etcd/api/v3", "go.etcd.io/etcd/client/pkg/v3", "go.etcd.io/etcd/client/v3", "go.etcd.io/etcd/pkg/v3"],
            ldflags: [],
        },
    });
    list.push(
        {
            name: "argocd",
            binary: "argocd",
            version: ARGOCD_VERSION.slice(1),
            role: "tool",
            optional: false,
            set: "tests",
            recipe: {
                type: "go-wrapper",
                module: "github.com/argoproj/argo-cd/v3",
                version: ARGOCD_VERSION,
                // One multi-call binary: the component runs by argv[0] (argocd-server, argocd-repo-server, ...).
                mainPackage: "github.com/argoproj/argo-cd/v3/cmd",
                ldflags: [`-X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION.slice(1)}`],
                localReplacesAt: { "github.com/argoproj/argo-cd/gitops-engine": `github.com/argoproj/argo-cd/gitops-engine ${ARGOCD_GITOPS_ENGINE}` },
                modMode: "mod",
            },
        },
        {
            name: "helm",
            binary: "helm",
            version: HELM_VERSION.slice(1),
            role: "tool",
            optional: false,
            set: "tests",
            recipe: {
                type: "go-wrapper",
                module: "helm.sh/helm/v4",
                version: HELM_VERSION,
                mainPackage: "helm.sh/helm/v4/cmd/helm",
                ldflags: [`-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}`],
            },
        },
        {
            // The tests check every generated GitHub Actions workflow with it.
            name: "actionlint",
            binary: "actionlint",
            version: ACTIONLINT_VERSION.slice(1),
            role: "tool",
            optional: false,
            set: "tests",
            recipe: {
                type: "go-wrapper",
                module: "github.com/rhysd/actionlint",
                version: ACTIONLINT_VERSION,
                mainPackage: "github.com/rhysd/actionlint/cmd/actionlint",
                ldflags: [`-X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION}`],
            },
        },
    );
    if (options.withGithub) {
        const gh = requirePin(pins, "github");
        list.push({
            name: "github",
            binary: "pulumi-resource-github",
            version: gh,
            role: "resource-plugin",
            pluginName: "github",
            optional: true,
            set: "engine",
            recipe: {
                type: "go-bridged",
                sdkModule: "github.com/pulumi/pulumi-github/sdk/v6",
                sdkVersion: `v${gh}`,
                providerModule: "github.com/pulumi/pulumi-github/provider/v6",
                mainPackage: "github.com/pulumi/pulumi-github/provider/v6/cmd/pulumi-resource-github",
                ldflags: [`-X github.com/pulumi/pulumi-github/provider/v6/pkg/version.Version=${gh}`],
            },
        });
    }
    const set = options.set ?? "engine";
    return list.filter((c) => TOOLCHAIN_SETS.indexOf(c.set) <= TOOLCHAIN_SETS.indexOf(set));
}

/** A command of the Sealed Secrets module at KUBESEAL_VERSION. */
function sealedSecretsComponent(binary: string, command: string, patch?: SourcePatch): Component {
    return {
        name: binary,
        binary,
        version: KUBESEAL_VERSION.slice(1),
        role: "tool",
        optional: false,
        set: "tests",
        recipe: {
            type: "go-wrapper",
            module: "github.com/bitnami-labs/sealed-secrets",
            version: KUBESEAL_VERSION,
            mainPackage: `github.com/bitnami-labs/sealed-secrets/cmd/${command}`,
            ldflags: [],
            ...(patch ? { patch } : {}),
        },
    };
}

/** A command of `k8s.io/kubernetes` at KUBERNETES_VERSION, its staging modules at their published v0.X.Y. */
function kubernetesComponent(binary: string): Component {
    const [, minor] = /^v1\.(\d+)\.\d+$/.exec(KUBERNETES_VERSION) ?? [];
    const versionPkg = "k8s.io/component-base/version";
    return {
        name: binary,
        binary,
        version: KUBERNETES_VERSION.slice(1),
        role: "tool",
        optional: false,
        set: "tests",
        recipe: {
            type: "go-wrapper",
            module: "k8s.io/kubernetes",
            version: KUBERNETES_VERSION,
            mainPackage: `k8s.io/kubernetes/cmd/${binary}`,
            localReplacesAt: KUBERNETES_VERSION.replace(/^v1\./, "v0."),
            ldflags: [`-X ${versionPkg}.gitVersion=${KUBERNETES_VERSION}`, `-X ${versionPkg}.gitMajor=1`, `-X ${versionPkg}.gitMinor=${minor}`, `-X ${versionPkg}.gitTreeState=clean`],
        },
    };
}

function requirePin(pins: Pins, plugin: string): string {
    const version = pins.plugins[plugin];
    if (!version) {
        throw new Error(
            `no version pinned for the ${plugin} provider: @pulumi/${plugin} is missing from node_modules (run npm ci)`,
        );
    }
    return version.replace(/^v/, "");
}

/**
 * A Go pseudo-version for a commit, as `go` itself writes it: `v<major>.0.0-<UTC yyyymmddhhmmss>-<12 hex>`.
 * Used to address an untagged provider module at the commit its SDK's release tag points to.
 */
export function pseudoVersion(major: number, commitTime: Date, commit: string): string {
    if (!/^[0-9a-f]{12,40}$/.test(commit)) {
        throw new Error(`not a commit hash: ${commit}`);
    }
    const pad = (n: number): string => String(n).padStart(2, "0");
    const t = commitTime;
    const stamp = `${t.getUTCFullYear()}${pad(t.getUTCMonth() + 1)}${pad(t.getUTCDate())}${pad(t.getUTCHours())}${pad(
        t.getUTCMinutes(),
    )}${pad(t.getUTCSeconds())}`;
    return `v${major}.0.0-${stamp}-${commit.slice(0, 12)}`;
}

/**
 * The replace directives of a module's go.mod that point at other modules (not local folders).
 * Go ignores a dependency's replaces, so a wrapper must repeat them to build what upstream builds;
 * local ones (`=> ../sdk`) stand for sibling modules, which the wrapper requires at the same version,
 * or, with `localAt`, are replaced by the published module of that name at that version.
 */
export function nonLocalReplaces(goMod: string, localAt?: string | Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    const lines: string[] = [];
    let inBlock = false;
    for (const raw of goMod.split("\n")) {
        const line = raw.replace(/\/\/.*$/, "").trim();
        if (inBlock) {
            if (line === ")") inBlock = false;
            else if (line) lines.push(line);
        } else if (/^replace\s*\($/.test(line)) {
            inBlock = true;
        } else if (line.startsWith("replace ")) {
            lines.push(line.slice("replace ".length));
        }
    }
    for (const line of lines) {
        const m = /^(\S+)(?:\s+\S+)?\s*=>\s*(\S+)(?:\s+(\S+))?$/.exec(line);
        if (!m) continue;
        const [, from, to, version] = m;
        if (to.startsWith(".") || to.startsWith("/")) {
            if (typeof localAt === "string") out[from] = `${from} ${localAt}`;
            else if (localAt?.[from]) out[from] = localAt[from];
            continue;
        }
        if (!version) continue;
        out[from] = `${to} ${version}`;
    }
    return out;
}

/** `go.mod` text of a wrapper module. */
export function wrapperGoMod(name: string, goVersion: string, replaces: Readonly<Record<string, string>>): string {
    const lines = [`module gitops-stages.local/toolchain/${name}`, "", `go ${goVersion}`, ""];
    for (const [from, to] of Object.entries(replaces).sort(([a], [b]) => a.localeCompare(b))) {
        lines.push(`replace ${from} => ${to}`);
    }
    return lines.join("\n") + "\n";
}

/**
 * The kubernetes provider's own main package embeds generated files that its module zip lacks
 * (`schema-embed.json`, `terraform-mapping-embed.json`); the wrapper carries this equivalent
 * main package and generates those files from the `schema.json` and `terraform-mapping.json`
 * that the zip does carry.
 */
export const KUBERNETES_MAIN = `// Generated by gitops-stages' toolchain: the upstream main package, with its embedded files
// generated from the module's schema.json and terraform-mapping.json.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
`;

/** Parses `pulumi version` output ("v3.248.0") into [major, minor, patch], or undefined. */
export function parseVersion(text: string): [number, number, number] | undefined {
    const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** True when `have` is at least `want` (both "x.y.z", optional leading v). */
export function versionAtLeast(have: string, want: string): boolean {
    const a = parseVersion(have);
    const b = parseVersion(want);
    if (!a || !b) return false;
    for (let i = 0; i < 3; i++) {
        if (a[i] !== b[i]) return a[i] > b[i];
    }
    return true;
}
