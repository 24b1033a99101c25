import { createHash } from 'node:crypto';
import type { Client, PublishPacket } from 'aedes';
import { presentCommand } from '../api/routes/commands.js';
import type { RequestContext } from '../commands/services.js';
import { answerCorrelation, decodeMessage, parsePayload, type DeviceGateway, type DeviceSession } from '../gateway/index.js';
import type { CommandRow } from '../projections/commands.js';
import { inboundOf, topics } from './topics.js';

export interface SessionLimits {
  /** Publishes received and not yet answered; past it the connection is closed (the client resends). */
  maxInFlight: number;
  /** Bytes waiting to go out to a client that reads too slowly; past it the connection is closed. */
  maxOutboundBytes: number;
}

/** A redelivery is of what was in flight when the connection dropped: a client's last few messages. */
const MAX_REMEMBERED = 32;

/** Says how a publish ended: nothing (acknowledge) or an error (close without acknowledging). */
export type PublishDone = (error?: Error | null) => void;

/**
 * One device's MQTT connection, an adapter over the gateway. Publishes are handled one at a
 * time in arrival order, and the broker's PUBACK (sent when `done` is called without an error)
 * follows the commit and projection of the message's events. A permanent refusal is
 * acknowledged and answered with an error on replies; a transient one closes the connection
 * unacknowledged, so the client sends it again.
 */
export class MqttSession implements DeviceSession {
  revoked = false;
  readonly certificateFingerprint: string | null;
  private inFlight = 0;
  // The chain of publishes and their handler are made with the first publish: most devices
  // connected at a time are idle, and each of them should cost as little as can be.
  private tail: Promise<void> | undefined;
  private handler: PublishHandler | undefined;

  constructor(
    readonly client: Client,
    readonly deviceId: string,
    readonly context: RequestContext,
    private readonly gateway: DeviceGateway,
    private readonly limits: SessionLimits,
    private readonly memories: DupMemories,
  ) {
    // A session opened with a client certificate ends when the certificate is unbound.
    this.certificateFingerprint = context.principal.kind === 'device' ? (context.principal.certificate?.fingerprint ?? null) : null;
  }

  isOpen(): boolean {
    return this.client.connected && !this.client.closed && !this.revoked;
  }

  deliver(commands: readonly CommandRow[]): void {
    for (const command of commands) this.send(topics.command(this.deviceId, command.id), presentCommand(command), 1);
  }

  revoke(reason: string): void {
    this.revoked = true;
    this.gateway.log.info({ device_id: this.deviceId, reason }, 'mqtt client disconnected: credentials revoked');
    this.client.close();
  }

  /** The broker's authorizePublish: `done` acknowledges (or, with an error, closes unacknowledged). */
  receive(packet: PublishPacket, done: PublishDone): void {
    if (!inboundOf(this.deviceId, packet.topic)) {
      this.gateway.log.warn({ device_id: this.deviceId, topic: packet.topic.slice(0, 200) }, 'mqtt publish outside the device topics: disconnected');
      done(new Error('publish outside the device topics'));
      return;
    }
    if (this.inFlight >= this.limits.maxInFlight) {
      done(new Error('too many messages in flight'));
      return;
    }
    this.inFlight += 1;
    // The device's own publishes are never forwarded, and never retained.
    packet.retain = false;
    const handler = (this.handler ??= new PublishHandler(this.deviceId, this.context, this.gateway, this.memories.of(this.deviceId), (topic, message) => this.send(topic, message, 0)));
    this.tail = (this.tail ?? Promise.resolve())
      .then(() => (this.revoked ? new Error('credentials revoked') : handler.handle(packet)))
      .then((outcome) => {
        this.inFlight -= 1;
        done(outcome);
      });
  }

  /** To this client whether or not it subscribed (a command queued before its SUBSCRIBE must not be lost); a client too slow to read is closed. */
  private send(topic: string, message: Record<string, unknown>, qos: 0 | 1): void {
    if (!this.isOpen()) return;
    // Bytes waiting to go out in the client's connection (socket or WebSocket stream).
    if (this.client.conn.writableLength > this.limits.maxOutboundBytes) {
      this.gateway.log.warn({ device_id: this.deviceId }, 'mqtt client too slow to read: disconnected');
      this.client.close();
      return;
    }
    this.client.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(message)), qos, retain: false, dup: false }, () => undefined);
  }
}

