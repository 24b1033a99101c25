import type { ErrorRequestHandler, RequestHandler } from 'express';
import { DomainError, type DomainErrorCode } from '../domain/errors.js';

const statusOf: Record<DomainErrorCode | 'invalid_json' | 'unsupported_media_type' | 'internal' | 'rule_conflict', number> = {
  validation_failed: 400,
  invalid_json: 400,
  unauthenticated: 401,
  invalid_credentials: 401,
  forbidden: 403,
  quota_exceeded: 403,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  rule_conflict: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  service_unavailable: 503,
};

export type ErrorCode = keyof typeof statusOf;
export const errorCodes = Object.keys(statusOf) as [ErrorCode, ...ErrorCode[]];

export const httpStatusOf = (code: ErrorCode): number => statusOf[code];

export class HttpError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface BodyParserError {
  type?: string;
  status?: number;
}

const isBodyParserError = (error: unknown): error is Error & BodyParserError =>
  error instanceof Error && typeof (error as BodyParserError).type === 'string' && typeof (error as BodyParserError).status === 'number';

/** The one place where failures become HTTP answers; nothing internal reaches the client. */
export const errorHandler: ErrorRequestHandler = (error: unknown, req, res, _next) => {
  const { code, message, details, retryAfter } = describe(error);
  if (code === 'internal') req.log.error({ err: error }, 'unexpected error');
  else req.log.debug({ code, message }, 'request refused');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
  res.status(statusOf[code]).json({ error: { code, message, details, request_id: req.requestId } });
};

function describe(error: unknown): { code: ErrorCode; message: string; details: unknown[]; retryAfter?: number } {
  if (error instanceof DomainError) {
    return { code: error.code, message: error.message, details: error.details, ...(error.retryAfterSeconds !== undefined ? { retryAfter: error.retryAfterSeconds } : {}) };
  }
  if (error instanceof HttpError) return { code: error.code, message: error.message, details: [] };
  if (isBodyParserError(error)) {
    if (error.type === 'entity.parse.failed') return { code: 'invalid_json', message: 'the body is not valid JSON', details: [] };
    if (error.type === 'entity.too.large') return { code: 'payload_too_large', message: 'the body is larger than 1 MiB', details: [] };
    if (error.type === 'encoding.unsupported' || error.type === 'charset.unsupported') {
      return { code: 'unsupported_media_type', message: 'the body must be UTF-8 JSON', details: [] };
    }
    if ((error.status ?? 500) < 500) return { code: 'validation_failed', message: 'the body could not be read', details: [] };
  }
  // zlib and brotli errors, passed on by the body parser with status 400: no JSON can be read.
  if (error instanceof Error && typeof (error as { errno?: unknown }).errno === 'number' && (error as BodyParserError).status === 400) {
    return { code: 'invalid_json', message: 'the body could not be decompressed (Content-Encoding)', details: [] };
  }
  if (error instanceof URIError || (error instanceof Error && (error as BodyParserError).status === 400)) {
    return { code: 'validation_failed', message: 'the URL is malformed', details: [] };
  }
  return { code: 'internal', message: 'internal error', details: [] };
}

export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(new DomainError('not_found', `no route ${req.method} ${req.path}`));
};

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)/i;

/**
 * A body must be UTF-8 JSON (the contract); bodiless requests (logout, cancel) need no content type.
 * Other charsets are refused rather than decoded: the body checks read the raw bytes as UTF-8.
 */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  const hasBody = Number(req.header('content-length') ?? 0) > 0 || req.header('transfer-encoding') !== undefined;
  if (hasBody && !req.is('application/json')) {
    next(new HttpError('unsupported_media_type', 'the body must be application/json'));
    return;
  }
  const charset = CHARSET.exec(req.header('content-type') ?? '')?.[1]?.toLowerCase();
  if (hasBody && charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    next(new HttpError('unsupported_media_type', 'the body must be UTF-8 JSON'));
    return;
  }
  next();
};
