import { describe, expect, it } from 'vitest';
import type { DomainEvent, StoredReading } from '../../src/domain/events.js';
import { emptyStats, type SensorStats } from '../../src/domain/quality.js';
import { DEFAULT_ANOMALY_Z, alertsForReading, thresholdsInput, thresholdsOf, type OpenAlert, type Threshold } from '../../src/domain/thresholds.js';

const reading = (value: number, sensor_type = 'temperature'): StoredReading => ({
  sensor_type,
  value,
  unit: null,
  timestamp: '2026-03-01T12:00:00.000Z',
  quality_score: 100,
  quality_reasons: [],
});

/** 30 samples of 20 ± 0.1. */
const steady: SensorStats = { count: 30, mean: 20, variance: 0.01, last_timestamp: '2026-03-01T11:59:00.000Z' };

interface Given {
  threshold?: Threshold;
  stats?: SensorStats;
  open?: Array<[string, string]>;
  anomalyZ?: number;
}

/** given (threshold, stats, open alerts) / when (a reading) / then (the events and the open map). */
function given({ threshold, stats = emptyStats, open = [], anomalyZ = DEFAULT_ANOMALY_Z }: Given = {}) {
  const openAlerts = new Map<string, OpenAlert>(open.map(([key, alert_id]) => [key, { alert_id }]));
  let ids = 0;
  const newId = () => `alert-${++ids}`;
  return {
    open: openAlerts,
    idsIssued: () => ids,
    when: (value: number, sensor_type = 'temperature'): DomainEvent[] =>
      alertsForReading({ device_id: 'd1', user_id: 'u1', reading: reading(value, sensor_type), threshold, statsBefore: stats, anomalyZ, open: openAlerts, newId }),
  };
}

const raised = (data: Partial<Extract<DomainEvent, { type: 'alert.raised' }>['data']>) => expect.objectContaining({ type: 'alert.raised', data: expect.objectContaining(data) });
const repeated = (data: Partial<Extract<DomainEvent, { type: 'alert.repeated' }>['data']>) => expect.objectContaining({ type: 'alert.repeated', data: expect.objectContaining(data) });

describe('alertsForReading: thresholds', () => {
  const band = { min: 0, max: 30 };

  it('given no threshold, when any value arrives, then nothing is raised', () => {
    expect(given().when(1e6)).toEqual([]);
    expect(given({ threshold: {} }).when(1e6)).toEqual([]);
  });

  it('given max 30, when 35 arrives, then one threshold alert is raised (warning by default) and held open', () => {
    const g = given({ threshold: band });
    const events = g.when(35);
    expect(events).toEqual([
      {
        type: 'alert.raised',
        data: { alert_id: 'alert-1', rule_id: null, device_id: 'd1', user_id: 'u1', kind: 'threshold', sensor_type: 'temperature', severity: 'warning', message: expect.stringContaining('35') as string, value: 35 },
      },
    ]);
    expect(g.open.get('threshold:temperature')).toEqual({ alert_id: 'alert-1' });
  });

  it('given min 0, when -5 arrives, then an alert says it is below the minimum', () => {
    const [event] = given({ threshold: band }).when(-5);
    expect(event).toEqual(raised({ kind: 'threshold', value: -5, message: expect.stringMatching(/below/) as string }));
  });

  it('given a severity in the threshold, then the alert carries it', () => {
    expect(given({ threshold: { max: 30, severity: 'critical' } }).when(31)).toEqual([raised({ severity: 'critical' })]);
  });

  it('given an open alert, when the value breaches again, then that alert is repeated, not raised anew', () => {
    const g = given({ threshold: band, open: [['threshold:temperature', 'existing']] });
    expect(g.when(36)).toEqual([
      {
        type: 'alert.repeated',
        data: { alert_id: 'existing', device_id: 'd1', sensor_type: 'temperature', severity: 'warning', message: expect.stringContaining('36') as string, value: 36 },
      },
    ]);
    expect(g.idsIssued()).toBe(0);
    expect(g.open.get('threshold:temperature')).toEqual({ alert_id: 'existing' });
  });

  it('given two breaches in one submission, then the second repeats the alert the first raised', () => {
    const g = given({ threshold: band });
    const first = g.when(35);
    const second = g.when(36);
    expect(first).toEqual([raised({ alert_id: 'alert-1' })]);
    expect(second).toEqual([repeated({ alert_id: 'alert-1', value: 36 })]);
  });

  it('given the exact bound, then it is not a breach', () => {
    expect(given({ threshold: band }).when(30)).toEqual([]);
    expect(given({ threshold: band }).when(0)).toEqual([]);
  });

  it('given an open alert and the default hysteresis (5% of 0..30 = 1.5), when 29.9 arrives, then it stays open', () => {
    const g = given({ threshold: band, open: [['threshold:temperature', 'a1']] });
    expect(g.when(29.9)).toEqual([]);
    expect(g.when(28.6)).toEqual([]);
    expect(g.open.has('threshold:temperature')).toBe(true);
  });

  it('given an open alert, when the value is back past the band (28.5), then it clears as back_in_range', () => {
    const g = given({ threshold: band, open: [['threshold:temperature', 'a1']] });
    expect(g.when(28.5)).toEqual([{ type: 'alert.cleared', data: { alert_id: 'a1', reason: 'back_in_range' } }]);
    expect(g.open.has('threshold:temperature')).toBe(false);
  });

  it('given an open low alert, then it clears only at min + band', () => {
    const g = given({ threshold: band, open: [['threshold:temperature', 'a1']] });
    expect(g.when(1)).toEqual([]);
    expect(g.when(1.5)).toEqual([{ type: 'alert.cleared', data: { alert_id: 'a1', reason: 'back_in_range' } }]);
  });

  it('given an explicit hysteresis, then it replaces the default', () => {
    const g = given({ threshold: { ...band, hysteresis: 5 }, open: [['threshold:temperature', 'a1']] });
    expect(g.when(26)).toEqual([]);
    expect(g.when(25)).toEqual([{ type: 'alert.cleared', data: { alert_id: 'a1', reason: 'back_in_range' } }]);
  });

  it('given a zero hysteresis, then any in-range value clears', () => {
    expect(given({ threshold: { ...band, hysteresis: 0 }, open: [['threshold:temperature', 'a1']] }).when(30)).toEqual([
      { type: 'alert.cleared', data: { alert_id: 'a1', reason: 'back_in_range' } },
    ]);
  });

  it('given only a max (100), then the default hysteresis is 1% of it', () => {
    const g = given({ threshold: { max: 100 }, open: [['threshold:temperature', 'a1']] });
    expect(g.when(99.5)).toEqual([]);
    expect(g.when(99)).toEqual([{ type: 'alert.cleared', data: { alert_id: 'a1', reason: 'back_in_range' } }]);
  });

  it('given no open alert, when an in-range value arrives, then nothing happens', () => {
    expect(given({ threshold: band }).when(20)).toEqual([]);
  });

  it('given a threshold for another sensor type only, then the key is per sensor', () => {
    const g = given({ threshold: band, open: [['threshold:humidity', 'h1']] });
    expect(g.when(35)).toEqual([raised({ alert_id: 'alert-1' })]);
    expect(g.open.get('threshold:humidity')).toEqual({ alert_id: 'h1' });
  });

  it('validates the thresholds of a configuration', () => {
    expect(thresholdsInput.safeParse({ temperature: { min: 0, max: 30 } }).success).toBe(true);
    expect(thresholdsInput.safeParse({ temperature: { max: 'hot' } }).success).toBe(false);
    expect(thresholdsInput.safeParse({ temperature: { max: 30, hysteresis: -1 } }).success).toBe(false);
    expect(thresholdsInput.safeParse({ temperature: { max: 30, severity: 'apocalyptic' } }).success).toBe(false);
    expect(thresholdsInput.safeParse({ temperature: { min: 50, max: 10 } }).success).toBe(false);
  });

  it('given a stored configuration with one unreadable entry (stored before a rule was added, say), then ingestion keeps the other sensors\' thresholds', () => {
    const stored = { temperature: { min: 50, max: 10 }, humidity: { max: 'hot' }, pressure: { max: 1100 } };
    expect([...thresholdsOf(stored)]).toEqual([
      ['temperature', { min: 50, max: 10 }],
      ['pressure', { max: 1100 }],
    ]);
    expect(thresholdsOf(null).size).toBe(0);
    expect(thresholdsOf(['temperature']).size).toBe(0);
  });
});