/** What a publish came with: its topic and bytes, whether it is a redelivery, its packet id. */
export interface InboundPublish {
  topic: string;
  payload: Buffer | string;
  dup: boolean;
  messageId?: number | undefined;
}

/**
 * One device's publishes turned into gateway calls and answers on its replies topic, whoever
 * carried them (the embedded broker, or an existing broker the server subscribes to). Resolves
 * undefined to acknowledge, or an error when the message must not be acknowledged (transient).
 */
export class PublishHandler {
  constructor(
    readonly deviceId: string,
    private readonly context: RequestContext,
    private readonly gateway: DeviceGateway,
    private readonly memory: DupMemory,
    private readonly reply: (topic: string, message: Record<string, unknown>) => void,
  ) {}

  async handle(packet: InboundPublish): Promise<Error | undefined> {
    const inbound = inboundOf(this.deviceId, packet.topic);
    if (!inbound) return new Error('not a device topic');
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const decoded = decodeMessage(payload, (value) => parsePayload(inbound.type, value, inbound.commandId !== undefined ? { commandId: inbound.commandId } : {}));
    const about = { topic: packet.topic, ...(packet.messageId !== undefined ? { packet_id: packet.messageId } : {}), ...answerCorrelation(decoded.correlation) };
    if ('error' in decoded) return this.refuse(decoded.error, about);
    // Without a key of its own, a redelivery (DUP) is recognised by its content, within a window.
    const contentKey = decoded.message.type === 'readings' && decoded.message.idempotencyKey !== undefined ? null : createHash('sha256').update(packet.topic).update('\0').update(payload).digest('base64url');
    const remembered = contentKey !== null && packet.dup ? this.memory.recall(contentKey) : undefined;
    if (remembered) {
      this.reply(topics.replies(this.deviceId), { type: 'ack', ...remembered, ...about, duplicate: true });
      return undefined;
    }
    try {
      this.gateway.admit(this.deviceId);
      const answer = await this.gateway.handle(this.deviceId, decoded.message, this.context);
      if (contentKey !== null) this.memory.remember(contentKey, answer);
      this.reply(topics.replies(this.deviceId), { type: 'ack', ...answer, ...about });
      return undefined;
    } catch (error) {
      return this.refuse(error, about);
    }
  }

  /** A permanent refusal is acknowledged with an error on replies; a transient one is not acknowledged. */
  private refuse(error: unknown, about: Record<string, unknown>): Error | undefined {
    const refusal = this.gateway.refusal(error, this.deviceId);
    if (refusal.transient) return new Error(refusal.message);
    this.reply(topics.replies(this.deviceId), { type: 'error', code: refusal.code, message: refusal.message, ...(refusal.details.length > 0 ? { details: refusal.details } : {}), ...about });
    return undefined;
  }

}

/**
 * What one device sent lately (content hash → answer), kept across its connections: a DUP
 * redelivery arrives on the connection after the one that dropped.
 */
export class DupMemory {
  /** Made with the first answer remembered. */
  private recent: Map<string, { at: number; answer: Record<string, unknown> }> | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  recall(key: string): Record<string, unknown> | undefined {
    const entry = this.recent?.get(key);
    return entry && this.now() - entry.at <= this.windowMs ? entry.answer : undefined;
  }

  remember(key: string, answer: Record<string, unknown>): void {
    const recent = (this.recent ??= new Map());
    recent.delete(key);
    recent.set(key, { at: this.now(), answer });
    if (recent.size > MAX_REMEMBERED) recent.delete(recent.keys().next().value!);
  }
}

/** One DupMemory per device, for the devices heard from most recently (a bounded map). */
export class DupMemories {
  private readonly memories = new Map<string, DupMemory>();

  constructor(
    private readonly maxDevices: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  of(deviceId: string): DupMemory {
    const memory = this.memories.get(deviceId) ?? new DupMemory(this.windowMs, this.now);
    this.memories.delete(deviceId);
    this.memories.set(deviceId, memory);
    if (this.memories.size > this.maxDevices) this.memories.delete(this.memories.keys().next().value!);
    return memory;
  }
}
