/**
 * An HTTP answer's body, read up to `maxBytes` and no further: a Content-Length above it is
 * refused before reading, reading stops (the response is destroyed) as soon as the bytes received
 * pass it, and a body shorter than its Content-Length or a connection that breaks mid-body is an
 * error, so a truncated answer is never handed on as complete. Used by every client of an outside
 * HTTP API (Marathon, the Mesos agent); parse the text with bounded-json.ts.
 */
import type { IncomingMessage } from 'node:http';

export function readBoundedBody(res: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (e: Error): void => {
      if (done) return;
      done = true;
      res.destroy();
      reject(e);
    };
    const onAbort = (): void => fail(new Error('timed out reading the answer'));
    signal.addEventListener('abort', onAbort, { once: true });
    const announced = Number(res.headers['content-length']);
    if (Number.isFinite(announced) && announced > maxBytes) return fail(new Error(`answer of ${announced} bytes announced, larger than the limit of ${maxBytes} bytes`));
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) fail(new Error(`answer larger than the limit of ${maxBytes} bytes`));
      else chunks.push(c);
    });
    res.on('aborted', () => fail(new Error('connection closed mid-answer (truncated)')));
    res.on('error', (e) => fail(new Error(`reading the answer: ${e.message}`)));
    res.on('close', () => {
      if (!res.complete) fail(new Error('connection closed mid-answer (truncated)'));
    });
    res.on('end', () => {
      if (done) return;
      signal.removeEventListener('abort', onAbort);
      const body = Buffer.concat(chunks);
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && res.headers['content-length'] !== undefined && declared !== body.length) {
        return fail(new Error(`answer of ${body.length} bytes, Content-Length said ${declared} (truncated)`));
      }
      done = true;
      resolve(body.toString('utf8'));
    });
  });
}