describe('alertsForReading: anomalies', () => {
  it('given a steady history, when a value many deviations away arrives, then an anomaly alert is raised', () => {
    const g = given({ stats: steady });
    const events = g.when(100);
    expect(events).toEqual([raised({ kind: 'anomaly', sensor_type: 'temperature', value: 100, rule_id: null, alert_id: 'alert-1' })]);
    expect(g.open.get('anomaly:temperature')).toEqual({ alert_id: 'alert-1' });
  });

  it('given a steady history, when a value within the limit arrives, then nothing is raised', () => {
    // z = 0.3 / 0.1 = 3 < 4
    expect(given({ stats: steady }).when(20.3)).toEqual([]);
  });

  it('given a configured limit, then the z-score is compared with it', () => {
    // z = 0.5 / 0.1 = 5
    expect(given({ stats: steady, anomalyZ: 4 }).when(20.5)).toEqual([raised({ kind: 'anomaly' })]);
    expect(given({ stats: steady, anomalyZ: 6 }).when(20.5)).toEqual([]);
  });

  it('given fewer than 10 samples, then no anomaly is claimed', () => {
    expect(given({ stats: { ...steady, count: 9 } }).when(1000)).toEqual([]);
  });

  it('given no spread at all, then no anomaly is claimed (no division by zero)', () => {
    expect(given({ stats: { ...steady, variance: 0 } }).when(1000)).toEqual([]);
  });

  it('given an open anomaly, when the value is back within half the limit, then it clears', () => {
    const g = given({ stats: steady, open: [['anomaly:temperature', 'an1']] });
    expect(g.when(20.3)).toEqual([]); // z = 3 > 2: still open
    expect(g.when(20.1)).toEqual([{ type: 'alert.cleared', data: { alert_id: 'an1', reason: 'back_in_range' } }]);
    expect(g.open.has('anomaly:temperature')).toBe(false);
  });

  it('given a threshold and a steady history, when a value breaches both, then one event of each kind', () => {
    const events = given({ stats: steady, threshold: { max: 30 } }).when(100);
    expect(events).toHaveLength(2);
    expect(events).toEqual(expect.arrayContaining([raised({ kind: 'threshold', alert_id: 'alert-1' }), raised({ kind: 'anomaly', alert_id: 'alert-2' })]));
  });
});
