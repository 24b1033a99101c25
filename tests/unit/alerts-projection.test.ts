import { describe, expect, it } from 'vitest';
import type { DomainEvent, EventOfType, RecordedEvent } from '../../src/domain/events.js';
import { openDatabase } from '../../src/eventlog/index.js';
import { alertsProjection, findAlert } from '../../src/projections/alerts.js';
import { Sql } from '../../src/projections/index.js';

const ALERT = '00000000-0000-4000-8000-0000000000a1';
const DEVICE = '00000000-0000-4000-8000-0000000000d1';
const USER = '00000000-0000-4000-8000-0000000000b1';
const START = Date.parse('2026-03-01T10:00:00.000Z');

const raised = (value: number): EventOfType<'alert.raised'> => ({
  type: 'alert.raised',
  data: { alert_id: ALERT, device_id: DEVICE, user_id: USER, rule_id: null, kind: 'threshold', sensor_type: 'temperature', severity: 'warning', message: `temperature ${value} above max 30`, value },
});
const repeated = (value: number, severity: 'warning' | 'critical' = 'warning'): EventOfType<'alert.repeated'> => ({
  type: 'alert.repeated',
  data: { alert_id: ALERT, device_id: DEVICE, sensor_type: 'temperature', severity, message: `temperature ${value} above max 30`, value },
});

/** The alert's row after the events, each recorded a second after the last. */
function alertAfter(events: readonly DomainEvent[]) {
  const sql = new Sql(openDatabase(':memory:'));
  sql.db.exec(alertsProjection.ddl);
  events.forEach((event, index) => {
    const recordedEvent = { ...event, position: index + 1, stream_id: `alert-${ALERT}`, version: index + 1, metadata: {}, recorded_at: new Date(START + index * 1000).toISOString(), hash: '' } as RecordedEvent;
    alertsProjection.apply(sql, recordedEvent);
  });
  return findAlert(sql, ALERT);
}

describe('alerts projection: repeats', () => {
  it('given a raised alert, when it is repeated, then the one alert counts it and shows the breach as it is now', () => {
    expect(alertAfter([raised(35), repeated(41, 'critical')])).toMatchObject({
      status: 'active',
      count: 2,
      last_value: 41,
      severity: 'critical',
      message: 'temperature 41 above max 30',
      raised_at: new Date(START).toISOString(),
      updated_at: new Date(START + 1000).toISOString(),
      version: 2,
    });
  });

  it('given a log from before alert.repeated (a repeat raised the open alert again), then it reads as the same alert', () => {
    expect(alertAfter([raised(35), raised(36), raised(37)])).toEqual(alertAfter([raised(35), repeated(36), repeated(37)]));
  });
});
