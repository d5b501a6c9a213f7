import type { BenchOptions } from './options.js';
export async function benchPacketPath(_o: BenchOptions): Promise<void> {}
