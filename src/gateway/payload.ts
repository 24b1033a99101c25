import { isUtf8 } from 'node:buffer';
import { DomainError } from '../domain/errors.js';

/**
 * Checks on a device payload's bytes before and after parsing, for what validation cannot
 * catch; the HTTP body parser and the socket and MQTT adapters all use these, so a device gets
 * the same answer whichever way it sends.
 *
 * Nesting: validators, JSON.stringify and recursive condition trees all recurse, so a body
 * nested thousands of levels deep would overflow the stack somewhere past parsing. The
 * deepest legitimate field (a 128-level configuration, inside a bulk operation) stays well
 * under the limit.
 *
 * "__proto__" survives JSON.parse as an own key but is lost (or worse) the moment an object is
 * copied; such a body is refused outright rather than have data dropped silently. A JSON
 * reviver would see every key, but triples the cost of parsing a 100-reading body; the key can
 * only be spelt literally or with \u escapes, so only bodies whose bytes hold either are walked.
 */
export const MAX_BODY_DEPTH = 136;
export const MAX_BODY_BYTES = 1024 * 1024;

export const notUtf8Error = () => new DomainError('validation_failed', 'the body is not valid UTF-8', [{ path: '', message: 'invalid UTF-8' }]);
export const tooDeepError = (body: unknown) =>
  new DomainError('validation_failed', `the body is nested more than ${MAX_BODY_DEPTH} levels deep`, [{ path: fieldNestedTooDeep(body, MAX_BODY_DEPTH), message: 'nested too deep' }]);
export const reservedKeyError = () => new DomainError('validation_failed', 'the body uses a reserved key: "__proto__"', [{ path: '__proto__', message: 'reserved key' }]);
export const tooLargeError = () => new DomainError('payload_too_large', 'the body is larger than 1 MiB');

/** Whether the bytes could hold the reserved key (spelt literally or escaped). */
export const mayHoldReservedKey = (body: Buffer): boolean => body.includes('__proto__') || body.includes('\\u');

/** A device payload off a socket or a broker, checked as the HTTP body parser checks (size, UTF-8, JSON): first half. */
export function parseJsonPayload(bytes: Buffer): unknown {
  if (bytes.length > MAX_BODY_BYTES) throw tooLargeError();
  if (!isUtf8(bytes)) throw notUtf8Error();
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new DomainError('invalid_json', 'the body is not valid JSON');
  }
}

/** Second half, on what parsed: depth and the reserved key. */
export function checkParsedPayload(bytes: Buffer, parsed: unknown): void {
  if (nestedDeeperThan(bytes, MAX_BODY_DEPTH)) throw tooDeepError(parsed);
  if (mayHoldReservedKey(bytes) && holdsReservedKey(parsed)) throw reservedKeyError();
}

/** Counts brackets outside strings; stops as soon as the limit is passed. */
export function nestedDeeperThan(body: Buffer, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i];
    if (inString) {
      if (byte === 0x5c) i++; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x7b || byte === 0x5b) {
      if (++depth > limit) return true;
    } else if (byte === 0x7d || byte === 0x5d) depth--;
  }
  return false;
}

/** The top-level field holding the nesting past the limit ('' when the body is not an object). */
function fieldNestedTooDeep(body: unknown, limit: number): string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return '';
  return Object.entries(body).find(([, value]) => deeperThan(value, limit - 1))?.[0] ?? '';
}

/** Whether some object or array of the body passes `test` at its depth (the root's is 1). Iterative: a body nested deeply must not overflow the stack. */
function someObject(root: unknown, test: (value: object, depth: number) => boolean): boolean {
  const pending: Array<[unknown, number]> = [[root, 1]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (test(value, depth)) return true;
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
  return false;
}

const deeperThan = (root: unknown, limit: number): boolean => someObject(root, (_, depth) => depth > limit);
export const holdsReservedKey = (body: unknown): boolean => someObject(body, (value) => Object.hasOwn(value, '__proto__'));
