/**
 * Defers the heaviest modules of @pulumi/pulumi's closure serializer until a function is really
 * serialized. Loading this module installs the deferral; it must be loaded before @pulumi/pulumi.
 *
 * Why: `@pulumi/pulumi/automation` (and the dynamic-provider host) load the whole runtime, whose
 * closure serializer imports TypeScript's compiler and npm's dependency resolver at the top of its
 * files (pulumi/pulumi#10185 says as much). They cost about half a second of every process's start
 * (docs/BENCHMARKS.md), yet nothing of ours serializes a function: our dynamic resources name their
 * provider module instead (src/program/module-provider.ts). A program that does serialize one still
 * works: the first use of one of these modules loads it.
 *
 * Hand-written because no library defers another package's own `require` calls: the hook is
 * Node's `Module._load`, narrowed to three requests from the serializer's folder.
 */
import Module from "node:module";
import * as path from "node:path";

/**
 * Deferred requests, with what the stand-in answers for `__esModule` (read at import time by
 * TypeScript's `__importStar` and `__importDefault` helpers, so it must not load the module):
 * true makes `__importStar` hand back the stand-in itself (arborist), whose properties are the
 * module's; undefined makes `__importDefault` wrap it as `{ default: standIn }`, calling the module
 * (normalize-package-data). The TypeScript shim is required plainly, without a helper.
 */
const DEFERRED: ReadonlyMap<string, true | undefined> = new Map([
    ["../../typescript-shim", undefined],
    ["@npmcli/arborist", true],
    ["normalize-package-data", undefined],
]);

const CLOSURE_DIR = `${path.sep}@pulumi${path.sep}pulumi${path.sep}runtime${path.sep}closure${path.sep}`;

interface Loader {
    _load(request: string, parent: { filename?: string | null } | undefined, isMain: boolean): unknown;
}

const loader = Module as unknown as Loader & { __gitopsStagesLazyClosure?: boolean };

/** Whether the deferral is installed in this process (tests check the CLI's start with it). */
export function lazyClosureInstalled(): boolean {
    return loader.__gitopsStagesLazyClosure === true;
}

if (!lazyClosureInstalled()) {
    const load = loader._load;
    // One stand-in per request; once its module is loaded, later requires (the serializer also
    // requires the TypeScript shim inside functions) get the module itself.
    const standIns = new Map<string, { proxy: object; real?: object }>();
    loader._load = function (request, parent, isMain) {
        if (!DEFERRED.has(request) || !parent?.filename?.includes(CLOSURE_DIR)) return load.call(this, request, parent, isMain);
        // Per folder: two copies of @pulumi/pulumi each get their own modules.
        const key = `${path.dirname(parent.filename)}\0${request}`;
        const known = standIns.get(key);
        if (known) return known.real ?? known.proxy;
        const entry: { proxy: object; real?: object } = { proxy: {} };
        const module = (): object => (entry.real ??= load.call(this, request, parent, isMain) as object);
        const esModule = DEFERRED.get(request);
        // A function target, so that a module that is a function (normalize-package-data) can be
        // called through the stand-in; an arrow function, because a `prototype` the module lacks
        // would break the proxy's invariants.
        entry.proxy = new Proxy(() => undefined, {
            get: (_t, key) => (key === "__esModule" ? esModule : Reflect.get(module(), key)),
            has: (_t, key) => Reflect.has(module(), key),
            apply: (_t, self, args) => Reflect.apply(module() as (...a: unknown[]) => unknown, self, args),
            ownKeys: () => Reflect.ownKeys(module()),
            getOwnPropertyDescriptor: (_t, key) => {
                const d = Reflect.getOwnPropertyDescriptor(module(), key);
                // A proxy may not report a property non-configurable that its target lacks.
                return d && { ...d, configurable: true };
            },
        });
        standIns.set(key, entry);
        return entry.proxy;
    };
    loader.__gitopsStagesLazyClosure = true;
}
