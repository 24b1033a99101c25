import type { RequestHandler } from 'express';
import { stalledAt, type ProjectionRunner } from '../projections/runner.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * While the read models are stalled, a write would be stored and then answered 503 (its
 * effect not yet visible), and a client retrying it would store it twice: refused before it
 * is stored instead. Reads go on answering from the read models as they stand.
 */
export const refuseWritesWhileStalled =
  (runner: ProjectionRunner): RequestHandler =>
  (req, _res, next) => {
    const stall = runner.stalled();
    next(stall && !READS.has(req.method) ? stalledAt(stall.position) : undefined);
  };
