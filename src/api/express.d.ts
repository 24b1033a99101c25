import type { Logger } from 'pino';
import type { Principal } from '../commands/services.js';

declare global {
  namespace Express {
    interface Request {
      requestId: string;
      log: Logger;
      principal?: Principal;
      /** Which credential authenticated the request, for per-credential rate limits. */
      credentialKey?: string;
    }
  }
}

export {};
