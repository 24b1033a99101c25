import type { Logger } from 'pino';
import type { CredentialRefusal } from '../commands/credentials.js';
import type { Principal } from '../commands/services.js';

declare global {
  namespace Express {
    interface Request {
      requestId: string;
      log: Logger;
      principal?: Principal;
      /** Why the client certificate, the request's only credential, was refused. */
      refusedCertificate?: string;
      /** Why the credential sent identifies no one; absent when none was sent. */
      credentialRefused?: CredentialRefusal;
    }
  }
}

export {};
