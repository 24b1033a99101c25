import type { RequestHandler } from 'express';
import type { ProjectionRunner } from '../projections/runner.js';

/**
 * While the read models are stalled, the routes that store are refused before they start.
 * storeEvents would refuse them too, but only once they got there: behind a device's or an
 * owner's lock held by a write that waits for the retry to show its event. Reads (and a dry
 * run) go on answering from the read models as they stand; a GET that stores (fetching pending
 * commands) is refused where it stores.
 */
export const refuseWhileStalled =
  (runner: ProjectionRunner): RequestHandler =>
  (_req, _res, next) => {
    runner.refuseWhileStalled();
    next();
  };
