import type { BenchOptions } from './options.js';
export async function benchConvergence(_o: BenchOptions): Promise<void> {}
