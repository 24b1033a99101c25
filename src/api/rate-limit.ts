import type { RequestHandler } from 'express';
import type { Clock } from '../domain/clock.js';
import { rateLimited } from '../domain/errors.js';
import { hashSecret } from '../commands/credentials.js';
import { credentialOf } from './auth.js';

const WINDOW_MS = 60_000;

/** Fixed one-minute windows per credential (or client address when anonymous). */
export function rateLimit(limitPerMinute: number, clock: Clock): RequestHandler {
  const windows = new Map<string, { start: number; count: number }>();
  return (req, _res, next) => {
    const now = clock.now().getTime();
    // Hashed here, not at authentication: only a server that limits rates pays for it.
    const credential = req.principal ? credentialOf(req) : undefined;
    const key = credential ? hashSecret(credential) : `address:${req.ip}`;
    let window = windows.get(key);
    if (!window || now - window.start >= WINDOW_MS) {
      if (windows.size > 100_000) pruneExpired(windows, now);
      window = { start: now, count: 0 };
      windows.set(key, window);
    }
    window.count += 1;
    if (window.count > limitPerMinute) {
      next(rateLimited('too many requests; slow down', Math.ceil((window.start + WINDOW_MS - now) / 1000)));
      return;
    }
    next();
  };
}

function pruneExpired(windows: Map<string, { start: number }>, now: number): void {
  for (const [key, window] of windows) if (now - window.start >= WINDOW_MS) windows.delete(key);
}
