import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Accounts } from '../commands/accounts.js';
import type { Principal } from '../commands/services.js';
import { clientCertificateOf } from '../transport/tls.js';
import type { CredentialRefusal } from '../commands/credentials.js';
import { DomainError } from '../domain/errors.js';

export const SESSION_COOKIE = 'session';
const MAX_CREDENTIAL = 4096;

/** The credential a request carries, wherever the contract allows it. */
export interface HeaderSource {
  header(name: string): string | undefined;
}

export function credentialOf(req: HeaderSource, queryToken?: unknown): string | undefined {
  const authorization = req.header('authorization');
  const bearer = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  return firstUsable([bearer, req.header('x-api-key'), req.header('x-device-token'), typeof queryToken === 'string' ? queryToken : undefined, cookieValue(req.header('cookie'), SESSION_COOKIE)]);
}

/** A subscriber's credential: /ws admits only `?token=` and the session cookie (what a browser's WebSocket can send; docs/guide.md). */
export function subscriberCredentialOf(req: HeaderSource, queryToken: string | undefined): string | undefined {
  return firstUsable([queryToken, cookieValue(req.header('cookie'), SESSION_COOKIE)]);
}

const firstUsable = (candidates: ReadonlyArray<string | undefined>): string | undefined =>
  candidates.find((value): value is string => typeof value === 'string' && value.length > 0 && value.length <= MAX_CREDENTIAL);

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) {
      try {
        return decodeURIComponent(rest.join('='));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** An Authorization header that is not `Bearer <token>`, or a credential too long to be one. */
function unreadableCredential(req: HeaderSource): boolean {
  const authorization = req.header('authorization');
  if (authorization !== undefined && !/^Bearer\s+\S+$/i.test(authorization)) return true;
  return [authorization, req.header('x-api-key'), req.header('x-device-token')].some((value) => value !== undefined && value.length > MAX_CREDENTIAL);
}

/** Resolves the caller, if any; routes that need one refuse with 401 themselves, saying why. A token goes before a client certificate. */
export function authenticate(accounts: Accounts): RequestHandler {
  return async (req, _res, next) => {
    const credential = credentialOf(req);
    if (credential) {
      const identified = await accounts.identify(credential);
      if ('principal' in identified) req.principal = identified.principal;
      else req.credentialRefused = identified.refused;
    } else if (unreadableCredential(req)) {
      req.credentialRefused = 'malformed';
    } else {
      const { principal, refused } = certificatePrincipal(accounts, req.socket, req.log);
      if (principal) req.principal = principal;
      if (refused) req.refusedCertificate = refused;
    }
    next();
  };
}

/**
 * The device a connection's client certificate speaks for (mutual TLS), or why it was refused
 * (another CA, expired, bound to no device: logged, and told to the device in the 401); both
 * null when no certificate was presented.
 */
export function certificatePrincipal(accounts: Accounts, socket: unknown, log: Logger): { principal: Principal | null; refused: string | null } {
  const certificate = clientCertificateOf(socket);
  if (!certificate) return { principal: null, refused: null };
  const outcome = accounts.authenticateCertificate(certificate);
  if ('principal' in outcome) return { principal: outcome.principal, refused: null };
  log.info({ fingerprint: certificate.fingerprint, problem: certificate.problem, refused: outcome.refused }, 'client certificate refused');
  return { principal: null, refused: outcome.refused };
}

/** The 401 message when a client certificate was all a request carried and it was refused. */
export const certificateRefusal = (reason: string): string => `the client certificate was refused: ${reason}`;
const REFUSALS: Record<CredentialRefusal, string> = {
  missing: 'authentication required: send a session token or API key (Authorization: Bearer ..., X-API-Key) or a device token (X-Device-Token)',
  malformed: 'the credential is malformed: send Authorization: Bearer <token>',
  expired: 'the session has expired: log in again',
  revoked: 'the session was ended (logged out): log in again',
  invalid: 'the credential is not valid',
};

/** A 401 that says what was wrong with the credential, and nothing about whose it might be. */
export const unauthenticated = (refused: CredentialRefusal = 'missing'): DomainError =>
  new DomainError('unauthenticated', REFUSALS[refused], [{ path: 'credential', message: refused }]);
