import type { DeviceMessageType } from '../gateway/index.js';

/**
 * The topic tree. Device → server: devices/{id}/telemetry, .../heartbeat,
 * .../commands/{command_id}/result, .../firmware/progress. Server → device:
 * devices/{id}/commands/{command_id}, .../config (retained), .../replies.
 */
export const topics = {
  prefix: (deviceId: string) => `devices/${deviceId}/`,
  command: (deviceId: string, commandId: string) => `devices/${deviceId}/commands/${commandId}`,
  config: (deviceId: string) => `devices/${deviceId}/config`,
  replies: (deviceId: string) => `devices/${deviceId}/replies`,
  provisionRequest: 'provision/request',
  provisionResponse: (clientId: string) => `provision/response/${clientId}`,
};

export interface Inbound {
  type: DeviceMessageType;
  commandId?: string;
}

/** What a device's publish on `topic` is, or null when the topic is not one it may publish to. */
export function inboundOf(deviceId: string, topic: string): Inbound | null {
  const prefix = topics.prefix(deviceId);
  if (!topic.startsWith(prefix)) return null;
  const rest = topic.slice(prefix.length).split('/');
  if (rest.length === 1 && rest[0] === 'telemetry') return { type: 'readings' };
  if (rest.length === 1 && rest[0] === 'heartbeat') return { type: 'heartbeat' };
  if (rest.length === 2 && rest[0] === 'firmware' && rest[1] === 'progress') return { type: 'firmware_progress' };
  if (rest.length === 3 && rest[0] === 'commands' && rest[2] === 'result' && rest[1]!.length > 0) return { type: 'command_result', commandId: rest[1]! };
  return null;
}

/** Device → server topics are the server's alone: never forwarded to a subscriber. */
export const isDeviceToServer = (topic: string): boolean => topic === topics.provisionRequest || /^devices\/[^/]+\/(telemetry|heartbeat|firmware\/progress|commands\/[^/]+\/result)$/.test(topic);

/**
 * Whether a device may subscribe to `filter`: anything under its own prefix; a wildcard filter
 * reaching outside it is refused (a failed SUBACK); a plain topic outside it disconnects, as
 * a publish there does.
 */
export function subscriptionVerdict(deviceId: string, filter: string): 'allow' | 'refuse' | 'disconnect' {
  const prefix = topics.prefix(deviceId);
  if (filter.startsWith(prefix) || filter === `devices/${deviceId}`) return 'allow';
  return filter.includes('+') || filter.includes('#') ? 'refuse' : 'disconnect';
}

/** A provisioning client reads its own response topic only. */
export function provisioningVerdict(responseTopic: string, filter: string): 'allow' | 'refuse' | 'disconnect' {
  if (filter === responseTopic) return 'allow';
  return filter.includes('+') || filter.includes('#') ? 'refuse' : 'disconnect';
}
