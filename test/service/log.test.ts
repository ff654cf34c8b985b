/** The service's JSON log lines (pino): level names, ISO times, and credentials censored. */
import * as assert from "node:assert/strict";
import { Writable } from "node:stream";

import { serviceLog } from "../../src/service/log";
import { plant } from "../support/planted";

describe("the service's log", function () {
    it("writes one JSON line per entry with the level's name and an ISO time, and censors credentials", function () {
        const lines: string[] = [];
        const sink = new Writable({
            write(chunk: Buffer, _enc, done) {
                lines.push(...chunk.toString().split("\n").filter(Boolean));
                done();
            },
        });
        const log = serviceLog(sink);
        const token = plant(`tok-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`);
        log({ level: "warn", msg: "listening", url: "http://127.0.0.1:1" });
        log({ msg: "a caller's request", headers: { authorization: `Bearer ${token}` }, body: { token, app: "web" } });
        log({ level: "no-such-level", msg: "still logged" });
        assert.equal(lines.length, 3);
        const [first, second, third] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.equal(first.level, "warn");
        assert.equal(first.msg, "listening");
        assert.equal(first.url, "http://127.0.0.1:1");
        assert.ok(!Number.isNaN(Date.parse(String(first.time))) && String(first.time).endsWith("Z"), String(first.time));
        assert.equal(second.level, "info");
        assert.deepEqual(second.headers, { authorization: "[redacted]" });
        assert.deepEqual(second.body, { token: "[redacted]", app: "web" });
        assert.ok(!lines.join("\n").includes(token));
        assert.equal(third.level, "info");
    });
});
