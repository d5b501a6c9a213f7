#!/usr/bin/env node
// Entry point of the `portcullis` command; the code lives in dist/ (built by `npm run build`,
// which `npm ci` runs through the `prepare` script).
import { main } from '../dist/src/cli/main.js';

// `portcullis explain ... | head`: a reader that goes away is not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
