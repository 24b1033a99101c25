/**
 * Minute rollups packed a quarter of an hour to a row. A device sending once a minute fills a
 * minute bucket per reading, so one row per minute costs a B-tree write per reading, as many as
 * the raw rows; fifteen minutes to a row make a rebuild or a burst of submissions write one row
 * where it wrote fifteen. A quarter, not an hour: a full block (15 x 41 bytes) stays inside its
 * B-tree page, where an hour's would spill onto an overflow page on every rewrite.
 *
 * In memory a block is dense (count, sum, min, max, sum of squares per minute). Stored, it keeps
 * only the minutes that have readings, each a byte (its slot, SINGLE set when it holds one
 * reading) and then, little-endian, the one reading's value or all five totals. A device
 * reporting once a minute, the common case, stores 9 bytes a minute instead of 48: its minute
 * rollups had taken almost the room of its raw readings, and writing them a fifth of a rebuild.
 */
import type { BucketTotals } from './schema.js';

export const BLOCK_MINUTES = 15;
const FIELDS = 5;
const SINGLE = 0x80;
const SINGLE_BYTES = 1 + 8;
const TOTALS_BYTES = 1 + FIELDS * 8;

export type MinuteBlock = Float64Array;

const twoDigits = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/** The block holding a normalised ISO time: its quarter of the hour. */
export function blockStartOf(ts: string): string {
  const minute = Number(ts.slice(14, 16));
  return `${ts.slice(0, 14)}${twoDigits(minute - (minute % BLOCK_MINUTES))}:00.000Z`;
}

/** The start of a block's last minute. */
export const lastMinuteOf = (blockStart: string): string => `${blockStart.slice(0, 14)}${twoDigits(Number(blockStart.slice(14, 16)) + BLOCK_MINUTES - 1)}:00.000Z`;

export const emptyBlock = (): MinuteBlock => new Float64Array(BLOCK_MINUTES * FIELDS);

/** Adds one reading to its minute, in the order readings are folded everywhere: count, sum, min, max, squares. */
export function addToBlock(block: MinuteBlock, ts: string, value: number): void {
  const at = (Number(ts.slice(14, 16)) % BLOCK_MINUTES) * FIELDS;
  if (block[at] === 0) {
    block[at + 2] = value;
    block[at + 3] = value;
  }
  block[at]! += 1;
  block[at + 1]! += value;
  block[at + 2] = Math.min(block[at + 2]!, value);
  block[at + 3] = Math.max(block[at + 3]!, value);
  block[at + 4]! += value * value;
}

/** How many of a block's minutes have readings. */
export function minutesUsed(block: MinuteBlock): number {
  let used = 0;
  for (let at = 0; at < block.length; at += FIELDS) if (block[at]! > 0) used += 1;
  return used;
}

export function encodeBlock(block: MinuteBlock): Buffer {
  let bytes = 0;
  for (let at = 0; at < block.length; at += FIELDS) if (block[at]! > 0) bytes += block[at] === 1 ? SINGLE_BYTES : TOTALS_BYTES;
  const stored = Buffer.allocUnsafe(bytes);
  let offset = 0;
  for (let slot = 0; slot < BLOCK_MINUTES; slot++) {
    const at = slot * FIELDS;
    if (block[at] === 0) continue;
    if (block[at] === 1) {
      offset = stored.writeUInt8(slot | SINGLE, offset);
      offset = stored.writeDoubleLE(block[at + 2]!, offset);
      continue;
    }
    offset = stored.writeUInt8(slot, offset);
    for (let field = 0; field < FIELDS; field++) offset = stored.writeDoubleLE(block[at + field]!, offset);
  }
  return stored;
}

export function decodeBlock(stored: Uint8Array): MinuteBlock {
  const block = emptyBlock();
  const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  for (let offset = 0; offset < bytes.length; ) {
    const tag = bytes.readUInt8(offset);
    const at = (tag & ~SINGLE) * FIELDS;
    if (tag & SINGLE) {
      // Refolded from empty, as addToBlock folded it: 0 + value keeps a -0 reading's sum at +0.
      const value = bytes.readDoubleLE(offset + 1);
      block.set([1, 0 + value, value, value, 0 + value * value], at);
      offset += SINGLE_BYTES;
      continue;
    }
    for (let field = 0; field < FIELDS; field++) block[at + field] = bytes.readDoubleLE(offset + 1 + field * 8);
    offset += TOTALS_BYTES;
  }
  return block;
}

/** The minutes of a stored block that have readings, oldest first. */
export function minutesOf(blockStart: string, stored: Uint8Array): BucketTotals[] {
  const block = decodeBlock(stored);
  const first = Number(blockStart.slice(14, 16));
  const minutes: BucketTotals[] = [];
  for (let slot = 0; slot < BLOCK_MINUTES; slot++) {
    const at = slot * FIELDS;
    if (block[at] === 0) continue;
    minutes.push({
      bucket_start: `${blockStart.slice(0, 14)}${twoDigits(first + slot)}:00.000Z`,
      count: block[at]!,
      sum: block[at + 1]!,
      min: block[at + 2]!,
      max: block[at + 3]!,
      sum_sq: block[at + 4]!,
    });
  }
  return minutes;
}
