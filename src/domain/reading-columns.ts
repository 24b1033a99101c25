import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decimalsOf } from './decimal-scale.js';

/**
 * How readings.recorded keeps its readings in the log: columns instead of an object per
 * reading. A submission of 50 readings took 6.7 KB as objects (every reading repeating its
 * sensor name, unit, ISO time and quality); as columns it takes about 400 bytes: each
 * (sensor, unit) pair once, times as millisecond steps, values as numbers (steps of scaled
 * integers when they allow), quality only where it is not the usual 100 with no reasons. From
 * DEFLATE_FROM_READINGS readings the columns are deflated (base64, so the stored data stays
 * JSON and the hash chain covers it as before).
 *
 * Pure and lossless for any readings the catalogue accepts: decode(encode(r)) equals r, order
 * included (a reading's position in its event is part of its identity in the read models).
 */

/** A reading as the catalogue defines it (kept structural here: events.ts imports this file). */
export interface ColumnReading {
  sensor_type: string;
  value: number;
  unit: string | null;
  timestamp: string;
  quality_score: number;
  quality_reasons: string[];
}

export interface ReadingColumns {
  /** Distinct [sensor_type, unit] pairs in the order first seen. */
  sensors: Array<[string, string | null]>;
  /**
   * Omitted when the readings come in rows of every sensor in order, each row sharing one time
   * (what a device sends): then `times` has one step per row. Otherwise the index into `sensors`
   * per reading, and `times` one step per reading.
   */
  sensor?: number[];
  /** The first time, in ms since the epoch. */
  start: number;
  /** Milliseconds from the previous time (the first step is from `start`, so 0); absent when `every` says them. */
  times?: number[];
  /** Every step the same (a device reading on a timer): that step, in place of `times`. */
  every?: number;
  /** The times as given, in place of start and steps, should any not survive a trip through milliseconds. */
  stamps?: string[];
  /**
   * The values; with `scale`, each one's step from the previous value of its sensor (or from 0),
   * in units of 10^-scale: a two-decimal random walk is a character or two a value, not six.
   */
  values: number[];
  scale?: number;
  /** [reading index, score, reasons] of each reading whose quality is not 100 with no reasons. */
  quality?: Array<[number, number, string[]]>;
}

/**
 * Submissions of this many readings or more are stored deflated: about 2 KB of columns, where
 * deflate saves more than base64 adds. Counted, not measured, so that the usual submission is
 * not serialised twice on the hot path.
 */
export const DEFLATE_FROM_READINGS = 250;

export type StoredColumns = { columns: ReadingColumns } | { deflated: string };

export function encodeColumns(readings: readonly ColumnReading[]): StoredColumns {
  const columns = toColumns(readings);
  if (readings.length < DEFLATE_FROM_READINGS) return { columns };
  return { deflated: deflateRawSync(JSON.stringify(columns)).toString('base64') };
}

export function decodeColumns(stored: StoredColumns): ColumnReading[] {
  const columns = 'columns' in stored ? stored.columns : (JSON.parse(inflateRawSync(Buffer.from(stored.deflated, 'base64')).toString('utf8')) as ReadingColumns);
  return fromColumns(columns);
}

/** Whether stored data holds columns (this form) rather than reading objects (the older forms). */
export const isStoredColumns = (data: Record<string, unknown>): boolean => 'columns' in data || 'deflated' in data;

export function toColumns(readings: readonly ColumnReading[]): ReadingColumns {
  const sensors: Array<[string, string | null]> = [];
  const sensor: number[] = new Array(readings.length);
  const values: number[] = new Array(readings.length);
  const quality: Array<[number, number, string[]]> = [];
  for (let i = 0; i < readings.length; i++) {
    const reading = readings[i]!;
    sensor[i] = sensorIndex(sensors, reading);
    values[i] = reading.value;
    if (reading.quality_score !== 100 || reading.quality_reasons.length > 0) quality.push([i, reading.quality_score, reading.quality_reasons]);
  }
  const qualityColumn = quality.length > 0 ? { quality } : {};
  const ms = millisecondsOf(readings);
  if (ms === null) return { sensors, sensor, start: 0, stamps: readings.map((r) => r.timestamp), values, ...qualityColumn };
  const rows = inRows(sensor, ms, sensors.length);
  const stepped = rows ? ms.filter((_, i) => i % sensors.length === 0) : ms;
  const times = stepped.map((t, i) => (i === 0 ? 0 : t - stepped[i - 1]!));
  return { sensors, ...(rows ? {} : { sensor }), start: stepped[0] ?? 0, ...timeSteps(times), ...valueSteps(values, sensor, sensors.length), ...qualityColumn };
}

