/**
 * The CLI's durable records (approvals and answers to idempotency keys) in one JSON file in the
 * data folder, replaced atomically on each write and guarded by a lock file across processes.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import type { Approval } from "../core";
import type { RunnerStore } from "../ports";

interface Records {
    approvals: Approval[];
    answers: Record<string, unknown>;
}

/** A RunnerStore in `<dataDir>/records.json`. */
export class FileStore implements RunnerStore {
    private readonly file: string;

    constructor(dataDir: string) {
        this.file = path.join(dataDir, "records.json");
    }

    private read(): Records {
        if (!fs.existsSync(this.file)) return { approvals: [], answers: {} };
        return JSON.parse(fs.readFileSync(this.file, "utf8")) as Records;
    }

    private async update(fn: (r: Records) => void): Promise<void> {
        const lock = `${this.file}.lock`;
        for (let i = 0; ; i++) {
            try {
                fs.mkdirSync(lock);
                break;
            } catch {
                // A lock older than 30 s belongs to a process that died while writing.
                if (i > 300 || (fs.existsSync(lock) && Date.now() - fs.statSync(lock).mtimeMs > 30_000)) fs.rmSync(lock, { recursive: true, force: true });
                await new Promise((r) => setTimeout(r, 10));
            }
        }
        try {
            const r = this.read();
            fn(r);
            const tmp = `${this.file}.${process.pid}.tmp`;
            fs.writeFileSync(tmp, JSON.stringify(r, null, 2));
            fs.renameSync(tmp, this.file);
        } finally {
            fs.rmSync(lock, { recursive: true, force: true });
        }
    }

    async approvals(): Promise<Approval[]> {
        return this.read().approvals;
    }

    async addApproval(a: Approval): Promise<void> {
        await this.update((r) => {
            if (!r.approvals.some((x) => x.requestId === a.requestId && x.stage === a.stage)) r.approvals.push(a);
        });
    }

    async answer(key: string): Promise<unknown | undefined> {
        return this.read().answers[key];
    }

    async saveAnswer(key: string, value: unknown): Promise<void> {
        await this.update((r) => {
            r.answers[key] = value;
        });
    }
}
