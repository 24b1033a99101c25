import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ManualClock } from '../../src/domain/clock.js';
import { streams, type DomainEvent } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';

/** A log in a data directory of its own, with its archive directory beside the database as the server keeps them. */
export interface ArchivedLogHarness {
  dir: string;
  db: SqliteDatabase;
  log: SqliteEventLog;
  clock: ManualClock;
  /** As a restart after a crash: the same files opened again (recovery runs). */
  reopen(): void;
}

export function archivedLog(): ArchivedLogHarness {
  const dir = mkdtempSync(join(tmpdir(), 'archive-'));
  const clock = new ManualClock('2026-01-01T00:00:00.000Z');
  const open = () => openDatabase(join(dir, 'iot.db'));
  const harness: ArchivedLogHarness = {
    dir,
    db: open(),
    clock,
    log: undefined as unknown as SqliteEventLog,
    reopen() {
      harness.log.close();
      harness.db.close();
      harness.db = open();
      harness.log = new SqliteEventLog(harness.db, clock, join(dir, 'archive'));
    },
  };
  harness.log = new SqliteEventLog(harness.db, clock, join(dir, 'archive'));
  return harness;
}

const DEVICES = ['d1', 'd2', 'd3'];

/** One append of a fleet's log: mostly readings and heartbeats (archived), some events that stay live. */
export type FleetEntry = { kind: 'readings' | 'heartbeat' | 'configuration' | 'group'; device: number; value: number; advanceMs: number };

export const fleetEntry: fc.Arbitrary<FleetEntry> = fc.record({
  kind: fc.constantFrom('readings', 'readings', 'readings', 'heartbeat', 'configuration', 'group'),
  device: fc.nat({ max: DEVICES.length - 1 }),
  value: fc.integer({ min: -100, max: 100 }),
  advanceMs: fc.nat({ max: 6 * 3600 * 1000 }),
});

function eventOf(entry: FleetEntry, now: string): { streamId: string; event: DomainEvent } {
  const device = DEVICES[entry.device]!;
  switch (entry.kind) {
    case 'readings':
      return { streamId: streams.telemetry(device), event: { type: 'readings.recorded', data: { device_id: device, readings: [{ sensor_type: 'temperature', value: entry.value, unit: 'C', timestamp: now, quality_score: 100, quality_reasons: [] }], device_status: entry.value > 90 ? { battery: entry.value } : null } } };
    case 'heartbeat':
      return { streamId: streams.telemetry(device), event: { type: 'device.heartbeat', data: { device_id: device, device_status: null, firmware_version: `1.${entry.value}`, metrics: null } } };
    case 'configuration':
      return { streamId: streams.telemetry(device), event: { type: 'device.configuration_reported', data: { device_id: device, configuration: { rate: entry.value }, source: 'heartbeat' } } };
    case 'group':
      return { streamId: streams.group(`g${entry.value}`), event: { type: 'group.deleted', data: { group_id: `g${entry.value}`, user_id: 'u1' } } };
  }
}

/** Appends the entries in order, the clock moved before each. */
export async function appendFleet(harness: ArchivedLogHarness, entries: readonly FleetEntry[]): Promise<void> {
  for (const entry of entries) {
    harness.clock.advance(entry.advanceMs);
    const { streamId, event } = eventOf(entry, harness.clock.now().toISOString());
    await harness.log.append([{ streamId, expectedVersion: 'any', events: [event], metadata: { actor_type: 'device', actor_id: DEVICES[entry.device]! } }]);
  }
}

/** Everything a reader can ask of the log, archived or not, for comparing before and after a cut. */
export async function everythingRead(log: SqliteEventLog, until: string) {
  const all = await log.readAll({ afterPosition: 0, limit: 1_000_000 });
  const withoutAnchors = all.filter((event) => !event.type.startsWith('log.'));
  const streamIds = [...new Set(withoutAnchors.map((event) => event.stream_id))].sort();
  return {
    events: withoutAnchors,
    streams: await Promise.all(streamIds.map((id) => log.readStream(id, { until }))),
    versions: await Promise.all(streamIds.map((id) => log.streamVersion(id))),
    last: await Promise.all(streamIds.map((id) => log.lastInStream(id, until))),
    lastFirmware: await Promise.all(DEVICES.map((d) => log.lastInStream(streams.telemetry(d), until, { types: ['device.heartbeat'], field: 'firmware_version' }))),
    lastStatus: await Promise.all(DEVICES.map((d) => log.lastInStream(streams.telemetry(d), until, { types: ['readings.recorded', 'device.heartbeat'], field: 'device_status' }))),
    hashes: await Promise.all(withoutAnchors.map((event) => log.hashAt(event.position))),
    readingsCount: await log.countEvents({ afterPosition: 0, types: ['readings.recorded'] }),
    d1Count: await log.countEvents({ afterPosition: 0, streamIds: [streams.telemetry('d1')] }),
    // From the middle: a segment straddling the position is read, the ones after it counted.
    counts: await Promise.all(
      [0.25, 0.5, 0.75].map(async (share) => {
        const afterPosition = Math.floor(withoutAnchors.length * share);
        return [
          await log.countEvents({ afterPosition, streamIds: [streams.telemetry('d1'), streams.telemetry('d2'), streams.telemetry('d1')] }),
          await log.countEvents({ afterPosition, types: ['readings.recorded', 'group.deleted'] }),
          await log.countEvents({ afterPosition, types: ['device.heartbeat'], streamIds: [streams.telemetry('d3')] }),
          // The cuts' own anchors left out.
          (await log.countEvents({ afterPosition, since: '2026-01-01T06:00:00.000Z' })) - (await log.countEvents({ afterPosition, since: '2026-01-01T06:00:00.000Z', types: ['log.archived'] })),
        ];
      }),
    ),
    pageFromMiddle: await log.readAll({ afterPosition: Math.floor(withoutAnchors.length / 3), limit: 7, offset: 2, streamIds: [streams.telemetry('d2')] }),
  };
}