/**
 * The index of a reading's (sensor, unit) pair, added when new. A submission names a handful of
 * sensors, so a scan from the one after the previous match (the next in a row) beats a map.
 */
function sensorIndex(sensors: Array<[string, string | null]>, reading: ColumnReading): number {
  for (let i = 0; i < sensors.length; i++) {
    const [type, unit] = sensors[i]!;
    if (type === reading.sensor_type && unit === reading.unit) return i;
  }
  return sensors.push([reading.sensor_type, reading.unit]) - 1;
}

function timeSteps(times: number[]): Pick<ReadingColumns, 'times' | 'every'> {
  const every = times[1];
  if (every === undefined) return { times };
  for (let i = 2; i < times.length; i++) if (times[i] !== every) return { times };
  return { every };
}

function valueSteps(values: number[], sensor: readonly number[], sensorCount: number): Pick<ReadingColumns, 'values' | 'scale'> {
  const scale = decimalsOf(values);
  if (scale === null) return { values };
  const factor = 10 ** scale;
  const last: number[] = new Array(sensorCount).fill(0);
  const steps: number[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const scaled = Math.round(values[i]! * factor);
    steps[i] = scaled - last[sensor[i]!]!;
    last[sensor[i]!] = scaled;
  }
  return { values: steps, scale };
}

/** The values again, from their steps when scaled. */
function valuesOf(columns: ReadingColumns, sensorOf: (i: number) => number): number[] {
  if (columns.scale === undefined) return columns.values;
  const factor = 10 ** columns.scale;
  const last = new Map<number, number>();
  return columns.values.map((step, i) => {
    const scaled = (last.get(sensorOf(i)) ?? 0) + step;
    last.set(sensorOf(i), scaled);
    return scaled / factor;
  });
}

/** Each reading's time in ms (parsed once per distinct time in a row), or null if one does not come back as the same text. */
function millisecondsOf(readings: readonly ColumnReading[]): number[] | null {
  const ms: number[] = new Array(readings.length);
  let text = '';
  let t = NaN;
  for (let i = 0; i < readings.length; i++) {
    const timestamp = readings[i]!.timestamp;
    if (timestamp !== text) {
      t = Date.parse(timestamp);
      if (!Number.isFinite(t) || new Date(t).toISOString() !== timestamp) return null;
      text = timestamp;
    }
    ms[i] = t;
  }
  return ms;
}

/** Whether readings are whole rows of sensors 0..k-1 in order, each row at one time. */
function inRows(sensor: readonly number[], ms: readonly number[], k: number): boolean {
  if (sensor.length % k !== 0) return false;
  return sensor.every((s, i) => s === i % k && ms[i] === ms[i - (i % k)]);
}

export function fromColumns(columns: ReadingColumns): ColumnReading[] {
  const k = columns.sensors.length;
  const sensorOf = columns.sensor ? (i: number) => columns.sensor![i]! : (i: number) => i % k;
  const stepOf = columns.sensor ? (i: number) => i : (i: number) => Math.floor(i / k);
  const times: string[] = columns.stamps ?? [];
  let t = columns.start;
  const steps = columns.times ?? Array.from({ length: columns.sensor ? columns.values.length : columns.values.length / k }, (_, i) => (i === 0 ? 0 : columns.every!));
  if (!columns.stamps) for (const step of steps) times.push(new Date((t += step)).toISOString());
  const readings = valuesOf(columns, sensorOf).map((value, i): ColumnReading => {
    const [sensor_type, unit] = columns.sensors[sensorOf(i)]!;
    return { sensor_type, value, unit, timestamp: times[stepOf(i)]!, quality_score: 100, quality_reasons: [] };
  });
  for (const [i, score, reasons] of columns.quality ?? []) {
    readings[i]!.quality_score = score;
    readings[i]!.quality_reasons = reasons;
  }
  return readings;
}
