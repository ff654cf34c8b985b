/**
 * Per-stack queues of one process: one job per stack at a time, stacks in parallel, and a way to
 * cancel what runs. Across processes the request log decides who runs a stack (one running
 * request per stack), and coalescing and idempotency keys are the log's too (SQL, shared by every
 * process); this only keeps one process's own jobs of a stack from overlapping.
 * No I/O: jobs are functions supplied by the runner.
 */

/** A unit of work for one stack. */
export interface Job<T> {
    /** Stack the job updates: jobs of one stack never overlap. */
    readonly stack: string;
    /** Request id. */
    readonly id: string;
    readonly run: (signal: AbortSignal) => Promise<T>;
}

/** How a job ended. */
export type Outcome<T> = { readonly state: "done"; readonly id: string; readonly result: T } | { readonly state: "failed"; readonly id: string; readonly error: unknown };

interface Waiting<T> {
    job: Job<T>;
    resolve: (o: Outcome<T>) => void;
}

/** Queues of all stacks. */
export class StackQueues {
    private readonly waiting = new Map<string, Waiting<unknown>[]>();
    private readonly running = new Map<string, { job: Job<unknown>; controller: AbortController }>();

    /** Enqueues a job; resolves when it ran or failed. Never rejects. */
    submit<T>(job: Job<T>): Promise<Outcome<T>> {
        return new Promise<Outcome<T>>((resolve) => {
            const list = this.waiting.get(job.stack) ?? [];
            list.push({ job, resolve } as Waiting<unknown>);
            this.waiting.set(job.stack, list);
            this.pump(job.stack);
        });
    }

    /** Number of jobs waiting (not running) for a stack. */
    depth(stack: string): number {
        return this.waiting.get(stack)?.length ?? 0;
    }

    /** Stacks with a job running now. */
    busy(): string[] {
        return [...this.running.keys()];
    }

    /** Aborts every running job (SIGINT/SIGTERM) and answers waiting ones as failed. */
    cancelAll(reason: unknown): void {
        for (const { controller } of this.running.values()) controller.abort(reason);
        for (const [stack, list] of this.waiting) {
            for (const w of list) w.resolve({ state: "failed", id: w.job.id, error: reason });
            this.waiting.delete(stack);
        }
    }

    /** Resolves when no job runs or waits. */
    async idle(): Promise<void> {
        while (this.running.size > 0 || [...this.waiting.values()].some((l) => l.length > 0)) {
            await new Promise((r) => setTimeout(r, 10));
        }
    }

    private pump(stack: string): void {
        if (this.running.has(stack)) return;
        const list = this.waiting.get(stack);
        const next = list?.shift();
        if (!next) return;
        const controller = new AbortController();
        this.running.set(stack, { job: next.job, controller });
        next.job.run(controller.signal).then(
            (result) => next.resolve({ state: "done", id: next.job.id, result }),
            (error: unknown) => next.resolve({ state: "failed", id: next.job.id, error }),
        ).finally(() => {
            this.running.delete(stack);
            this.pump(stack);
        });
    }
}
