import { createHash, randomBytes } from 'node:crypto';
import type { SecretBox } from '../eventlog/index.js';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';

/** Prefixes tell the kinds of credential apart before any lookup. */
export const API_KEY_PREFIX = 'iotk_';
export const DEVICE_TOKEN_PREFIX = 'iotd_';
export const SESSION_PREFIX = 'eyJ';

export type CredentialKind = 'session' | 'api_key' | 'device_token';

export function credentialKind(token: string): CredentialKind {
  if (token.startsWith(SESSION_PREFIX)) return 'session';
  if (token.startsWith(API_KEY_PREFIX)) return 'api_key';
  return 'device_token';
}

export const generateApiKey = (): string => API_KEY_PREFIX + randomBytes(32).toString('base64url');
export const generateDeviceToken = (): string => DEVICE_TOKEN_PREFIX + randomBytes(32).toString('base64url');

/**
 * The plain SHA-256 credentials were looked up by before keyed digests: read models rebuilt
 * from such logs hold it, so a credential handed out then keeps working.
 */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/** What a read model finds a credential by: its keyed digest, or (written before) its plain one. */
export const credentialDigests = (secrets: SecretBox, credential: string) => ({ keyed: secrets.lookupHash(credential), legacy: hashSecret(credential) });

/** A credential's digest as an event stores it: keyed, then sealed. */
export const sealedDigest = (secrets: SecretBox, credential: string, field: string): string => secrets.seal(secrets.lookupHash(credential), field);

export interface SessionClaims {
  sessionId: string;
  userId: string;
}

export class SessionTokens {
  private readonly key: Uint8Array;
  constructor(secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  sign(claims: SessionClaims, issuedAt: Date, expiresAt: Date): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(claims.userId)
      .setJti(claims.sessionId)
      .setIssuedAt(Math.floor(issuedAt.getTime() / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.key);
  }

  /**
   * The claims of a valid, unexpired token, or why not. Expiry is only told of a token whose
   * signature holds (jose checks it first): one signed by someone else reads as invalid.
   */
  async verify(token: string, now: Date): Promise<{ claims: SessionClaims } | { refused: 'malformed' | 'expired' | 'invalid' }> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], currentDate: now });
      if (typeof payload.sub !== 'string' || typeof payload.jti !== 'string') return { refused: 'invalid' };
      return { claims: { userId: payload.sub, sessionId: payload.jti } };
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) return { refused: 'expired' };
      if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid || error instanceof TypeError) return { refused: 'malformed' };
      if (error instanceof joseErrors.JOSEError) return { refused: 'invalid' };
      throw error;
    }
  }
}

/** A client certificate as a TLS transport saw it; the handshake itself refuses none (mutual TLS is judged here). */
export interface ClientCertificate {
  /** SHA-256, normalized (64 lowercase hex digits). */
  fingerprint: string;
  /** Chains to TLS_CLIENT_CA and is within its validity. */
  authorized: boolean;
  /** Why it is not authorized (e.g. CERT_HAS_EXPIRED), for the logs. */
  problem: string | null;
  /** The end of its validity (ISO): a connection made with it lives no longer. */
  validTo: string;
}
/** Why a credential that was sent identifies no one; a wrong token and an unknown one both read as invalid. */
export type CredentialRefusal = 'missing' | 'malformed' | 'expired' | 'revoked' | 'invalid';
