import type { Clock } from '../domain/clock.js';
import { rateLimited } from '../domain/errors.js';

const WINDOW_MS = 15 * 60 * 1000;

/** Failures allowed within the window: few per account, more per client address (several people may share one). */
export const LOGIN_FAILURE_LIMITS = { account: 5, address: 100 } as const;

export interface ThrottleKey {
  key: string;
  limit: number;
}

/**
 * Counts failed logins per account and per client address within a window; past the limit,
 * further attempts answer 429 until the window ends, whether or not the password is right.
 */
export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly clock: Clock) {}

  check(keys: readonly ThrottleKey[]): void {
    const now = this.clock.now().getTime();
    for (const { key, limit } of keys) {
      const recent = this.recent(key, now);
      if (recent.length >= limit) {
        const retryAfter = Math.ceil((recent[0]! + WINDOW_MS - now) / 1000);
        throw rateLimited('too many failed login attempts; try again later', retryAfter);
      }
    }
  }

  fail(keys: readonly ThrottleKey[]): void {
    const now = this.clock.now().getTime();
    for (const { key } of keys) this.failures.set(key, [...this.recent(key, now), now]);
  }

  succeed(key: string): void {
    this.failures.delete(key);
  }

  private recent(key: string, now: number): number[] {
    const kept = (this.failures.get(key) ?? []).filter((at) => at > now - WINDOW_MS);
    if (kept.length === 0) this.failures.delete(key);
    return kept;
  }
}
