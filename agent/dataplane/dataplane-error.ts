/**
 * The error of a kernel write or read (kernel-dataplane.ts): the tool's argv, exit code and
 * stderr, and the messages and operator file text made from it.
 */
import type { DesiredState } from '../../src/compile/desired-state.js';
import type { Family } from '../../src/net/family.js';

const MAX_INVALID_REPORTED = 20;

export interface DataplaneErrorDetails {
  readonly family?: Family;
  readonly argv?: readonly string[];
  readonly code?: number;
  readonly stderr?: string;
}

export class DataplaneError extends Error {
  constructor(
    message: string,
    readonly details: DataplaneErrorDetails = {},
  ) {
    super(details.stderr ? `${message}: ${details.stderr.trim()}` : message);
    this.name = 'DataplaneError';
  }
}

export function refusal(state: DesiredState, invalid: readonly string[]): DataplaneError {
  const shown = invalid.slice(0, MAX_INVALID_REPORTED).join('; ');
  return new DataplaneError(`state ${state.version} refused: ${invalid.length} invalid member(s): ${shown}`);
}

export function errorText(state: DesiredState, err: DataplaneError): string {
  return `${JSON.stringify({ version: state.version, message: err.message, ...err.details }, null, 2)}\n`;
}
