import { storeEvents, type Services } from '../commands/services.js';
import { streams } from '../domain/events.js';
import { findDevice, onlineDevices } from '../projections/devices.js';

/** Missed heartbeats tolerated when a device states its heartbeat_interval. */
const MISSED_HEARTBEATS = 3;

/**
 * Marks devices offline once they have not been heard from for OFFLINE_AFTER_SECONDS
 * (shorter when their configuration states a heartbeat_interval). Works from the read
 * model's last_seen, so the deadline survives a restart; records one event per change.
 */
export class OfflineDetector {
  /** Devices holding an open socket count as heard from until they disconnect. */
  readonly connected = new Set<string>();
  /** Disconnecting starts the offline deadline, even for a device silent while connected. */
  private readonly disconnectedAt = new Map<string, number>();

  constructor(private readonly services: Services) {}

  deadlineMs(configuration: string): number {
    const interval = (JSON.parse(configuration) as { heartbeat_interval?: unknown }).heartbeat_interval;
    const fromInterval = typeof interval === 'number' && interval > 0 ? interval * MISSED_HEARTBEATS : Infinity;
    return Math.min(this.services.config.offlineAfterSeconds, fromInterval) * 1000;
  }

  disconnected(deviceId: string): void {
    this.connected.delete(deviceId);
    this.disconnectedAt.set(deviceId, this.services.clock.now().getTime());
  }

  private lastContact(device: { id: string; last_seen: string | null }): number {
    return Math.max(Date.parse(device.last_seen ?? '1970-01-01T00:00:00.000Z'), this.disconnectedAt.get(device.id) ?? 0);
  }

  /** Checks every online device once; returns how many went offline. */
  async sweep(): Promise<number> {
    const now = this.services.clock.now().getTime();
    const overdue = onlineDevices(this.services.sql).filter((d) => !this.connected.has(d.id) && now - this.lastContact(d) >= this.deadlineMs(d.configuration));
    let changed = 0;
    for (const candidate of overdue) {
      await this.services.locks.devices.run(candidate.id, async () => {
        const device = findDevice(this.services.sql, candidate.id);
        if (!device || device.connectivity !== 'online' || device.last_seen !== candidate.last_seen || this.connected.has(device.id)) return;
        const result = await storeEvents(this.services, [
          {
            streamId: streams.device(device.id),
            expectedVersion: 'stream_exists',
            events: [{ type: 'device.went_offline', data: { device_id: device.id, last_seen: device.last_seen } }],
            metadata: { actor_type: 'system' },
          },
        ]);
        await this.services.runner.waitFor(result.lastPosition);
        this.disconnectedAt.delete(device.id);
        changed += 1;
      });
    }
    return changed;
  }
}
