export { startCheckpointer, type Checkpointer } from './checkpointer.js';
export { openDatabase, type SqliteDatabase } from './database.js';
export { DataDirInUse, claimDataDir } from './data-dir-lock.js';
export { ConcurrencyError } from './errors.js';
export { chainHash, GENESIS_HASH } from './hash.js';
export { SqliteEventLog, STREAM_SCAN_WINDOW } from './sqlite-event-log.js';
export type * from './types.js';
export { SEALED_PREFIX, SecretBox, SealError, isSealed, openWith, sealWith, secretBoxFor } from './secret-box.js';
export { ERASED, PersonalKeys, personalKeysIn } from './personal-keys.js';
