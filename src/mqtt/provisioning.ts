import type { Client, PublishPacket } from 'aedes';
import type { RequestContext } from '../commands/services.js';
import { answerCorrelation, checkParsedPayload, correlationOf, parseJsonPayload, type DeviceGateway } from '../gateway/index.js';
import type { PublishDone } from './session.js';
import { topics } from './topics.js';

/** Provisions from a request body as POST /api/devices/provision does: its status and data. */
export type Provision = (body: unknown, context: RequestContext) => Promise<{ status: number; data: unknown }>;

/**
 * A client connected with a provisioning key (or its owner's session): it may only publish
 * provision/request and read provision/response/{its client id}, where each request is
 * answered with what the HTTP route would answer. Requests are handled in order.
 */
export class ProvisioningSession {
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: Client,
    private readonly context: RequestContext,
    private readonly gateway: DeviceGateway,
    private readonly provision: Provision,
  ) {}

  get responseTopic(): string {
    return topics.provisionResponse(this.client.id);
  }

  receive(packet: PublishPacket, done: PublishDone): void {
    if (packet.topic !== topics.provisionRequest) {
      this.gateway.log.warn({ client_id: this.client.id, topic: packet.topic.slice(0, 200) }, 'mqtt provisioning client published elsewhere: disconnected');
      done(new Error('a provisioning client may only publish provision/request'));
      return;
    }
    packet.retain = false;
    this.tail = this.tail.then(() => this.handle(packet)).then(done);
  }

  private async handle(packet: PublishPacket): Promise<Error | undefined> {
    const bytes = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    let correlation: Record<string, unknown> = answerCorrelation(null);
    try {
      const value = parseJsonPayload(bytes);
      correlation = answerCorrelation(correlationOf(value));
      checkParsedPayload(bytes, value);
      const answer = await this.provision(withoutCorrelation(value), this.context);
      this.reply({ type: 'ack', status: answer.status, data: answer.data, ...correlation });
      return undefined;
    } catch (error) {
      const refusal = this.gateway.refusal(error, this.client.id);
      if (refusal.transient) return new Error(refusal.message);
      this.reply({ type: 'error', code: refusal.code, message: refusal.message, ...(refusal.details.length > 0 ? { details: refusal.details } : {}), ...correlation });
      return undefined;
    }
  }

  private reply(message: Record<string, unknown>): void {
    if (!this.client.connected || this.client.closed) return;
    this.client.publish({ cmd: 'publish', topic: this.responseTopic, payload: Buffer.from(JSON.stringify(message)), qos: 1, retain: false, dup: false }, () => undefined);
  }
}

/** The request body without its correlation fields (the HTTP body has none). */
function withoutCorrelation(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const { id: _id, ref: _ref, ...body } = value as Record<string, unknown>;
  return body;
}
