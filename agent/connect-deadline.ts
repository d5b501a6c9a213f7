/**
 * How long the sync client waits for a replica's TCP and TLS connection (`--connect-timeout`):
 * the base deadline, doubled after each deadline missed in a row, up to a cap (the first-message
 * deadline), and back to the base once a controller answered. A replica that drops packets is
 * left after the base deadline; replicas slowed by a reconnect storm are waited for longer each
 * round instead of being made busier by agents hopping between them with half-made handshakes.
 */
export class ConnectDeadline {
  private missed = 0;

  /** `baseMs` ≤ 0: no deadline. */
  constructor(private readonly baseMs: number, private readonly capMs: number) {}

  /** The deadline for the next connect in ms; 0: none. */
  next(): number {
    if (this.baseMs <= 0) return 0;
    return Math.min(this.baseMs * 2 ** Math.min(this.missed, 30), Math.max(this.baseMs, this.capMs));
  }

  missedOne(): void {
    this.missed += 1;
  }

  /** A controller answered. */
  reset(): void {
    this.missed = 0;
  }
}
