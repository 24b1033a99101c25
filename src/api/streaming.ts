import type { Response } from 'express';

/** Writes and waits for the socket to drain, so a stream never buffers more than a page; false once the client has gone. */
export function writeChunk(res: Response, chunk: string): Promise<boolean> {
  if (res.write(chunk)) return Promise.resolve(!res.destroyed);
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
