/** Small process helpers of the runner: whether a process runs, and an abortable wait. */

/** True when the process exists (EPERM: it exists but belongs to another user). */
export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
}

/** Waits, or rejects with the signal's reason as soon as it is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const t = setTimeout(resolve, ms);
        signal?.addEventListener("abort", () => (clearTimeout(t), reject(signal.reason)), { once: true });
    });
}

/**
 * A signal that aborts when any of `signals` does, with the first one's reason; `dispose` stops
 * following them. Written out rather than `AbortSignal.any`: a signal from `AbortSignal.any` is
 * held only weakly by its sources, and the engine's cancellation (the Automation API listening on
 * it while `pulumi` runs) must not depend on what the garbage collector keeps; here each source
 * holds the combined signal's controller until `dispose`.
 */
export function anyOf(signals: readonly (AbortSignal | undefined)[]): { signal: AbortSignal; dispose(): void } {
    const controller = new AbortController();
    const undo: (() => void)[] = [];
    for (const s of signals) {
        if (!s) continue;
        if (s.aborted) {
            controller.abort(s.reason);
            break;
        }
        const follow = () => controller.abort(s.reason);
        s.addEventListener("abort", follow, { once: true });
        undo.push(() => s.removeEventListener("abort", follow));
    }
    return { signal: controller.signal, dispose: () => undo.forEach((u) => u()) };
}
