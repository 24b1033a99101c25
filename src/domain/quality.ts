import { z } from 'zod';

/**
 * Reading quality: a score from 100 down, with the reasons kept. Pure: the recent
 * statistics and the time of receipt come in as arguments.
 */
export interface SensorStats {
  count: number;
  mean: number;
  variance: number;
  last_timestamp: string | null;
}

export const emptyStats: SensorStats = { count: 0, mean: 0, variance: 0, last_timestamp: null };

/** Plausible physical ranges in the units such sensors usually report; a reading outside is very likely a fault, not a fact. */
export const plausibleRanges: Readonly<Record<string, readonly [number, number]>> = {
  temperature: [-90, 150],
  humidity: [0, 100],
  pressure: [300, 1100],
  battery: [0, 100],
  co2: [0, 10_000],
  light: [0, 200_000],
  voltage: [-1_000, 1_000],
  soil_moisture: [0, 100],
};

const STALE_AFTER_MS = 60 * 60 * 1000;
const JUMP_SIGMAS = 6;
const MIN_SAMPLES_FOR_JUMP = 5;
const MIN_ALPHA = 0.05;

export interface Quality {
  score: number;
  reasons: string[];
}

/** One sensor's entry of a device's `configuration.ranges`: its own plausible range, for a sensor reporting other units (bar, not hPa). */
export const rangeFields = { min: z.number(), max: z.number() };
export const minNotAboveMax = (r: { min: number; max: number }): boolean => r.min <= r.max;
export const rangeSchema = z.object(rangeFields).refine(minNotAboveMax, { message: 'min is above max', path: ['min'] });

/** A device's own ranges, by sensor type, from its stored configuration; an entry that cannot be read leaves that sensor's default. */
export type DeviceRanges = ReadonlyMap<string, readonly [number, number]>;

export function rangesOf(stored: unknown): DeviceRanges {
  const ranges = new Map<string, readonly [number, number]>();
  if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) return ranges;
  for (const [sensorType, entry] of Object.entries(stored)) {
    const parsed = rangeSchema.safeParse(entry);
    if (parsed.success) ranges.set(sensorType.toLowerCase(), [parsed.data.min, parsed.data.max]);
  }
  return ranges;
}

export function assessQuality(reading: { sensor_type: string; value: number; timestamp: string }, stats: SensorStats, receivedAt: Date, deviceRanges: DeviceRanges = new Map()): Quality {
  const reasons: Array<[string, number]> = [];
  const sensor = reading.sensor_type.toLowerCase();
  const range = deviceRanges.get(sensor) ?? plausibleRanges[sensor];
  if (range && (reading.value < range[0] || reading.value > range[1])) reasons.push(['out_of_range', 50]);
  if (stats.count >= MIN_SAMPLES_FOR_JUMP) {
    const spread = Math.max(Math.sqrt(stats.variance), Math.abs(stats.mean) * 0.01, 1e-6);
    if (Math.abs(reading.value - stats.mean) > JUMP_SIGMAS * spread) reasons.push(['jump', 30]);
  }
  if (receivedAt.getTime() - Date.parse(reading.timestamp) > STALE_AFTER_MS) reasons.push(['stale', 10]);
  if (stats.last_timestamp !== null && reading.timestamp < stats.last_timestamp) reasons.push(['out_of_order', 10]);
  const score = Math.max(0, 100 - reasons.reduce((sum, [, penalty]) => sum + penalty, 0));
  return { score, reasons: reasons.map(([reason]) => reason) };
}

/**
 * An exponentially weighted mean and variance: the plain mean while there are few samples,
 * then weighted toward recent values so the baseline follows slow drift.
 */
export function updateStats(stats: SensorStats, value: number, timestamp: string): SensorStats {
  const count = stats.count + 1;
  const alpha = Math.max(1 / count, MIN_ALPHA);
  const delta = value - stats.mean;
  const mean = stats.mean + alpha * delta;
  const variance = count === 1 ? 0 : (1 - alpha) * (stats.variance + alpha * delta * delta);
  const last_timestamp = stats.last_timestamp === null || timestamp > stats.last_timestamp ? timestamp : stats.last_timestamp;
  return { count, mean, variance, last_timestamp };
}
