import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Client, PublishPacket } from 'aedes';
import { DomainError } from '../../src/domain/errors.js';
import { DeviceGateway } from '../../src/gateway/gateway.js';
import { PassThrough } from 'node:stream';
import { FrameGuard, guardFrames } from '../../src/mqtt/packet-guard.js';
import { DupMemories, MqttSession } from '../../src/mqtt/session.js';

const DEVICE = '3f1c2d4e-0000-4000-8000-000000000001';

/** A session over a fake client and a gateway whose handling is given. */
function sessionWith(handle: () => Promise<Record<string, unknown>>) {
  const published: Array<{ topic: string; payload: Record<string, unknown> }> = [];
  const fakeClient = {
    connected: true,
    closed: false,
    publish: (packet: PublishPacket) => published.push({ topic: packet.topic, payload: JSON.parse(String(packet.payload)) as Record<string, unknown> }),
    close: () => undefined,
    conn: { writableLength: 0 },
  } as unknown as Client;
  const services = { logger: pino({ level: 'silent' }) };
  const gateway = { admit: () => undefined, handle, refusal: DeviceGateway.prototype.refusal.bind({ services } as unknown as DeviceGateway), log: services.logger } as unknown as DeviceGateway;
  const session = new MqttSession(fakeClient, DEVICE, { principal: { kind: 'device', deviceId: DEVICE, userId: 'u' }, requestId: 'r' }, gateway, { maxInFlight: 2, maxOutboundBytes: 1 << 20 }, new DupMemories(10, 60_000, () => 0));
  const publish = (payload: unknown, topic = `devices/${DEVICE}/telemetry`) =>
    new Promise<Error | null | undefined>((resolve) => session.receive({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(payload)), qos: 1, dup: false, retain: false, messageId: 1 }, resolve));
  return { session, publish, published };
}

describe('MqttSession', () => {
  it('closes unacknowledged on a transient refusal (overload, stalled read models), with no reply', async () => {
    const { publish, published } = sessionWith(async () => {
      throw new DomainError('service_unavailable', 'ingestion is saturated; retry shortly');
    });
    expect(await publish({ sensor_readings: { t: 1 } })).toBeInstanceOf(Error);
    expect(published).toEqual([]);
  });

  it('acknowledges a permanent refusal and answers it on replies', async () => {
    const { publish, published } = sessionWith(async () => {
      throw new DomainError('conflict', 'a result was already recorded');
    });
    expect(await publish({ id: 'c1', status: 'executed' }, `devices/${DEVICE}/commands/abc/result`)).toBeUndefined();
    expect(published).toEqual([{ topic: `devices/${DEVICE}/replies`, payload: expect.objectContaining({ type: 'error', code: 'conflict', id: 'c1' }) }]);
  });

  it('refuses past its in-flight bound without waiting, and disconnects on a topic outside the device', async () => {
    let release = () => undefined as void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { publish } = sessionWith(() => gate.then(() => ({ accepted: 1 })));
    const first = publish({ sensor_readings: { t: 1 } });
    const second = publish({ sensor_readings: { t: 2 } });
    expect(await publish({ sensor_readings: { t: 3 } })).toBeInstanceOf(Error);
    expect(await publish({}, 'devices/another/telemetry')).toBeInstanceOf(Error);
    release();
    expect(await first).toBeUndefined();
    expect(await second).toBeUndefined();
  });
});

describe('FrameGuard', () => {
  const header = (type: number, length: number): Buffer => {
    const bytes = [type];
    do {
      const digit = length % 128;
      length = Math.floor(length / 128);
      bytes.push(length > 0 ? digit | 0x80 : digit);
    } while (length > 0);
    return Buffer.from(bytes);
  };

  it('passes packets within the limit, however they are split into chunks', () => {
    const guard = new FrameGuard(1000);
    const stream = Buffer.concat([header(0x30, 900), Buffer.alloc(900), header(0xc0, 0), header(0x30, 3), Buffer.alloc(3)]);
    for (let i = 0; i < stream.length; i += 7) expect(guard.feed(stream.subarray(i, i + 7))).toBe(true);
  });

  it('refuses a packet announced over the limit from its length bytes alone, split or not', () => {
    expect(new FrameGuard(1000).feed(header(0x30, 10 * 1024 * 1024))).toBe(false);
    const split = new FrameGuard(1000);
    const big = header(0x30, 1001);
    expect(split.feed(big.subarray(0, 2))).toBe(true);
    expect(split.feed(big.subarray(2))).toBe(false);
  });

  it('guards a stream in place: packets within the limit reach its reader, an oversized one destroys it unbuffered', () => {
    const stream = new PassThrough();
    let refused = 0;
    guardFrames(stream, new FrameGuard(1000), () => (refused += 1));
    stream.write(Buffer.concat([header(0x30, 3), Buffer.alloc(3)]));
    expect(stream.read()).toHaveLength(5);
    stream.write(header(0x30, 10 * 1024 * 1024));
    expect(refused).toBe(1);
    expect(stream.destroyed).toBe(true);
    expect(stream.readableLength).toBe(0);
  });

  it('checks what a stream had already read before it was guarded', () => {
    const stream = new PassThrough();
    stream.write(header(0x30, 10 * 1024 * 1024));
    let refused = 0;
    guardFrames(stream, new FrameGuard(1000), () => (refused += 1));
    expect(refused).toBe(1);
    expect(stream.destroyed).toBe(true);
  });

  it('refuses a remaining length of more than four bytes', () => {
    expect(new FrameGuard(Number.MAX_SAFE_INTEGER).feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]))).toBe(false);
  });
});
