/** A stable machine-readable error kind; the API maps each to one HTTP status. */
export type DomainErrorCode =
  | 'validation_failed'
  /** A device payload or request body that is not JSON (edge-only, kept here so every transport answers it alike). */
  | 'invalid_json'
  | 'not_found'
  | 'forbidden'
  | 'quota_exceeded'
  | 'already_exists'
  | 'conflict'
  | 'precondition_failed'
  | 'unauthenticated'
  | 'invalid_credentials'
  | 'rate_limited'
  | 'payload_too_large'
  | 'service_unavailable'
  | 'rule_conflict';

export interface ErrorDetail {
  path: string;
  message: string;
  [extra: string]: string;
}

export class DomainError extends Error {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: ErrorDetail[] = [],
    /** For rate_limited: seconds until a retry can succeed. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (what: string): DomainError => new DomainError('not_found', `${what} not found`);
export const conflict = (message: string): DomainError => new DomainError('conflict', message);
export const invalid = (path: string, message: string): DomainError =>
  new DomainError('validation_failed', message, [{ path, message }]);
export const rateLimited = (message: string, retryAfterSeconds: number): DomainError =>
  new DomainError('rate_limited', message, [], Math.max(1, retryAfterSeconds));
