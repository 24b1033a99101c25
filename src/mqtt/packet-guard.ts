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

/**
 * Passes every chunk the stream receives through the guard as the stream pushes it to its
 * readers (a socket, a TLS socket, a WebSocket stream all push what they read); a packet over
 * the limit destroys the stream before the chunk is buffered. The stream itself goes to the
 * broker: a wrapping stream per connection would cost a second Duplex with its buffers and
 * listeners for each of thousands of mostly idle devices.
 */
export function guardFrames(stream: Duplex, guard: FrameGuard, onRefused: () => void): void {
  // Chunks read before the guard was put in place (none for a plain socket) are checked too.
  const buffered = (stream as { readableBuffer?: Iterable<unknown> }).readableBuffer ?? [];
  for (const chunk of stream.readableLength > 0 ? buffered : []) {
    if (!Buffer.isBuffer(chunk)) continue;
    if (!guard.feed(chunk)) return refuse(stream, onRefused);
  }
  const push = stream.push;
  stream.push = function guardedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (Buffer.isBuffer(chunk) && !guard.feed(chunk)) {
      refuse(stream, onRefused);
      return false;
    }
    return push.call(stream, chunk, encoding);
  };
}

function refuse(stream: Duplex, onRefused: () => void): void {
  onRefused();
  stream.destroy();
}
