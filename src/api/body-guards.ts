import type { IncomingMessage } from 'node:http';
import { isUtf8 } from 'node:buffer';
import type { RequestHandler } from 'express';
import { MAX_BODY_DEPTH, holdsReservedKey, mayHoldReservedKey, nestedDeeperThan, notUtf8Error, reservedKeyError, tooDeepError } from '../gateway/index.js';

/** The device gateway's payload checks, applied to every HTTP body: one parser's rules for every transport. */
const notUtf8 = new WeakSet<IncomingMessage>();
const tooDeep = new WeakSet<IncomingMessage>();
const reservedKeyCandidates = new WeakSet<IncomingMessage>();

/** express.json's `verify`: notes bodies that are not UTF-8, nested too deep, or could hold the reserved key. */
export function inspectBody(req: IncomingMessage, _res: unknown, body: Buffer): void {
  // The decoder would store U+FFFD for each bad byte: the client's data, silently changed.
  if (!isUtf8(body)) notUtf8.add(req);
  if (nestedDeeperThan(body, MAX_BODY_DEPTH)) tooDeep.add(req);
  if (mayHoldReservedKey(body)) reservedKeyCandidates.add(req);
}

export const refuseHostileBodies: RequestHandler = (req, _res, next) => {
  if (notUtf8.has(req)) return next(notUtf8Error());
  if (tooDeep.has(req)) return next(tooDeepError(req.body));
  if (reservedKeyCandidates.has(req) && holdsReservedKey(req.body)) return next(reservedKeyError());
  next();
};
