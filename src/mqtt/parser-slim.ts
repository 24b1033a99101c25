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

/**
 * The plain byte list class of the `bl` that aedes's parser itself loads (found from aedes, then
 * mqtt-packet, so it is always the same version); null when it cannot be found.
 */
function plainListClass(): (new () => ByteList) | null {
  try {
    const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
    const fromParser = createRequire(fromAedes.resolve('mqtt-packet'));
    const { BufferList } = fromParser('bl') as { BufferList?: new () => ByteList };
    return typeof BufferList === 'function' ? BufferList : null;
  } catch {
    return null;
  }
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
