import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';

interface ByteList {
  readonly length: number;
}

/** What this module reads of aedes's private packet parser (mqtt-packet's Parser). */
export interface ParserInternals extends EventEmitter {
  _list?: ByteList;
  settings?: object;
}

/** What the parser reads of the CONNECT packet it keeps as its settings. */
interface ConnectSettings {
  protocolVersion?: number;
  bridgeMode?: boolean;
}

/** A module as aedes itself loads it (its own mqtt-packet, or that package's `bl`), so always the same version; null when it cannot be found. */
function requireAsAedes<T>(id: string, viaParser: boolean): T | null {
  try {
    const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
    return (viaParser ? createRequire(fromAedes.resolve('mqtt-packet')) : fromAedes)(id) as T;
  } catch {
    return null;
  }
}

/** The plain byte list class of the `bl` that aedes's parser itself loads; null when it cannot be found. */
function plainListClass(): (new () => ByteList) | null {
  const BufferList = requireAsAedes<{ BufferList?: new () => ByteList }>('bl', true)?.BufferList;
  return typeof BufferList === 'function' ? BufferList : null;
}

const PlainList = plainListClass();

/**
 * Trims what aedes's parser keeps for the life of a connection, about 1.3 KB for every
 * connected device, the rest of it unchanged:
 * - mqtt-packet keeps the unparsed bytes in a BufferListStream, a whole Duplex (two stream
 *   states, listeners) it only ever uses as a list. The plain BufferList of the same package
 *   has the same methods and none of the stream. Swapped only while the list is empty
 *   (nothing to carry over); with a changed aedes or mqtt-packet the parser keeps its own.
 * - It keeps the whole CONNECT packet (the password among it) as its settings, and reads only
 *   the protocol version and the bridge flag of it afterwards.
 */
export function slimParser(parser: ParserInternals | undefined, connect: ConnectSettings): void {
  if (!parser) return;
  if (parser.settings === connect) parser.settings = { protocolVersion: connect.protocolVersion, ...(connect.bridgeMode ? { bridgeMode: true } : {}) };
  if (PlainList && parser._list && parser._list.length === 0) parser._list = new PlainList();
}

/**
 * mqtt-packet writes packet ids and lengths from a table of 65,536 two-byte Buffers it builds
 * at the first packet it writes: about 6.5 MB of heap held for the life of the server, and
 * 65,536 more objects for every full GC to mark. Unset, it makes the two bytes as it writes
 * them (mqtt.js's own client turns the table off the same way). Call before the first write.
 */
export function uncachedPacketNumbers(): void {
  const writer = requireAsAedes<{ writeToStream?: { cacheNumbers?: boolean } }>('mqtt-packet', false)?.writeToStream;
  if (writer) writer.cacheNumbers = false;
}
