// Mocha's spec reporter, plus one plain closing line "N passed, N failed, N skipped" that any
// CI log reader can count, and a leak scan: every value a test planted with plant() (tokens,
// passphrases, secret values) must appear nowhere in what the run printed.
"use strict";
const Mocha = require("mocha");

class SpecWithSummary extends Mocha.reporters.Spec {
    constructor(runner, options) {
        super(runner, options);
        const printed = [];
        for (const stream of [process.stdout, process.stderr]) {
            const write = stream.write.bind(stream);
            stream.write = (chunk, ...rest) => {
                printed.push(String(chunk));
                return write(chunk, ...rest);
            };
        }
        runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
            const s = runner.stats;
            const planted = globalThis.__gitopsStagesPlanted || [];
            const output = printed.join("");
            const leaked = planted.filter((v) => output.includes(v)).length;
            process.stdout.write(`\nleak scan: ${planted.length} planted secret values, ${leaked} found in the test output\n`);
            if (leaked) process.exitCode = 1;
            process.stdout.write(`\n${s.passes} passed, ${s.failures + (leaked ? 1 : 0)} failed, ${s.pending} skipped\n`);
        });
    }
}

module.exports = SpecWithSummary;
