import type { Logger } from 'pino';
import type { Principal } from '../commands/services.js';

declare global {
  namespace Express {
    interface Request {
      requestId: string;
      log: Logger;
      principal?: Principal;
      /** Why the client certificate, the request's only credential, was refused. */
      refusedCertificate?: string;
    }
  }
}

export {};
