/**
 * A fake CommandRunner for unit tests: records every call (argv and stdin) and answers from a list
 * of responders, first match wins; unmatched calls succeed with empty output. Use it to play a
 * kernel that has or lacks our jump, or an `iptables-restore` that fails.
 */
import type { CommandResult, CommandRunner } from '../../agent/dataplane/command-runner.js';

export interface RecordedCall {
  readonly argv: readonly string[];
  readonly input: string | undefined;
}

export type Responder = (argv: readonly string[], input: string | undefined) => Partial<CommandResult> | undefined;

export class RecordingRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  private readonly responders: Responder[] = [];

  /** Add a responder; returning undefined passes to the next one. */
  on(responder: Responder): this {
    this.responders.push(responder);
    return this;
  }

  /** Answer calls whose argv starts with `head` (e.g. `['iptables-save']`). */
  when(head: readonly string[], result: Partial<CommandResult>): this {
    return this.on((argv) => (head.every((word, i) => argv[i] === word) ? result : undefined));
  }

  /** Make calls whose argv starts with `head` fail with `stderr`. */
  fail(head: readonly string[], stderr: string, code = 1): this {
    return this.when(head, { code, stderr });
  }

  /** Calls whose argv starts with `head`, in order. */
  callsTo(head: readonly string[]): RecordedCall[] {
    return this.calls.filter((c) => head.every((word, i) => c.argv[i] === word));
  }

  async run(argv: readonly string[], input?: string): Promise<CommandResult> {
    this.calls.push({ argv: [...argv], input });
    for (const responder of this.responders) {
      const r = responder(argv, input);
      if (r) return { code: r.code ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    }
    return { code: 0, stdout: '', stderr: '' };
  }
}
