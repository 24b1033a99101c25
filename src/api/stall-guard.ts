import type { RequestHandler } from 'express';
import { stalledAt, type ProjectionRunner } from '../projections/runner.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * While the read models are stalled, writes are refused at the door. storeEvents would refuse
 * them too, but only once they got there: behind a device's or an owner's lock held by a write
 * that waits for the retry to show its event. Reads go on answering from the read models as
 * they stand; a GET that stores (fetching pending commands) is refused where it stores.
 */
export const refuseWritesWhileStalled =
  (runner: ProjectionRunner): RequestHandler =>
  (req, _res, next) => {
    const stall = runner.stalled();
    next(stall && !READS.has(req.method) ? stalledAt(stall.position) : undefined);
  };
