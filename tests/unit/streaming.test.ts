import type { Response } from 'express';
import { describe, expect, it } from 'vitest';
import { writeChunk } from '../../src/api/streaming.js';

describe('writeChunk', () => {
  it('given a socket that takes every page at once, then other work runs between two pages', async () => {
    const order: string[] = [];
    const takesEverything = { write: () => true, destroyed: false } as unknown as Response;
    setImmediate(() => order.push('another request'));

    const open = await writeChunk(takesEverything, 'page 1');
    order.push('page 2');

    expect(open).toBe(true);
    expect(order).toEqual(['another request', 'page 2']);
  });
});
