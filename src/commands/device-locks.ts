import { KeyedLock } from './keyed-lock.js';

/**
 * One lock per device shared by everything that decides from a device's read models
 * (ingestion, heartbeats, the offline sweep, updates and deletion, queueing commands, rule
 * alerts naming the device), so two of them never decide from the same stale state. Not
 * reentrant: nothing holding a device's lock may wait for it again. Delivery of pending
 * commands takes the key `commands:<id>`, apart from these.
 */
export class DeviceLocks extends KeyedLock {}
