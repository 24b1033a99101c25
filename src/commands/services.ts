import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Clock } from '../domain/clock.js';
import type { ApiKeyScope } from '../domain/events.js';
import type { PersonalKeys, SecretBox } from '../eventlog/index.js';
import type { AppendOptions, AppendRequest, AppendResult, EventLog } from '../eventlog/index.js';
import type { ProjectionRunner } from '../projections/runner.js';
import type { Sql } from '../projections/sql.js';
import type { DeviceLocks } from './device-locks.js';
import type { KeyedLock } from './keyed-lock.js';

/** What every command handler and query works with, wired once in main.ts. */
export interface Services {
  config: Config;
  clock: Clock;
  log: EventLog;
  runner: ProjectionRunner;
  sql: Sql;
  logger: Logger;
  newId: () => string;
  /** Seals credential material in events and keys the digests credentials are looked up by. */
  secrets: SecretBox;
  /** Each user's key for their personal data; erasure destroys it. */
  personal: PersonalKeys;
  /**
   * devices: everything deciding from one device's read models (ingestion, updates, the
   * offline sweep); owners: a user's group hierarchy.
   */
  locks: { devices: DeviceLocks; owners: KeyedLock };
}

/**
 * Appends to the log unless the read models are stalled: stored then, an event would not show
 * (its writer told 503 only afterwards, a client retrying it storing it twice), and timers and
 * rules reading the unchanged read models would act again. Every writer stores through here.
 */
export async function storeEvents(services: Pick<Services, 'log' | 'runner'>, requests: readonly AppendRequest[], options?: AppendOptions): Promise<AppendResult> {
  services.runner.refuseWhileStalled();
  return services.log.append(requests, options);
}

/**
 * Before deciding from the read models: once they include every stored event. Refused at once
 * while they are stalled (nothing decided could be stored), rather than waiting for the retry.
 */
export async function readModelsCaughtUp(services: Pick<Services, 'log' | 'runner'>): Promise<void> {
  services.runner.refuseWhileStalled();
  await services.runner.waitFor(services.log.headPosition());
}

export type Principal =
  | { kind: 'user'; userId: string; role: 'admin' | 'user'; sessionId: string | null; apiKey?: { id: string; scope: ApiKeyScope } }
  /** `certificate`: the client certificate it authenticated with (mutual TLS), if that is how. */
  | { kind: 'device'; deviceId: string; userId: string; certificate?: { fingerprint: string; expiresAt: string } };

export interface RequestContext {
  principal: Principal;
  requestId: string;
}

export const isAdmin = (principal: Principal): boolean => principal.kind === 'user' && principal.role === 'admin';

/** The user whose resources a request may touch; null means every user's (an admin). */
export const ownerScope = (principal: Principal): string | null => (isAdmin(principal) ? null : principal.userId);

/** A user's own resource, or any for an admin; devices own no resources but themselves. */
export const mayAccess = (principal: Principal, ownerId: string): boolean => principal.kind === 'user' && (isAdmin(principal) || principal.userId === ownerId);
