/** Measuring helpers shared by the benchmarks. */

/** Median of a list of numbers. */
export function median(values: readonly number[]): number {
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Milliseconds a call takes. */
export async function time(fn: () => Promise<unknown> | unknown): Promise<number> {
    const t0 = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - t0) / 1e6;
}
