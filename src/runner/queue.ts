/**
 * Per-stack queues: one job per stack at a time, stacks in parallel. A stack's queue is FIFO, or
 * "coalesce": when several jobs for the same app wait, only the newest runs and the others are
 * answered "superseded". Jobs with the same idempotency key waiting or running at the same time
 * share one execution and one answer.
 * No I/O: jobs are functions supplied by the runner.
 */

/** A unit of work for one stack. */
export interface Job<T> {
    /** Stack the job updates: jobs of one stack never overlap. */
    readonly stack: string;
    /** Request id (answers name the job that superseded another). */
    readonly id: string;
    /** Same key, same execution and answer. */
    readonly idempotencyKey?: string;
    /** Jobs with the same coalesce key may supersede each other on "coalesce" stacks (the app). */
    readonly coalesceKey?: string;
    readonly run: (signal: AbortSignal) => Promise<T>;
}

/** How a job ended. */
export type Outcome<T> =
    | { readonly state: "done"; readonly id: string; readonly result: T }
    | { readonly state: "superseded"; readonly id: string; readonly by: string }
    | { readonly state: "failed"; readonly id: string; readonly error: unknown };

interface Waiting<T> {
    job: Job<T>;
    resolve: (o: Outcome<T>) => void;
}

/** Queues of all stacks. */
export class StackQueues {
    private readonly waiting = new Map<string, Waiting<unknown>[]>();
    private readonly running = new Map<string, { job: Job<unknown>; controller: AbortController }>();
    private readonly byKey = new Map<string, Promise<Outcome<unknown>>>();

    constructor(
        /** Queue policy of a stack. */
        private readonly policy: (stack: string) => "fifo" | "coalesce",
    ) {}

    /** Enqueues a job; resolves when it ran, was superseded or failed. Never rejects. */
    submit<T>(job: Job<T>): Promise<Outcome<T>> {
        if (job.idempotencyKey) {
            const existing = this.byKey.get(job.idempotencyKey);
            if (existing) return existing as Promise<Outcome<T>>;
        }
        const p = new Promise<Outcome<T>>((resolve) => {
            const list = this.waiting.get(job.stack) ?? [];
            if (this.policy(job.stack) === "coalesce" && job.coalesceKey !== undefined) {
                // Older waiting jobs for the same app are superseded by this newer one.
                for (const w of list.filter((x) => x.job.coalesceKey === job.coalesceKey)) {
                    list.splice(list.indexOf(w), 1);
                    w.resolve({ state: "superseded", id: w.job.id, by: job.id });
                }
            }
            list.push({ job, resolve } as Waiting<unknown>);
            this.waiting.set(job.stack, list);
            this.pump(job.stack);
        });
        if (job.idempotencyKey) {
            const key = job.idempotencyKey;
            this.byKey.set(key, p as Promise<Outcome<unknown>>);
            // Shared only while in flight: a finished success is answered from the runner's store,
            // and a failure must not be replayed to the retry that follows it.
            void p.then(() => {
                if (this.byKey.get(key) === (p as Promise<Outcome<unknown>>)) this.byKey.delete(key);
            });
        }
        return p;
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
