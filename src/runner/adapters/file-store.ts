/**
 * The CLI's durable records (approvals and answers to idempotency keys) in one JSON file in the
 * data folder, replaced atomically on each write and guarded by a lock file across processes.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import type { Approval } from "../core";
import { RunnerError } from "../errors";
import { acquireDirLock } from "./dir-lock";
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
        // Writers of this data folder take turns; a live writer is waited for, never broken.
        const release = await acquireDirLock(`${this.file}.lock`, {
            waitMs: 60_000,
            onTimeout: () => new RunnerError("timeout", `${this.file} stayed locked by another runner process for 60 s; try again`),
        });
        try {
            const r = this.read();
            fn(r);
            const tmp = `${this.file}.${process.pid}.tmp`;
            fs.writeFileSync(tmp, JSON.stringify(r, null, 2));
            fs.renameSync(tmp, this.file);
        } finally {
            release();
        }
    }

    async approvals(): Promise<Approval[]> {
        return this.read().approvals;
    }

    async addApproval(a: Approval): Promise<void> {
        await this.update((r) => {
            if (!r.approvals.some((x) => x.app === a.app && x.version === a.version && x.stage === a.stage)) r.approvals.push(a);
        });
    }

    async removeApproval(a: Pick<Approval, "app" | "version" | "stage">): Promise<void> {
        await this.update((r) => {
            r.approvals = r.approvals.filter((x) => !(x.app === a.app && x.version === a.version && x.stage === a.stage));
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
