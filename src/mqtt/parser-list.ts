import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';

interface ByteList {
  readonly length: number;
}

/** What this module reads of aedes's private packet parser (mqtt-packet's Parser). */
export interface ParserInternals extends EventEmitter {
  _list?: ByteList;
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
 * mqtt-packet keeps a connection's unparsed bytes in a BufferListStream: a whole Duplex (two
 * stream states, listeners) per connection that it only ever uses as a list. The plain
 * BufferList of the same package has the same methods and none of the stream, about 1 KB less
 * for every connected device. Swapped only while the list is empty (nothing to carry over);
 * with a changed aedes or mqtt-packet the parser keeps its own.
 */
export function slimParserList(parser: ParserInternals | undefined): boolean {
  if (!PlainList || !parser?._list || parser._list.length !== 0) return false;
  parser._list = new PlainList();
  return true;
}
