import type { RequestHandler } from 'express';
import { hashSecret } from '../commands/credentials.js';
import { deviceRateKey, type RateWindows } from '../gateway/index.js';
import { credentialOf } from './auth.js';

/** Per credential (a device by its id, shared with its socket and MQTT messages), or client address when anonymous. */
export function rateLimit(windows: RateWindows): RequestHandler {
  return (req, _res, next) => {
    const principal = req.principal;
    // Hashed here, not at authentication: only a server that limits rates pays for it.
    const credential = principal && principal.kind === 'user' ? credentialOf(req) : undefined;
    const key = principal?.kind === 'device' ? deviceRateKey(principal.deviceId) : credential ? hashSecret(credential) : `address:${req.ip}`;
    try {
      windows.admit(key);
      next();
    } catch (error) {
      next(error);
    }
  };
}
