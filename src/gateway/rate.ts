import type { Clock } from '../domain/clock.js';
import { rateLimited } from '../domain/errors.js';

const WINDOW_MS = 60_000;

/**
 * Fixed one-minute windows per key: a credential, a device, or a client address. One instance
 * serves HTTP, the device socket and MQTT, so a device has one budget however it connects.
 */
export class RateWindows {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limitPerMinute: number | null,
    private readonly clock: Clock,
  ) {}

  /** Counts one request of `key`; throws rate_limited (with the seconds to wait) past the limit. */
  admit(key: string): void {
    if (this.limitPerMinute === null) return;
    const now = this.clock.now().getTime();
    let window = this.windows.get(key);
    if (!window || now - window.start >= WINDOW_MS) {
      if (this.windows.size > 100_000) this.pruneExpired(now);
      window = { start: now, count: 0 };
      this.windows.set(key, window);
    }
    window.count += 1;
    if (window.count > this.limitPerMinute) throw rateLimited('too many requests; slow down', Math.ceil((window.start + WINDOW_MS - now) / 1000));
  }

  private pruneExpired(now: number): void {
    for (const [key, window] of this.windows) if (now - window.start >= WINDOW_MS) this.windows.delete(key);
  }
}

/** A device's key: the same whichever transport carries it. */
export const deviceRateKey = (deviceId: string): string => `device:${deviceId}`;
