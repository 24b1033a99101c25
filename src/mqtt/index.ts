import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Services } from '../commands/services.js';
import type { DeviceGateway } from '../gateway/index.js';
import { BrokerBridge, type BridgeState } from './bridge.js';
import { EmbeddedBroker, type ListenerState } from './broker.js';
import type { Provision } from './provisioning.js';
import type { TlsCredentials } from '../transport/tls.js';

export type { Provision } from './provisioning.js';

/** What /api/health says of MQTT. */
export interface MqttStatus {
  tcp?: ListenerState;
  tls?: ListenerState;
  websocket?: string;
  broker?: BridgeState;
}

/** MQTT as the server offers it: the embedded broker, or a client of an existing one. */
export interface MqttFront {
  /** The handler of /mqtt upgrades (the embedded broker only). */
  upgrade: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | null;
  listen(): Promise<void>;
  status(): MqttStatus;
  close(): Promise<void>;
}

/** With MQTT_BROKER_URL, the server subscribes to that broker and embeds none. */
export async function createMqtt(services: Services, gateway: DeviceGateway, provision: Provision, tls: TlsCredentials | null): Promise<MqttFront> {
  const { config } = services;
  if (config.mqttBrokerUrl) {
    const bridge = new BrokerBridge(services, gateway, config.mqttBrokerUrl, config.mqttClientId);
    return { upgrade: null, listen: async () => undefined, status: () => ({ broker: { ...bridge.state } }), close: () => bridge.close() };
  }
  const broker = await EmbeddedBroker.create(services, gateway, provision);
  return {
    upgrade: (req, socket, head) => broker.upgrade(req, socket, head),
    listen: async () => {
      await broker.listen(config.mqttPort, config.host);
      if (tls) await broker.listenTls(config.mqttTlsPort, config.host, tls);
    },
    status: () => broker.status(),
    close: () => broker.close(),
  };
}
