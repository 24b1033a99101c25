import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { presentCommand } from '../api/routes/commands.js';
import type { RequestContext, Services } from '../commands/services.js';
import type { DeviceGateway } from '../gateway/index.js';
import { findDevice } from '../projections/devices.js';
import type { CommandRow } from '../projections/commands.js';
import { DupMemory, PublishHandler } from './session.js';
import { topics } from './topics.js';

/** What the server subscribes to on an existing broker: every device's device → server topics. */
export const BRIDGE_SUBSCRIPTIONS = ['devices/+/telemetry', 'devices/+/heartbeat', 'devices/+/commands/+/result', 'devices/+/firmware/progress'];

const MAX_HANDLERS = 10_000;
const DUP_WINDOW_MS = 10 * 60_000;

export interface BridgeState {
  url: string;
  state: 'connecting' | 'connected' | 'reconnecting' | 'closed';
  error?: string;
}

/**
 * The server as a client of an existing broker (MQTT_BROKER_URL): a persistent session
 * subscribed to the device topic tree, each message handled by the same gateway and
 * acknowledged (PUBACK to the broker) only once stored and projected; a transient refusal
 * drops the connection so the broker redelivers. The broker authenticates devices and keeps
 * each on its own topics (the server offers it an HTTP endpoint for that).
 */
export class BrokerBridge {
  private readonly client: MqttClient;
  private readonly handlers = new Map<string, PublishHandler>();
  readonly state: BridgeState;
  private readonly stopConfigurations: () => void;

  constructor(
    private readonly services: Services,
    private readonly gateway: DeviceGateway,
    url: string,
    clientId: string,
  ) {
    const parsed = new URL(url);
    this.state = { url: `${parsed.protocol}//${parsed.host}`, state: 'connecting' };
    this.client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 1_000, protocolVersion: 4, connectTimeout: 10_000 });
    this.client.handleMessage = (packet, done) => void this.onMessage(packet, done);
    this.client.on('connect', () => {
      this.state.state = 'connected';
      delete this.state.error;
      this.client.subscribe(BRIDGE_SUBSCRIPTIONS, { qos: 1 }, (error) => {
        if (error) services.logger.error({ err: error.message }, 'mqtt broker subscription failed');
      });
      services.logger.info({ broker: this.state.url }, 'connected to the mqtt broker');
    });
    this.client.on('reconnect', () => (this.state.state = 'reconnecting'));
    this.client.on('error', (error) => {
      this.state.error = error.message;
      services.logger.warn({ broker: this.state.url, err: error.message }, 'mqtt broker connection error');
    });
    gateway.setRelay({ deliver: (deviceId, commands) => this.deliver(deviceId, commands) });
    // An empty retained message (the device is gone) clears what the broker keeps.
    this.stopConfigurations = gateway.onConfiguration((deviceId, configuration) => this.publish(topics.config(deviceId), configuration, 1, true));
  }

  async close(): Promise<void> {
    this.state.state = 'closed';
    this.stopConfigurations();
    this.gateway.setRelay(null);
    await this.client.endAsync();
  }

  /** One message at a time (mqtt.js waits for `done`); `done()` sends the PUBACK. */
  private async onMessage(packet: IPublishPacket, done: (error?: Error) => void): Promise<void> {
    const handler = this.handlerFor(packet.topic.split('/')[1] ?? '');
    const outcome = handler ? await handler.handle(packet) : undefined;
    if (outcome) {
      // Unacknowledged, the message comes again from the persistent session after the reconnect.
      this.services.logger.warn({ topic: packet.topic.slice(0, 200), err: outcome.message }, 'mqtt message not taken now; reconnecting for a redelivery');
      this.client.stream.destroy();
    }
    done(outcome);
  }

  /** The handler of a registered device (a message naming another is acknowledged and dropped). */
  private handlerFor(deviceId: string): PublishHandler | undefined {
    const known = this.handlers.get(deviceId);
    if (known) return known;
    const device = findDevice(this.services.sql, deviceId);
    if (!device) {
      this.services.logger.warn({ device_id: deviceId.slice(0, 64) }, 'mqtt message for an unknown device dropped');
      return undefined;
    }
    const context: RequestContext = { principal: { kind: 'device', deviceId, userId: device.user_id }, requestId: `mqtt-bridge-${deviceId}` };
    const memory = new DupMemory(DUP_WINDOW_MS, () => this.services.clock.now().getTime());
    const handler = new PublishHandler(deviceId, context, this.gateway, memory, (topic, message) => this.publish(topic, message, 0, false));
    if (this.handlers.size >= MAX_HANDLERS) this.handlers.delete(this.handlers.keys().next().value!);
    this.handlers.set(deviceId, handler);
    return handler;
  }

  private deliver(deviceId: string, commands: readonly CommandRow[]): void {
    for (const command of commands) this.publish(topics.command(deviceId, command.id), presentCommand(command), 1, false);
  }

  private publish(topic: string, message: unknown, qos: 0 | 1, retain: boolean): void {
    this.client.publish(topic, message === null ? '' : JSON.stringify(message), { qos, retain }, (error) => {
      if (error) this.services.logger.warn({ topic, err: error.message }, 'mqtt publish to the broker failed');
    });
  }
}
