import type { BenchOptions } from './options.js';
export async function benchFanout(_o: BenchOptions): Promise<void> {}
