import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { DomainError } from '../domain/errors.js';

/**
 * "__proto__" survives JSON.parse as an own key but is lost (or worse) the moment an object
 * is copied; such a body is refused outright rather than have data dropped silently.
 *
 * A JSON reviver would see every key, but triples the cost of parsing a 100-reading body.
 * The key can only be spelt literally or with \u escapes, so only bodies whose bytes hold
 * either are walked after parsing.
 */
const candidates = new WeakSet<IncomingMessage>();

/** express.json's `verify`: notes the bodies that could hold the key. */
export function noteReservedKeyCandidates(req: IncomingMessage, _res: unknown, body: Buffer): void {
  if (body.includes('__proto__') || body.includes('\\u')) candidates.add(req);
}

export const refuseReservedKeys: RequestHandler = (req, _res, next) => {
  if (candidates.has(req) && holdsReservedKey(req.body)) {
    next(new DomainError('validation_failed', 'the body uses a reserved key: "__proto__"', [{ path: '__proto__', message: 'reserved key' }]));
    return;
  }
  next();
};

/** Iterative: a body nested a hundred thousand levels deep must not overflow the stack. */
function holdsReservedKey(body: unknown): boolean {
  const pending: unknown[] = [body];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object') continue;
    if (Object.hasOwn(value, '__proto__')) return true;
    for (const child of Object.values(value)) pending.push(child);
  }
  return false;
}
