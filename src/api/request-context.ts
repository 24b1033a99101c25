import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';

const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The caller's request id when it is sane, else a new one. */
export const requestIdOf = (offered: string | undefined): string => (offered && SAFE_REQUEST_ID.test(offered) ? offered : randomUUID());

/**
 * Gives each request an id (the caller's, when it is sane) and a logger that carries it. The
 * child logger is made on first use: most requests only log their one line when they finish.
 */
export function requestContext(logger: Logger, clock: Clock): RequestHandler {
  return (req, res, next) => {
    const requestId = requestIdOf(req.header('x-request-id'));
    req.requestId = requestId;
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { get: () => (child ??= logger.child({ request_id: requestId })), configurable: true });
    res.setHeader('X-Request-Id', requestId);
    // No browser may guess a type other than the one declared (a JSON answer read as HTML or script).
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const started = clock.now().getTime();
    res.on('finish', () => {
      // The path only: query strings may carry a token.
      if (logger.isLevelEnabled('info')) logger.info({ request_id: requestId, method: req.method, path: req.path, status: res.statusCode, ms: clock.now().getTime() - started }, 'request');
    });
    next();
  };
}
