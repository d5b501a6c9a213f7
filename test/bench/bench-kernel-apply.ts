import type { BenchOptions } from './options.js';
export async function benchKernelApply(_o: BenchOptions): Promise<void> {}
