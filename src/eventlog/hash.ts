import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

/** The fields a hash covers, exactly as stored, so any changed byte changes the hash. */
export interface HashedFields {
  position: number;
  stream_id: string;
  version: number;
  type: string;
  data: string;
  metadata: string;
  recorded_at: string;
}

/**
 * SHA-256 over the previous hash and each field, every text length-prefixed so no edit can
 * move bytes from one field to another and keep the hash.
 */
export function chainHash(previousHash: string, row: HashedFields): string {
  const field = (text: string) => `${text.length}:${text}`;
  return createHash('sha256')
    .update(`${previousHash}|${row.position}|${field(row.stream_id)}|${row.version}|${field(row.type)}|${field(row.data)}|${field(row.metadata)}|${field(row.recorded_at)}`)
    .digest('hex');
}
