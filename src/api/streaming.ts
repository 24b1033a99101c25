import type { Response } from 'express';

/**
 * Writes and waits for the socket to drain, so a stream never buffers more than a page; false
 * once the client has gone. When the socket takes the page at once (a fast client on the same
 * host), it still waits for the event loop to turn, so one export never holds off other requests.
 */
export function writeChunk(res: Response, chunk: string): Promise<boolean> {
  if (res.write(chunk)) return new Promise((resolve) => setImmediate(() => resolve(!res.destroyed)));
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve(!res.destroyed);
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
