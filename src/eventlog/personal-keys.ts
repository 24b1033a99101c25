import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SealError, isSealed, openWith, sealWith, type SecretBox } from './secret-box.js';

const SAFE_ID = /^[A-Za-z0-9-]{1,64}$/;

/** What a personal field reads as once its owner was erased: the key that opened it is gone. */
export const ERASED = '[erased]';

/**
 * One key per user for their personal data (username, email), kept outside the log: a file per
 * user under DATA_DIR/user-keys, wrapped by the server's key. Erasing a user destroys the file,
 * and every copy of their sealed fields (the log, its exports, backups of it) becomes unreadable
 * while the log's bytes and hash chain stay as they were.
 */
export class PersonalKeys {
  /** dir null: no keys at all (a read model built without a data directory). */
  constructor(
    private readonly dir: string | null,
    private readonly box: SecretBox,
  ) {}

  /** Makes the user's key; sealing their fields needs it. */
  create(userId: string): void {
    const file = this.fileOf(userId);
    mkdirSync(this.dir!, { recursive: true, mode: 0o700 });
    writeFileSync(file, sealWith(this.box.wrapKey, randomBytes(32).toString('base64'), `user key ${userId}`), { mode: 0o600 });
  }

  seal(userId: string, plain: string, field: string): string {
    const key = this.keyOf(userId);
    if (!key) throw new Error(`no personal key for user ${userId}`);
    return sealWith(key, plain, field);
  }

  /** A sealed field opened, a plain one (written before) as it is; ERASED once the key is gone. */
  open(userId: string, value: string, field: string): string {
    if (!isSealed(value)) return value;
    const key = this.keyOf(userId);
    return key ? openWith(key, value, field) : ERASED;
  }

  /** Overwritten, flushed, then removed: the key does not linger in the file's old blocks. */
  destroy(userId: string): void {
    const file = this.fileOf(userId);
    if (!existsSync(file)) return;
    const fd = openSync(file, 'r+');
    try {
      writeSync(fd, Buffer.alloc(readFileSync(file).length));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    rmSync(file, { force: true });
  }

  private keyOf(userId: string): Buffer | null {
    if (this.dir === null) return null;
    const file = this.fileOf(userId);
    if (!existsSync(file)) return null;
    try {
      return Buffer.from(openWith(this.box.wrapKey, readFileSync(file, 'utf8'), `user key ${userId}`), 'base64');
    } catch (error) {
      // Overwritten by an erasure under way: as good as gone.
      if (error instanceof SealError) return null;
      throw error;
    }
  }

  private fileOf(userId: string): string {
    if (this.dir === null) throw new Error('personal keys need a data directory');
    if (!SAFE_ID.test(userId)) throw new Error('not a user id');
    return join(this.dir, userId);
  }
}

export const personalKeysIn = (dataDir: string, box: SecretBox): PersonalKeys => new PersonalKeys(join(dataDir, 'user-keys'), box);
