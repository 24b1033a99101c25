import { z } from 'zod';
import { issueDetails, strictObject } from './strict.js';
import type { DomainEvent, StoredReading } from './events.js';
import { minNotAboveMax, rangeFields, type SensorStats } from './quality.js';

/** One sensor's entry of `configuration.thresholds` of a device: `{temperature: {min, max, hysteresis?, severity?}}`. */
const thresholdFields = {
  min: z.number().optional(),
  max: z.number().optional(),
  hysteresis: z.number().nonnegative().optional(),
  severity: z.enum(['info', 'warning', 'critical']).optional(),
};
export const thresholdSchema = z.object(thresholdFields);
export type Threshold = z.infer<typeof thresholdSchema>;

/**
 * Thresholds as a request may give them. Stricter than what ingestion reads (thresholdsOf), so
 * a configuration stored before a rule was added keeps its alerts.
 */
export const thresholdsInput = z.record(
  z.string(),
  // Every value would breach one bound or the other: an alert that never clears, surely a typo.
  // Unknown fields refused: `maximum` read as no bound at all would switch the alert off.
  strictObject(thresholdFields).refine((t) => t.min === undefined || t.max === undefined || t.min <= t.max, { message: 'min is above max', path: ['min'] }),
);

/** Plausible ranges as a request may give them (`configuration.ranges`): both bounds, nothing else. */
const rangesInput = z.record(z.string(), strictObject(rangeFields).refine(minNotAboveMax, { message: 'min is above max', path: ['min'] }));

/** The thresholds ingestion can read from a stored configuration: a sensor's entry that cannot be read drops that sensor alone. */
export function thresholdsOf(stored: unknown): Map<string, Threshold> {
  const thresholds = new Map<string, Threshold>();
  if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) return thresholds;
  for (const [sensorType, entry] of Object.entries(stored)) {
    const parsed = thresholdSchema.safeParse(entry);
    if (parsed.success) thresholds.set(sensorType, parsed.data);
  }
  return thresholds;
}

export const DEFAULT_ANOMALY_Z = 4;

/**
 * A configuration is the device's own and stored as given, but the server reads three of its
 * keys: `thresholds`, `ranges` and `anomaly_z`. Refused when those make no sense, or a typo would switch
 * a device's alerts off without a word.
 */
export function configurationProblems(configuration: Record<string, unknown>): Array<{ path: PropertyKey[]; message: string }> {
  const problems: Array<{ path: PropertyKey[]; message: string }> = [];
  // null, as absent, means none.
  if (configuration.thresholds !== undefined && configuration.thresholds !== null) {
    const parsed = thresholdsInput.safeParse(configuration.thresholds);
    if (!parsed.success) problems.push(...parsed.error.issues.flatMap((issue) => issueDetails(issue, ['thresholds', ...issue.path])));
  }
  if (configuration.ranges !== undefined && configuration.ranges !== null) {
    const parsed = rangesInput.safeParse(configuration.ranges);
    if (!parsed.success) problems.push(...parsed.error.issues.flatMap((issue) => issueDetails(issue, ['ranges', ...issue.path])));
  }
  const anomalyZ = configuration.anomaly_z;
  if (anomalyZ !== undefined && !(typeof anomalyZ === 'number' && anomalyZ > 0)) problems.push({ path: ['anomaly_z'], message: 'must be a positive number' });
  return problems;
}
const MIN_SAMPLES_FOR_ANOMALY = 10;

/** An open (active or acknowledged) alert, keyed by `${kind}:${sensor_type}`. */
export interface OpenAlert {
  alert_id: string;
}

export interface AlertInput {
  device_id: string;
  user_id: string;
  reading: StoredReading;
  threshold: Threshold | undefined;
  statsBefore: SensorStats;
  anomalyZ: number;
  open: Map<string, OpenAlert>;
  newId: () => string;
}

/**
 * The alert events one reading causes: raise (or repeat an open one) when a threshold is crossed or the
 * value is anomalous, clear once it is back inside the band narrowed by the hysteresis.
 * Mutates `open` so the next reading of the same submission sees the outcome.
 */
export function alertsForReading(input: AlertInput): DomainEvent[] {
  return [...thresholdAlerts(input), ...anomalyAlerts(input)];
}

function thresholdAlerts({ device_id, user_id, reading, threshold, open, newId }: AlertInput): DomainEvent[] {
  if (!threshold || (threshold.min === undefined && threshold.max === undefined)) return [];
  const key = `threshold:${reading.sensor_type}`;
  const { min, max } = threshold;
  const value = reading.value;
  const breach = max !== undefined && value > max ? `above max ${max}` : min !== undefined && value < min ? `below min ${min}` : null;
  if (breach) {
    const message = `${reading.sensor_type} ${value} ${breach}`;
    return [raise(open, key, { device_id, user_id, kind: 'threshold', sensor_type: reading.sensor_type, severity: threshold.severity ?? 'warning', message, value }, newId)];
  }
  const alert = open.get(key);
  if (!alert) return [];
  const band = threshold.hysteresis ?? defaultHysteresis(threshold);
  const inside = (max === undefined || value <= max - band) && (min === undefined || value >= min + band);
  if (!inside) return [];
  open.delete(key);
  return [{ type: 'alert.cleared', data: { alert_id: alert.alert_id, reason: 'back_in_range' } }];
}

function anomalyAlerts({ device_id, user_id, reading, statsBefore, anomalyZ, open, newId }: AlertInput): DomainEvent[] {
  if (statsBefore.count < MIN_SAMPLES_FOR_ANOMALY || statsBefore.variance <= 0) return [];
  const z = Math.abs(reading.value - statsBefore.mean) / Math.sqrt(statsBefore.variance);
  const key = `anomaly:${reading.sensor_type}`;
  if (z > anomalyZ) {
    const message = `${reading.sensor_type} ${reading.value} is ${z.toFixed(1)} deviations from its recent mean ${statsBefore.mean.toFixed(2)}`;
    return [raise(open, key, { device_id, user_id, kind: 'anomaly', sensor_type: reading.sensor_type, severity: 'warning', message, value: reading.value }, newId)];
  }
  const alert = open.get(key);
  if (!alert || z > anomalyZ / 2) return [];
  open.delete(key);
  return [{ type: 'alert.cleared', data: { alert_id: alert.alert_id, reason: 'back_in_range' } }];
}

/** 5% of the band when both bounds are set, else 1% of the bound, so a hovering value does not flap. */
function defaultHysteresis({ min, max }: Threshold): number {
  if (min !== undefined && max !== undefined) return Math.abs(max - min) * 0.05;
  return Math.abs(max ?? min ?? 0) * 0.01;
}

function raise(
  open: Map<string, OpenAlert>,
  key: string,
  alert: { device_id: string; user_id: string; kind: 'threshold' | 'anomaly'; sensor_type: string; severity: 'info' | 'warning' | 'critical'; message: string; value: number },
  newId: () => string,
): DomainEvent {
  const existing = open.get(key);
  if (existing) {
    const { device_id, sensor_type, severity, message, value } = alert;
    return { type: 'alert.repeated', data: { alert_id: existing.alert_id, device_id, sensor_type, severity, message, value } };
  }
  const alert_id = newId();
  open.set(key, { alert_id });
  return { type: 'alert.raised', data: { alert_id, rule_id: null, ...alert } };
}
