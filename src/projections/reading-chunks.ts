/**
 * Raw readings stored a chunk to a row: the readings one projection batch adds for one device,
 * sensor and hour, as JSON. A row per reading made raw storage a B-tree write per reading, the
 * largest cost of a rebuild and of batched ingestion; a chunk costs one write for a submission
 * of a hundred readings, or for an hour of a device during a rebuild. Each chunk keeps its count
 * and first and last times, so counting a range decodes only the chunks its ends cut through.
 */

import type { LatestReadingsTable, ReadingChunksTable } from './schema.js';

/** One reading gathered for a chunk; the device, sensor and hour are those of the chunk's row. */
export type ChunkReading = [ts: string, seq: number, value: number, unit: string | null, qualityScore: number, qualityReasons: string[]];

/**
 * As stored: the time without its hour, the position relative to the chunk's key. Shorter rows
 * stay inside their B-tree page: a rebuild's chunk of twenty readings spilled onto an overflow
 * page written full times fully.
 */
type StoredReading = [minuteAndSecond: string, seqAfterFirst: number, value: number, unit: string | null, qualityScore: number, qualityReasons: string[]];

/** A chunk's row, as the queries read it. */
export type StoredChunk = Pick<ReadingChunksTable, 'sensor_type' | 'hour' | 'seq' | 'readings'>;

/** A raw reading as the queries answer it: a sensor's newest reading has the same fields, less its reasons. */
export type RawRow = Omit<LatestReadingsTable, 'device_id'> & { quality_reasons: string[] };

/** The hour bucket of a normalised ISO time, as chunk keys hold it. */
export const hourOf = (ts: string): string => `${ts.slice(0, 13)}:00:00.000Z`;

/** The first reading's position is the chunk's key (`seq`); the readings share the hour `hourOf` gives. */
export const encodeChunk = (firstSeq: number, readings: readonly ChunkReading[]): string => JSON.stringify(readings.map((reading) => storedForm(firstSeq, reading)));

const storedForm = (firstSeq: number, [ts, seq, value, unit, qualityScore, qualityReasons]: ChunkReading): StoredReading => [
  ts.slice(HOUR_PREFIX),
  seq - firstSeq,
  value,
  unit,
  qualityScore,
  qualityReasons,
];

/**
 * At most this much JSON a chunk when merged: with its key and counts a row then stays within the
 * quarter page a WITHOUT ROWID row keeps in place (30 readings a row spilled onto overflow pages
 * and took 2.7 times the space of 24).
 */
export const COMPACTED_BYTES = 800;

/** An hour's chunks merged: their readings in log order, cut into chunks of at most COMPACTED_BYTES. */
export function compacted(chunks: readonly StoredChunk[]): ChunkReading[][] {
  const readings = inLogOrder(chunks).map((r): ChunkReading => [r.ts, r.seq, r.value, r.unit, r.quality_score, r.quality_reasons]);
  return chunksWithin(COMPACTED_BYTES, readings);
}

/** The readings of chunks in the order the log recorded them, however the chunks were cut. */
export const inLogOrder = (chunks: readonly StoredChunk[]): RawRow[] => chunks.flatMap(decodeChunk).sort((a, b) => a.seq - b.seq);

/** Readings cut, in their order, into chunks whose stored JSON stays within `maxBytes` of UTF-8 (a longer reading alone in its own). */
export function chunksWithin(maxBytes: number, readings: readonly ChunkReading[]): ChunkReading[][] {
  const chunks: ChunkReading[][] = [];
  let current: ChunkReading[] = [];
  let bytes = 1; // '[', then each reading and its ',' or ']'
  for (const reading of readings) {
    // Measured against the current chunk's first position: as a new chunk's first it is no longer.
    const length = Buffer.byteLength(JSON.stringify(storedForm((current[0] ?? reading)[1], reading))) + 1;
    if (current.length > 0 && bytes + length > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 1;
    }
    current.push(reading);
    bytes += length;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

const HOUR_PREFIX = 'YYYY-MM-DDTHH:'.length;

export function decodeChunk(chunk: StoredChunk): RawRow[] {
  const prefix = chunk.hour.slice(0, HOUR_PREFIX);
  return (JSON.parse(chunk.readings) as StoredReading[]).map(([minuteAndSecond, seqAfterFirst, value, unit, qualityScore, qualityReasons]) => ({
    sensor_type: chunk.sensor_type,
    ts: prefix + minuteAndSecond,
    seq: chunk.seq + seqAfterFirst,
    value,
    unit,
    quality_score: qualityScore,
    quality_reasons: qualityReasons,
  }));
}

/** Time order, then log order for readings of the same instant. */
export const byTimeThenSeq = (a: RawRow, b: RawRow): number => (a.ts === b.ts ? a.seq - b.seq : a.ts < b.ts ? -1 : 1);
