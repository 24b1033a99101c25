/**
 * Raw readings stored a chunk to a row: the readings one projection batch adds for one device,
 * sensor and hour, as JSON. A row per reading made raw storage a B-tree write per reading, the
 * largest cost of a rebuild and of batched ingestion; a chunk costs one write for a submission
 * of a hundred readings, or for an hour of a device during a rebuild. Each chunk keeps its count
 * and first and last times, so counting a range decodes only the chunks its ends cut through.
 */

/** One reading in a chunk; the device, sensor and hour are those of the chunk's row. */
export type ChunkReading = [ts: string, seq: number, value: number, unit: string | null, qualityScore: number, qualityReasons: string[]];

/** A raw reading as the queries answer it. */
export interface RawRow {
  sensor_type: string;
  ts: string;
  seq: number;
  value: number;
  unit: string | null;
  quality_score: number;
  quality_reasons: string[];
}

/** The hour bucket of a normalised ISO time, as chunk keys hold it. */
export const hourOf = (ts: string): string => `${ts.slice(0, 13)}:00:00.000Z`;

export const encodeChunk = (readings: readonly ChunkReading[]): string => JSON.stringify(readings);

export function decodeChunk(sensorType: string, stored: string): RawRow[] {
  return (JSON.parse(stored) as ChunkReading[]).map(([ts, seq, value, unit, qualityScore, qualityReasons]) => ({
    sensor_type: sensorType,
    ts,
    seq,
    value,
    unit,
    quality_score: qualityScore,
    quality_reasons: qualityReasons,
  }));
}

/** Time order, then log order for readings of the same instant. */
export const byTimeThenSeq = (a: RawRow, b: RawRow): number => (a.ts === b.ts ? a.seq - b.seq : a.ts < b.ts ? -1 : 1);
