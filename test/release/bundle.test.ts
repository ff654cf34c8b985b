/** Release bundles: validation with exact messages, immutable publishing to a real bare repository. */
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { ValidationError } from "../../src/config/validate";
import { ensureBareRepository, listFiles, readFiles } from "../../src/git/engine";
import { buildBundle, isPlainPath, parseReleaseMeta, readBundleDir } from "../../src/release/bundle";
import { ReleaseConflictError, publishFromDir } from "../../src/release/publish";
import { makeBundleDir, releaseMeta } from "../support/fixtures";

const author = { name: "ci", email: "ci@example.invalid" };

function problems(fn: () => unknown): string[] {
    try {
        fn();
    } catch (e) {
        if (e instanceof ValidationError) return e.message.split("\n").slice(1).map((l) => l.trim());
        throw e;
    }
    assert.fail("expected a ValidationError");
}

describe("release bundles", function () {
    let dir: string;
    beforeEach(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-stages-bundle-"));
    });
    afterEach(function () {
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("records a digest per file and an identity digest that changes with any file", function () {
        const a = buildBundle(releaseMeta("web", "1.0.0"), readBundleDir(makeBundleDir(dir, "web")));
        const b = buildBundle(releaseMeta("web", "1.0.0"), readBundleDir(makeBundleDir(dir, "web", { replicas: 2 })));
        assert.deepEqual(a.stages, ["itg", "mr", "perf", "prod", "tst"]);
        assert.deepEqual(a.chart, { name: "web", version: "1.0.0" });
        assert.match(a.files["chart/Chart.yaml"], /^[0-9a-f]{64}$/);
        assert.notEqual(a.digest, b.digest);
    });

    const badMeta: [string, unknown, string[]][] = [
        ["an app name that is not a DNS label", { ...releaseMeta("web", "1.0.0"), app: "../etc" }, ['app = "../etc": must be a DNS label: lowercase letters, digits and \'-\', starting with a letter, ending with a letter or digit, at most 63 characters']],
        ["a dash-prefixed app", { ...releaseMeta("web", "1.0.0"), app: "-rf" }, ['app = "-rf": must be a DNS label: lowercase letters, digits and \'-\', starting with a letter, ending with a letter or digit, at most 63 characters']],
        ["a version with a leading v", { ...releaseMeta("web", "1.0.0"), version: "v1.0.0" }, ['version = "v1.0.0": must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)']],
        ["a version with a path in it", { ...releaseMeta("web", "1.0.0"), version: "1.0.0/../../x" }, ['version = "1.0.0/../../x": must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)']],
        ["an image without tag or digest", { ...releaseMeta("web", "1.0.0"), image: "registry.example/web" }, ['image = "registry.example/web": must carry a tag or a digest']],
        ["a source commit that is not hex", { ...releaseMeta("web", "1.0.0"), source: { commit: "main" } }, ['source.commit = "main": must be a git commit id (7 to 64 hex characters)']],
        ["an unknown field", { ...releaseMeta("web", "1.0.0"), signed: true }, ["release.signed: is not a known setting (known: app, version, image, source)"]],
    ];
    for (const [title, meta, expected] of badMeta) {
        it(`refuses release metadata with ${title}`, function () {
            assert.deepEqual(problems(() => parseReleaseMeta(meta)), expected);
        });
    }

    const badBundles: [string, (d: string) => void, string[]][] = [
        ["no Chart.yaml", (d) => fs.rmSync(path.join(d, "chart", "Chart.yaml")), ["bundle:chart/Chart.yaml: is required (the app's Helm chart)"]],
        ["a Chart.yaml without version", (d) => fs.writeFileSync(path.join(d, "chart", "Chart.yaml"), "apiVersion: v2\nname: web\n"), ["bundle:chart/Chart.yaml: must have a version that must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (no leading v)"]],
        ["a values file that is a list", (d) => fs.writeFileSync(path.join(d, "values", "itg.yaml"), "- a\n- b\n"), ["bundle:values/itg.yaml: must be a YAML mapping"]],
        ["a values file that is not YAML", (d) => fs.writeFileSync(path.join(d, "values", "tst.yaml"), "a: [1, 2\n"), ["bundle:values/tst.yaml: must be valid YAML (Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 1)"]],
        ["a values file for a bad stage name", (d) => fs.writeFileSync(path.join(d, "values", "Prod.yaml"), "a: 1\n"), ["bundle:values/Prod.yaml: stage name must be a DNS label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters"]],
        ["a stray file", (d) => fs.writeFileSync(path.join(d, "notes.txt"), "x"), ["bundle:notes.txt: is not part of a bundle: only chart/** and values/<stage>.yaml are"]],
        ["a symlink", (d) => fs.symlinkSync("/etc/passwd", path.join(d, "chart", "templates", "passwd.yaml")), ["bundle:chart/templates/passwd.yaml: must not be a symbolic link"]],
        ["a binary file", (d) => fs.writeFileSync(path.join(d, "chart", "charts.tgz"), Buffer.from([0x1f, 0x8b, 0xff, 0xfe])), ["bundle:chart/charts.tgz: must be a UTF-8 text file (packaged subcharts and other binaries are not accepted)"]],
    ];
    for (const [title, spoil, expected] of badBundles) {
        it(`refuses a bundle with ${title}, naming the file, and writes nothing`, async function () {
            const remote = path.join(dir, "ops.git");
            await ensureBareRepository(remote, "main");
            const b = makeBundleDir(dir, "web");
            spoil(b);
            await assert.rejects(publishFromDir(remote, b, releaseMeta("web", "1.0.0"), author), (e: unknown) => {
                assert.ok(e instanceof ValidationError, String(e));
                assert.deepEqual(e.message.split("\n").slice(1).map((l) => l.trim()), expected);
                return true;
            });
            assert.deepEqual(await listFiles(remote, "main"), [], "the ops repo must stay empty");
        });
    }

    it("refuses paths that escape the bundle folder", function () {
        for (const p of ["../x", "/etc/passwd", "chart/../../x", "chart//x", "./chart/x", "chart/x\\..\\y"]) assert.equal(isPlainPath(p), false, p);
        assert.equal(isPlainPath("chart/templates/deployment.yaml"), true);
        const files = readBundleDir(makeBundleDir(dir, "web"));
        assert.deepEqual(problems(() => buildBundle(releaseMeta("web", "1.0.0"), { ...files, "../escape.yaml": Buffer.from("a: 1") })), [
            "bundle:../escape.yaml: must stay inside the bundle folder (no absolute paths, no ..)",
        ]);
    });

    it("publishes once as one commit; the same content again is a no-op; other content under that version is refused", async function () {
        const remote = path.join(dir, "ops.git");
        await ensureBareRepository(remote, "main");
        const first = await publishFromDir(remote, makeBundleDir(dir, "web"), releaseMeta("web", "1.0.0"), author, "req-1");
        assert.ok(first.commit);
        const files = await listFiles(remote, "main", "releases/web/1.0.0/");
        assert.deepEqual(files.sort(), [
            "releases/web/1.0.0/bundle.json",
            "releases/web/1.0.0/chart/Chart.yaml",
            "releases/web/1.0.0/chart/templates/deployment.yaml",
            "releases/web/1.0.0/chart/values.yaml",
            "releases/web/1.0.0/values/itg.yaml",
            "releases/web/1.0.0/values/mr.yaml",
            "releases/web/1.0.0/values/perf.yaml",
            "releases/web/1.0.0/values/prod.yaml",
            "releases/web/1.0.0/values/tst.yaml",
        ]);
        const msg = execFileSync("git", ["--git-dir", remote, "log", "-1", "--format=%B", "main"], { encoding: "utf8" });
        assert.match(msg, /^Publish web 1\.0\.0\n/);
        assert.match(msg, /^Request-Id: req-1$/m);
        assert.match(msg, /^Source-Commit: 0123456789abcdef0123456789abcdef01234567$/m);

        const again = await publishFromDir(remote, makeBundleDir(dir, "web"), releaseMeta("web", "1.0.0"), author);
        assert.equal(again.commit, undefined);
        await assert.rejects(publishFromDir(remote, makeBundleDir(dir, "web", { replicas: 3 }), releaseMeta("web", "1.0.0"), author), ReleaseConflictError);
        const count = execFileSync("git", ["--git-dir", remote, "rev-list", "--count", "main"], { encoding: "utf8" }).trim();
        assert.equal(count, "1");
        const stored = JSON.parse((await readFiles(remote, "main", ["releases/web/1.0.0/bundle.json"])).files["releases/web/1.0.0/bundle.json"]);
        assert.equal(stored.digest, first.digest);
    });
});
