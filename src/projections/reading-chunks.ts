/**
 * Raw readings stored a chunk to a row: the readings one projection batch adds for one device,
 * sensor and hour, encoded as columns (chunk-codec.ts: about 3 bytes a reading of a sensor read
 * each second, against 30 as JSON). A row per reading made raw storage a B-tree write per reading, the
 * largest cost of a rebuild and of batched ingestion; a chunk costs one write for a submission
 * of a hundred readings, or for an hour of a device during a rebuild. Each chunk keeps its count
 * and first and last times, so counting a range decodes only the chunks its ends cut through.
 */

import { decodeReadings, encodeReadings, type CodecReading } from './chunk-codec.js';
import type { LatestReadingsTable, ReadingChunksTable } from './schema.js';

/** One reading gathered for a chunk; the device, sensor and hour are those of the chunk's row. */
export type ChunkReading = [ts: string, seq: number, value: number, unit: string | null, qualityScore: number, qualityReasons: string[]];

/** A chunk's row, as the queries read it. */
export type StoredChunk = Pick<ReadingChunksTable, 'sensor_type' | 'hour' | 'seq' | 'readings'>;

/** A raw reading as the queries answer it: a sensor's newest reading has the same fields, less its reasons. */
export type RawRow = Omit<LatestReadingsTable, 'device_id'> & { quality_reasons: string[] };

/** The hour bucket of a normalised ISO time, as chunk keys hold it. */
export const hourOf = (ts: string): string => `${ts.slice(0, 13)}:00:00.000Z`;

/** The first reading's position is the chunk's key (`seq`); the readings share the hour `hourOf` gives. */
export const encodeChunk = (firstSeq: number, readings: readonly ChunkReading[], deflate = false): Buffer =>
  encodeReadings(
    readings.map((reading) => codecForm(firstSeq, reading)),
    deflate,
  );

const codecForm = (firstSeq: number, [ts, seq, value, unit, qualityScore, qualityReasons]: ChunkReading): CodecReading => ({
  offset: offsetInHour(ts),
  seq: seq - firstSeq,
  value,
  unit,
  qualityScore,
  qualityReasons,
});

const digitsAt = (ts: string, at: number, count: number): number => {
  let n = 0;
  for (let i = at; i < at + count; i++) n = n * 10 + ts.charCodeAt(i) - 48;
  return n;
};

/** Milliseconds into its hour of a normalised ISO time ('YYYY-MM-DDTHH:mm:ss.sssZ'), read off its digits. */
const offsetInHour = (ts: string): number => digitsAt(ts, 14, 2) * 60_000 + digitsAt(ts, 17, 2) * 1000 + digitsAt(ts, 20, 3);

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** 'mm:ss.sssZ' of milliseconds into an hour. */
const minuteAndSecond = (offset: number): string =>
  `${pad(Math.floor(offset / 60_000), 2)}:${pad(Math.floor(offset / 1000) % 60, 2)}.${pad(offset % 1000, 3)}Z`;

/** An hour's chunks merged: their readings in log order, cut into deflated chunks within COMPACTED_BYTES, each with its bytes. */
export function compacted(chunks: readonly StoredChunk[]): EncodedChunk[] {
  const readings = inLogOrder(chunks).map((r): ChunkReading => [r.ts, r.seq, r.value, r.unit, r.quality_score, r.quality_reasons]);
  return cutEncoded(COMPACTED_BYTES, readings, true);
}

/** The readings of chunks in the order the log recorded them, however the chunks were cut. */
export const inLogOrder = (chunks: readonly StoredChunk[]): RawRow[] => chunks.flatMap(decodeChunk).sort((a, b) => a.seq - b.seq);

/**
 * At most this many bytes of readings a chunk when merged: with its key and counts a row then
 * stays within the quarter page a WITHOUT ROWID row keeps in place (as JSON, 30 readings a row
 * spilled onto overflow pages and took 2.7 times the space of 24; encoded, 800 bytes hold a few
 * hundred readings of a sensor read each second, deflated about a thousand).
 */
export const COMPACTED_BYTES = 800;
/** Deflated, 800 bytes could hold an hour: a raw page decodes whole chunks, so they stay this short. */
export const COMPACTED_READINGS = 1_000;

/** Readings cut, in their order, into chunks whose encoding stays within `maxBytes` (a reading too long alone in its own). */
export const chunksWithin = (maxBytes: number, readings: readonly ChunkReading[], deflate = false): ChunkReading[][] =>
  cutEncoded(maxBytes, readings, deflate).map((chunk) => chunk.readings);

/** A chunk's readings and their encoding (with its first position, `readings[0]`'s, as key). */
export interface EncodedChunk {
  readings: ChunkReading[];
  bytes: Buffer;
}

/**
 * A reading's size depends on its neighbours, so chunks are sized from the average of all of them
 * encoded together (which is the one chunk when they fit, the common case), then checked by
 * encoding each, and cut shorter when over.
 */
function cutEncoded(maxBytes: number, readings: readonly ChunkReading[], deflate: boolean): EncodedChunk[] {
  if (readings.length === 0) return [];
  const whole = encodeChunk(readings[0]![1], readings, deflate);
  if (whole.length <= maxBytes && readings.length <= COMPACTED_READINGS) return [{ readings: [...readings], bytes: whole }];
  const perReading = whole.length / readings.length;
  const chunks: EncodedChunk[] = [];
  for (let from = 0; from < readings.length; ) {
    let take = Math.max(1, Math.min(readings.length - from, COMPACTED_READINGS, Math.floor(maxBytes / perReading)));
    let bytes = encodeChunk(readings[from]![1], readings.slice(from, from + take), deflate);
    while (take > 1 && bytes.length > maxBytes) {
      take = Math.floor(take * 0.9);
      bytes = encodeChunk(readings[from]![1], readings.slice(from, from + take), deflate);
    }
    chunks.push({ readings: readings.slice(from, from + take), bytes });
    from += take;
  }
  return chunks;
}

const HOUR_PREFIX = 'YYYY-MM-DDTHH:'.length;

export function decodeChunk(chunk: StoredChunk): RawRow[] {
  const prefix = chunk.hour.slice(0, HOUR_PREFIX);
  return decodeReadings(chunk.readings).map(({ offset, seq, value, unit, qualityScore, qualityReasons }) => ({
    sensor_type: chunk.sensor_type,
    ts: prefix + minuteAndSecond(offset),
    seq: chunk.seq + seq,
    value,
    unit,
    quality_score: qualityScore,
    quality_reasons: qualityReasons,
  }));
}

/** Time order, then log order for readings of the same instant. */
export const byTimeThenSeq = (a: RawRow, b: RawRow): number => (a.ts === b.ts ? a.seq - b.seq : a.ts < b.ts ? -1 : 1);
