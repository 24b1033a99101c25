import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DomainEvent, RecordedEvent } from '../../src/domain/events.js';
import { SecretBox, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { deviceHealthProjection } from '../../src/projections/device-health.js';
import { devicesProjection } from '../../src/projections/devices.js';
import { Sql } from '../../src/projections/index.js';
import type { Projection } from '../../src/projections/projection.js';
import { telemetryProjection } from '../../src/projections/telemetry.js';

const secrets = new SecretBox('a test key of at least thirty-two characters');

const USER = '00000000-0000-4000-8000-000000000001';
const DEVICES = ['00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b'] as const;
const START = Date.parse('2026-03-01T10:00:00.000Z');

const registered = (deviceId: string): DomainEvent => ({
  type: 'device.registered',
  data: { device_id: deviceId, user_id: USER, token_hash: deviceId, name: deviceId, device_type: 'sensor', description: null, ip_address: null, mac_address: null, group_id: null, configuration: {}, firmware_version: '1.0.0' },
});

/** What devices do between registration and deletion, in any order. */
const deviceEvent = (deviceId: string): fc.Arbitrary<DomainEvent> =>
  fc.oneof(
    fc.record({ score: fc.integer({ min: 0, max: 100 }), status: fc.constantFrom(null, { battery: 'ok' }, { status: 'error' }) }).map(
      ({ score, status }): DomainEvent => ({
        type: 'readings.recorded',
        data: { device_id: deviceId, device_status: status, readings: [{ sensor_type: 't', value: 1, unit: null, timestamp: new Date(START).toISOString(), quality_score: score, quality_reasons: [] }] },
      }),
    ),
    fc.record({ firmware: fc.constantFrom(null, '2.0.0'), metrics: fc.constantFrom(null, { uptime_s: 5 }), status: fc.constantFrom(null, { rssi: -60 }) }).map(
      ({ firmware, metrics, status }): DomainEvent => ({ type: 'device.heartbeat', data: { device_id: deviceId, device_status: status, firmware_version: firmware, metrics } }),
    ),
    fc.constant<DomainEvent>({ type: 'device.came_online', data: { device_id: deviceId } }),
    fc.constant<DomainEvent>({ type: 'device.went_offline', data: { device_id: deviceId, last_seen: null } }),
    fc.constantFrom<DomainEvent>({ type: 'device.state_reported', data: { device_id: deviceId, state: 'maintenance' } }, { type: 'device.state_reported', data: { device_id: deviceId, state: null } }),
  );

const recorded = (events: readonly DomainEvent[]): RecordedEvent[] =>
  events.map((event, index) => ({ ...event, position: index + 1, stream_id: 's', version: index + 1, metadata: {}, recorded_at: new Date(START + index * 1000).toISOString(), hash: '' }) as RecordedEvent);

/** The projections' tables in a fresh in-memory database. */
function readModelsOf(projections: readonly Projection[]): { db: SqliteDatabase; sql: Sql } {
  const db = openDatabase(':memory:');
  for (const projection of projections) db.exec(projection.ddl);
  return { db, sql: new Sql(db) };
}

/** Every row of the projections' tables, each table in its key's order; the database is closed. */
function rowsAndClose(db: SqliteDatabase, projections: readonly Projection[]): Record<string, unknown[]> {
  const tables = projections.flatMap((projection) => projection.tables);
  const rows = Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM "${table}" ORDER BY 1, 2, 3`).all()]));
  db.close();
  return rows;
}

/** The rows of the read models after the events, applied in batches that end after the given indexes. */
function rowsAfter(events: readonly RecordedEvent[], batchEnds: ReadonlySet<number>): Record<string, unknown[]> {
  const projections: Projection[] = [devicesProjection(secrets), deviceHealthProjection()];
  const { db, sql } = readModelsOf(projections);
  for (const projection of projections) {
    events.forEach((event, index) => {
      projection.apply(sql, event);
      if (batchEnds.has(index) || index === events.length - 1) projection.afterBatch?.(sql);
    });
  }
  return rowsAndClose(db, projections);
}

describe('devices and device health written once per batch', () => {
  it('property: any history, cut into batches anywhere, leaves the rows that one event per batch leaves', () => {
    const history = fc.array(fc.oneof(deviceEvent(DEVICES[0]), deviceEvent(DEVICES[1])), { minLength: 1, maxLength: 40 });
    fc.assert(
      fc.property(history, fc.boolean(), fc.array(fc.nat({ max: 45 }), { maxLength: 6 }), (middle, deleteOne, cuts) => {
        const events = recorded([registered(DEVICES[0]), registered(DEVICES[1]), ...middle, ...(deleteOne ? [{ type: 'device.decommissioned', data: { device_id: DEVICES[0], user_id: USER } } as DomainEvent] : [])]);
        const everyEvent = new Set(events.map((_, index) => index));
        expect(rowsAfter(events, new Set(cuts))).toEqual(rowsAfter(events, everyEvent));
      }),
      { numRuns: 300 },
    );
  });

  it('given readings and then a heartbeat of the same device in one batch, then last_seen is the heartbeat time', () => {
    const events = recorded([registered(DEVICES[0]), { type: 'readings.recorded', data: { device_id: DEVICES[0], device_status: null, readings: [] } }, { type: 'device.heartbeat', data: { device_id: DEVICES[0], device_status: null, firmware_version: null, metrics: null } }]);
    const rows = rowsAfter(events, new Set()) as { devices: Array<{ last_seen: string }> };
    expect(rows.devices[0]!.last_seen).toBe(events[2]!.recorded_at);
  });
});

/** The read models that keep memory between events (the devices' last-heard times are rewritten whole by a rerun). */
const remembering = (): Projection[] => [devicesProjection(secrets), deviceHealthProjection(), telemetryProjection(30)];

/**
 * The rows after the events in the given batches, applied as the runner applies them (each
 * projection over the whole batch, then its afterBatch, in one transaction). With `failure`, the
 * projection of that index throws at that event once, the transaction rolls back, every
 * projection is told to forget, and the batch runs again.
 */
function rowsThroughRunner(events: readonly RecordedEvent[], batchEnds: ReadonlySet<number>, failure?: { projection: number; event: number }): Record<string, unknown[]> {
  const projections = remembering();
  const { db, sql } = readModelsOf(projections);
  let pendingFailure = failure;
  const applyBatch = (batch: readonly RecordedEvent[], from: number) =>
    db.transaction(() => {
      projections.forEach((projection, p) => {
        batch.forEach((event, offset) => {
          if (pendingFailure?.projection === p && pendingFailure.event === from + offset) {
            pendingFailure = undefined;
            throw new Error('database or disk is full');
          }
          projection.apply(sql, event);
        });
        projection.afterBatch?.(sql);
      });
    })();
  let from = 0;
  events.forEach((_, index) => {
    if (!batchEnds.has(index) && index !== events.length - 1) return;
    const batch = events.slice(from, index + 1);
    try {
      applyBatch(batch, from);
    } catch {
      for (const projection of projections) projection.forget?.();
      applyBatch(batch, from);
    }
    from = index + 1;
  });
  return rowsAndClose(db, projections);
}

describe('a batch that rolled back runs again from the tables, not from what it left in memory', () => {
  it('property: any history, batches and failing event, then the rows equal those of a run without the failure', () => {
    const history = fc.array(fc.oneof(deviceEvent(DEVICES[0]), deviceEvent(DEVICES[1])), { minLength: 1, maxLength: 30 });
    fc.assert(
      fc.property(history, fc.array(fc.nat({ max: 33 }), { maxLength: 5 }), fc.nat({ max: 2 }), fc.nat({ max: 33 }), (middle, cuts, projection, at) => {
        const events = recorded([registered(DEVICES[0]), registered(DEVICES[1]), ...middle]);
        const batchEnds = new Set(cuts);
        const failure = { projection, event: at % events.length };
        expect(rowsThroughRunner(events, batchEnds, failure)).toEqual(rowsThroughRunner(events, batchEnds));
      }),
      { numRuns: 200 },
    );
  });
});
