import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { slimParser, uncachedPacketNumbers, type ParserInternals } from '../../src/mqtt/parser-slim.js';

// The mqtt-packet aedes itself loads: the parser whose list is swapped.
const mqttPacket = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as {
  parser(): ParserInternals & { parse(buf: Buffer): number };
  generate(packet: Record<string, unknown>): Buffer;
  writeToStream: ((packet: Record<string, unknown>, stream: NodeJS.WritableStream) => boolean) & { cacheNumbers: boolean };
};

/** A stream has stream state; the plain list has none. */
const isStream = (list: unknown): boolean => typeof list === 'object' && list !== null && '_readableState' in list;

describe('slimParser', () => {
  it('gives an idle parser a plain list, and the parser still reads packets split across chunks', () => {
    const parser = mqttPacket.parser();
    expect(isStream(parser._list)).toBe(true);
    slimParser(parser, {});
    expect(isStream(parser._list)).toBe(false);
    const packets: Array<{ cmd: string; topic?: string; payload?: Buffer }> = [];
    parser.on('packet', (packet: { cmd: string }) => packets.push(packet));
    const bytes = Buffer.concat([
      mqttPacket.generate({ cmd: 'publish', topic: 'devices/a/telemetry', payload: Buffer.from('x'.repeat(300)), qos: 1, messageId: 7, retain: false, dup: false }),
      mqttPacket.generate({ cmd: 'pingreq' }),
    ]);
    for (let i = 0; i < bytes.length; i += 5) parser.parse(bytes.subarray(i, i + 5));
    expect(packets.map((p) => p.cmd)).toEqual(['publish', 'pingreq']);
    expect(packets[0]!.payload!.toString()).toBe('x'.repeat(300));
  });

  it('keeps of the CONNECT packet only what it reads afterwards: no password', () => {
    const parser = mqttPacket.parser();
    let connect: { protocolVersion?: number; password?: Buffer } = {};
    parser.on('packet', (packet: typeof connect) => {
      connect = packet;
      slimParser(parser, packet);
    });
    parser.parse(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'd1', username: 'd1', password: Buffer.from('secret'), keepalive: 60, clean: true }));
    expect(connect.password?.toString()).toBe('secret');
    expect(parser.settings).toEqual({ protocolVersion: 4 });
    const packets: string[] = [];
    parser.on('packet', (packet: { cmd: string }) => packets.push(packet.cmd));
    parser.parse(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/d1/commands/+', qos: 1 }] }));
    expect(packets).toEqual(['subscribe']);
  });

  it('leaves a list holding unparsed bytes, and a parser without one, as they are', () => {
    const parser = mqttPacket.parser();
    parser.parse(Buffer.from([0x30, 0x05, 0x00, 0x01]));
    expect(parser._list!.length).toBeGreaterThan(0);
    slimParser(parser, {});
    expect(isStream(parser._list)).toBe(true);
    expect(() => slimParser(undefined, {})).not.toThrow();
  });
});

describe('uncachedPacketNumbers', () => {
  it('turns off the writer of aedes the table of 65,536 numbers, and packet ids and lengths are written as before', async () => {
    uncachedPacketNumbers();
    expect(mqttPacket.writeToStream.cacheNumbers).toBe(false);
    const packet = { cmd: 'publish', topic: 'devices/a/commands/1', payload: Buffer.from('{}'), qos: 1, messageId: 40_000, retain: false, dup: false };
    const out = new PassThrough();
    mqttPacket.writeToStream(packet, out);
    // The writer corks the stream and uncorks it on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    const parser = mqttPacket.parser();
    const read: Array<{ messageId?: number; topic?: string }> = [];
    parser.on('packet', (parsed: { messageId?: number; topic?: string }) => read.push(parsed));
    parser.parse(out.read() as Buffer);
    expect(read).toMatchObject([{ messageId: 40_000, topic: 'devices/a/commands/1' }]);
  });
});
