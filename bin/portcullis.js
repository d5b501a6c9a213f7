#!/usr/bin/env node
// Entry point of the `portcullis` command; the code lives in dist/ (built by `npm run build`,
// which `npm ci` runs through the `prepare` script).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
