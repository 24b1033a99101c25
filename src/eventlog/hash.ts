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

export function chainHash(previousHash: string, row: HashedFields): string {
  return createHash('sha256')
    .update(previousHash)
    .update(JSON.stringify([row.position, row.stream_id, row.version, row.type, row.data, row.metadata, row.recorded_at]))
    .digest('hex');
}
