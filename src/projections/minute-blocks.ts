/**
 * Minute rollups packed a quarter of an hour to a row. A device sending once a minute fills a
 * minute bucket per reading, so one row per minute costs a B-tree write per reading, as many as
 * the raw rows; fifteen minutes to a row make a rebuild or a burst of submissions write one row
 * where it wrote fifteen. A quarter, not an hour: a full block (15 x 48 bytes) stays inside its
 * B-tree page, where an hour's would spill onto an overflow page on every rewrite.
 *
 * In memory a block is dense (count, sum, min, max, sum of squares per minute); stored, it keeps
 * only the minutes that have readings, little-endian, so a sparse device stores little.
 */
import type { BucketTotals } from './schema.js';

export const BLOCK_MINUTES = 15;
const FIELDS = 5;
const STORED_FIELDS = FIELDS + 1;

export type MinuteBlock = Float64Array;

const twoDigits = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/** The block holding a normalised ISO time: its quarter of the hour. */
export function blockStartOf(ts: string): string {
  const minute = Number(ts.slice(14, 16));
  return `${ts.slice(0, 14)}${twoDigits(minute - (minute % BLOCK_MINUTES))}:00.000Z`;
}

/** The start of a block's last minute. */
export const lastMinuteOf = (blockStart: string): string => `${blockStart.slice(0, 14)}${twoDigits(Number(blockStart.slice(14, 16)) + BLOCK_MINUTES - 1)}:00.000Z`;

/** How many minutes with readings stored blocks of this many bytes hold. */
export const minutesStoredIn = (bytes: number): number => bytes / (STORED_FIELDS * 8);

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

export function encodeBlock(block: MinuteBlock): Buffer {
  let used = 0;
  for (let slot = 0; slot < BLOCK_MINUTES; slot++) if (block[slot * FIELDS]! > 0) used += 1;
  const stored = Buffer.allocUnsafe(used * STORED_FIELDS * 8);
  let offset = 0;
  for (let slot = 0; slot < BLOCK_MINUTES; slot++) {
    if (block[slot * FIELDS]! === 0) continue;
    offset = stored.writeDoubleLE(slot, offset);
    for (let field = 0; field < FIELDS; field++) offset = stored.writeDoubleLE(block[slot * FIELDS + field]!, offset);
  }
  return stored;
}

export function decodeBlock(stored: Uint8Array): MinuteBlock {
  const block = emptyBlock();
  const bytes = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  for (let offset = 0; offset + STORED_FIELDS * 8 <= bytes.length; offset += STORED_FIELDS * 8) {
    const at = bytes.readDoubleLE(offset) * FIELDS;
    for (let field = 0; field < FIELDS; field++) block[at + field] = bytes.readDoubleLE(offset + (field + 1) * 8);
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
