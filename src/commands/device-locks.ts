import { KeyedLock } from './keyed-lock.js';

/**
 * One lock per device shared by everything that decides from a device's read models
 * (ingestion, heartbeats, the offline sweep), so two of them never decide from the same
 * stale state.
 */
export class DeviceLocks extends KeyedLock {}
