import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';

const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Gives each request an id (the caller's, when it is sane) and a logger that carries it. */
export function requestContext(logger: Logger, clock: Clock): RequestHandler {
  return (req, res, next) => {
    const offered = req.header('x-request-id');
    req.requestId = offered && SAFE_REQUEST_ID.test(offered) ? offered : randomUUID();
    req.log = logger.child({ request_id: req.requestId });
    res.setHeader('X-Request-Id', req.requestId);
    const started = clock.now().getTime();
    res.on('finish', () => {
      // The path only: query strings may carry a token.
      req.log.info({ method: req.method, path: req.path, status: res.statusCode, ms: clock.now().getTime() - started }, 'request');
    });
    next();
  };
}
