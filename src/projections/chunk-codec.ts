/**
 * The bytes of a raw-reading chunk: one sensor's readings within one hour, as columns of small
 * integers. Times are milliseconds into the hour, stored as the change of their step (a sensor
 * read each second costs a byte a reading); positions as steps from the previous one; values,
 * when they all have at most six decimals, as steps of their scaled integers (a random walk of
 * a sensor with two decimals: one or two bytes), otherwise as 8-byte doubles. Units and quality,
 * nearly always the same within a chunk, are listed once and indexed only when they differ.
 *
 * Layout: a format byte, then count, scale (RAW_DOUBLES when none), units, qualities, then the
 * columns times, positions, unit indexes (when more than one unit), quality indexes (likewise),
 * values. Every integer a LEB128 varint, signed ones zigzagged; strings UTF-8 with their byte
 * length. Format DEFLATED: the same after the format byte, deflated. Merged chunks (a closed
 * hour) are deflated: their regular steps shrink about five times more (3.2 -> 0.7 bytes a
 * reading); a live batch's few readings are not, so ingestion pays no deflate.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decimalsOf } from '../domain/decimal-scale.js';

export interface CodecReading {
  /** Milliseconds into the chunk's hour. */
  offset: number;
  /** Position relative to the chunk's key. */
  seq: number;
  value: number;
  unit: string | null;
  qualityScore: number;
  qualityReasons: string[];
}

const PLAIN = 1;
const DEFLATED = 2;
const RAW_DOUBLES = 255;

class Writer {
  private bytes = Buffer.allocUnsafe(256);
  length = 0;

  private room(more: number): void {
    if (this.length + more <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + more));
    this.bytes.copy(grown, 0, 0, this.length);
    this.bytes = grown;
  }

  /** A non-negative integer up to 2^53, seven bits a byte. */
  uint(n: number): void {
    this.room(8);
    while (n >= 0x80) {
      this.bytes[this.length++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.bytes[this.length++] = n;
  }

  /** A signed integer, zigzagged so small magnitudes of either sign stay short. */
  int(n: number): void {
    this.uint(n < 0 ? -2 * n - 1 : 2 * n);
  }

  text(s: string): void {
    const encoded = Buffer.from(s, 'utf8');
    this.uint(encoded.length);
    this.room(encoded.length);
    encoded.copy(this.bytes, this.length);
    this.length += encoded.length;
  }

  double(v: number): void {
    this.room(8);
    this.length = this.bytes.writeDoubleLE(v, this.length);
  }

  done(): Buffer {
    return Buffer.from(this.bytes.subarray(0, this.length));
  }
}

class Reader {
  private at = 0;
  constructor(private readonly bytes: Buffer) {}

  uint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      const byte = this.bytes[this.at++];
      if (byte === undefined) throw new Error('reading chunk: ends inside a number');
      n += (byte & 0x7f) * scale;
      if (byte < 0x80) return n;
      scale *= 0x80;
    }
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  }

  text(): string {
    const length = this.uint();
    const s = this.bytes.toString('utf8', this.at, this.at + length);
    this.at += length;
    return s;
  }

  double(): number {
    const v = this.bytes.readDoubleLE(this.at);
    this.at += 8;
    return v;
  }
}

const scaleOf = (readings: readonly CodecReading[]): number => decimalsOf(readings.map((r) => r.value)) ?? RAW_DOUBLES;

/** Distinct values of a column (compared by `key`), and each reading's index into them. */
function dictionary<T>(items: readonly T[], key: (item: T) => string): { values: T[]; indexes: number[] } {
  const seen = new Map<string, number>();
  const values: T[] = [];
  const indexes = items.map((item) => {
    const k = key(item);
    let index = seen.get(k);
    if (index === undefined) seen.set(k, (index = values.push(item) - 1));
    return index;
  });
  return { values, indexes };
}

export function encodeReadings(readings: readonly CodecReading[], deflate = false): Buffer {
  const plain = encodeBody(readings);
  if (!deflate) return plain;
  const deflated = deflateRawSync(plain.subarray(1));
  return deflated.length + 1 < plain.length ? Buffer.concat([Buffer.of(DEFLATED), deflated]) : plain;
}

function encodeBody(readings: readonly CodecReading[]): Buffer {
  const out = new Writer();
  out.uint(PLAIN);
  out.uint(readings.length);
  const scale = scaleOf(readings);
  out.uint(scale);
  const units = dictionary(readings.map((r) => r.unit), (unit) => (unit === null ? '' : `=${unit}`));
  out.uint(units.values.length);
  for (const unit of units.values) {
    out.uint(unit === null ? 0 : 1);
    if (unit !== null) out.text(unit);
  }
  const qualities = dictionary(readings.map((r): [number, string[]] => [r.qualityScore, r.qualityReasons]), (q) => JSON.stringify(q));
  out.uint(qualities.values.length);
  for (const [score, reasons] of qualities.values) {
    out.uint(score);
    out.uint(reasons.length);
    for (const reason of reasons) out.text(reason);
  }
  let previous = 0;
  let step = 0;
  for (const { offset } of readings) {
    out.int(offset - previous - step);
    step = offset - previous;
    previous = offset;
  }
  previous = 0;
  for (const { seq } of readings) {
    out.int(seq - previous);
    previous = seq;
  }
  if (units.values.length > 1) for (const index of units.indexes) out.uint(index);
  if (qualities.values.length > 1) for (const index of qualities.indexes) out.uint(index);
  if (scale === RAW_DOUBLES) for (const { value } of readings) out.double(value);
  else {
    const factor = 10 ** scale;
    previous = 0;
    for (const { value } of readings) {
      const scaled = Math.round(value * factor);
      out.int(scaled - previous);
      previous = scaled;
    }
  }
  return out.done();
}

export function decodeReadings(stored: Buffer): CodecReading[] {
  const format = stored[0];
  if (format !== PLAIN && format !== DEFLATED) throw new Error(`reading chunk: unknown format ${format}`);
  const input = new Reader(format === PLAIN ? stored : inflateRawSync(stored.subarray(1)));
  if (format === PLAIN) input.uint();
  const count = input.uint();
  const scale = input.uint();
  const units = Array.from({ length: input.uint() }, () => (input.uint() === 0 ? null : input.text()));
  const qualities = Array.from({ length: input.uint() }, (): [number, string[]] => {
    const score = input.uint();
    return [score, Array.from({ length: input.uint() }, () => input.text())];
  });
  const offsets: number[] = new Array(count);
  let previous = 0;
  let step = 0;
  for (let i = 0; i < count; i++) {
    step += input.int();
    previous += step;
    offsets[i] = previous;
  }
  const seqs: number[] = new Array(count);
  previous = 0;
  for (let i = 0; i < count; i++) seqs[i] = previous += input.int();
  const unitOf = units.length > 1 ? Array.from({ length: count }, () => input.uint()) : null;
  const qualityOf = qualities.length > 1 ? Array.from({ length: count }, () => input.uint()) : null;
  const factor = 10 ** scale;
  previous = 0;
  const readings: CodecReading[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const value = scale === RAW_DOUBLES ? input.double() : (previous += input.int()) / factor;
    const [qualityScore, qualityReasons] = qualities[qualityOf ? qualityOf[i]! : 0]!;
    readings[i] = { offset: offsets[i]!, seq: seqs[i]!, value, unit: units[unitOf ? unitOf[i]! : 0]!, qualityScore, qualityReasons: [...qualityReasons] };
  }
  return readings;
}
