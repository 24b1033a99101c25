import { Duplex } from 'node:stream';

/**
 * Follows MQTT's framing (a type byte, a variable-length remaining length, the rest) across
 * chunks, so a packet announced larger than the limit is refused from its header, before any
 * of it is buffered: the broker's parser would otherwise hold up to 256 MB for one packet.
 */
export class FrameGuard {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private remaining = 0;

  constructor(private readonly maxPacketBytes: number) {}

  /** False once a packet over the limit (or a malformed length) is seen. */
  feed(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        i++;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
      } else if (this.state === 'length') {
        const byte = chunk[i++]!;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        if (this.length > this.maxPacketBytes) return false;
        if (byte & 0x80) {
          if (this.multiplier > 128 ** 3) return false; // at most four length bytes
          continue;
        }
        this.remaining = this.length;
        this.state = this.remaining === 0 ? 'type' : 'body';
      } else {
        const step = Math.min(this.remaining, chunk.length - i);
        i += step;
        this.remaining -= step;
        if (this.remaining === 0) this.state = 'type';
      }
    }
    return true;
  }
}

/** A connection whose incoming bytes pass a FrameGuard; an oversized packet destroys it. */
const READ_BATCH_BYTES = 16 * 1024;

export class GuardedConnection extends Duplex {
  constructor(
    readonly inner: Duplex,
    guard: FrameGuard,
    onRefused: () => void,
  ) {
    // The broker parses everything buffered here as one batch and reads again only once the batch
    // is handled: this bound (Node 20's default, explicit since Node 22 raised it to 64 KiB) and
    // one socket chunk are all a flooding client can have in flight.
    super({ allowHalfOpen: false, readableHighWaterMark: READ_BATCH_BYTES });
    inner.on('data', (chunk: Buffer) => {
      if (!guard.feed(chunk)) {
        onRefused();
        this.destroy();
        return;
      }
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (error) => this.destroy(error));
    inner.on('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }

  /** Bytes waiting to go out, here and in the connection beneath. */
  get pendingBytes(): number {
    return this.writableLength + this.inner.writableLength;
  }
}
