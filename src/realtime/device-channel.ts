import type { WebSocket } from 'ws';
import type { OfflineDetector } from '../automation/offline-detector.js';
import type { DeviceCommands } from '../commands/device-commands.js';
import type { Principal, RequestContext, Services } from '../commands/services.js';
import { readingInputs, type Telemetry } from '../commands/telemetry.js';
import { DomainError } from '../domain/errors.js';
import type { RecordedEvent } from '../domain/events.js';
import { presentCommand } from '../api/routes/commands.js';
import { CLOSE, deviceMessage, type DeviceMessage } from './messages.js';

type DevicePrincipal = Extract<Principal, { kind: 'device' }>;

const MAX_GARBAGE = 5;

/**
 * Devices over /ws/device: connecting marks them online, their pending commands are
 * pushed (and become sent) on connect and whenever one is queued, and their messages go
 * through the same handlers as HTTP.
 */
export class DeviceChannel {
  private readonly sockets = new Map<string, Set<WebSocket>>();
  /** Sockets closed because their credentials went (or for garbage): what they queued is dropped. */
  private readonly revoked = new WeakSet<WebSocket>();
  /** The client certificate a socket authenticated with: unbinding it cuts that socket, not one opened with a token. */
  private readonly certificates = new WeakMap<WebSocket, string>();

  constructor(
    private readonly services: Services,
    private readonly telemetry: Telemetry,
    private readonly commands: DeviceCommands,
    private readonly offline: OfflineDetector,
  ) {}

  async connect(ws: WebSocket, principal: DevicePrincipal, requestId: string): Promise<void> {
    // Its pending commands could not be marked sent, and nothing would push them once the read models resume.
    this.services.runner.refuseWhileStalled();
    const id = principal.deviceId;
    const context: RequestContext = { principal, requestId };
    const open = this.sockets.get(id) ?? new Set();
    open.add(ws);
    this.sockets.set(id, open);
    if (principal.certificate) this.certificates.set(ws, principal.certificate.fingerprint);
    this.offline.connected.add(id);
    let garbage = 0;
    // One message at a time, as over one HTTP connection: answers come in the order the messages did.
    let previous = Promise.resolve();
    ws.on('message', (data, isBinary) => {
      const raw = isBinary ? '' : data.toString('utf8');
      previous = previous
        .then(async () => {
          // A device that sends and hangs up at once is still heard; one whose credentials went is not.
          if (this.revoked.has(ws)) return;
          const ok = await this.onMessage(ws, raw, context);
          garbage = ok ? 0 : garbage + 1;
          if (garbage >= MAX_GARBAGE) this.cutOff(ws, CLOSE.policy, 'too many invalid messages');
        })
        // A failure must not stop the messages queued behind it.
        .catch((error: unknown) => this.services.logger.error({ err: error }, 'device message failed'));
    });
    ws.on('close', () => this.disconnect(id, ws));
    await this.telemetry.markOnline(id, context);
    await this.push(id);
  }

  /** Reacts to applied events: new commands are pushed; deleted devices, and sockets opened with a replaced token, are cut off. */
  onApplied(events: readonly RecordedEvent[]): void {
    for (const event of events) {
      if (event.type === 'command.queued' && this.sockets.has(event.data.device_id)) void this.push(event.data.device_id);
      if (event.type === 'device.decommissioned') this.sockets.get(event.data.device_id)?.forEach((ws) => this.cutOff(ws, CLOSE.credentialsRevoked, 'device deleted'));
      if (event.type === 'device.token_rotated') this.sockets.get(event.data.device_id)?.forEach((ws) => this.cutOff(ws, CLOSE.credentialsRevoked, 'device token replaced'));
      if (event.type === 'device.certificate_unbound') {
        const { device_id, fingerprint } = event.data;
        for (const ws of this.sockets.get(device_id) ?? []) if (this.certificates.get(ws) === fingerprint) this.cutOff(ws, CLOSE.credentialsRevoked, 'client certificate unbound');
      }
    }
  }

  private cutOff(ws: WebSocket, code: number, reason: string): void {
    this.revoked.add(ws);
    ws.close(code, reason);
  }

  closeAll(): void {
    for (const set of this.sockets.values()) set.forEach((ws) => ws.close(CLOSE.goingAway, 'server shutting down'));
  }

  /** To the newest open socket: a device that reconnected may leave a half-open old one behind. */
  private async push(deviceId: string): Promise<void> {
    const target = [...(this.sockets.get(deviceId) ?? [])].reverse().find((ws) => ws.readyState === ws.OPEN);
    if (!target) return;
    const context: RequestContext = { principal: { kind: 'device', deviceId, userId: '' }, requestId: `ws-push-${deviceId}` };
    try {
      // A connected device gets its whole queue pushed, not a page of it.
      const { sent } = await this.commands.deliverPending(deviceId, context, Number.POSITIVE_INFINITY);
      for (const command of sent) target.send(JSON.stringify({ type: 'command', command: presentCommand(command) }));
    } catch (error) {
      this.services.logger.warn({ err: error, device_id: deviceId }, 'command push failed');
    }
  }

  private disconnect(deviceId: string, ws: WebSocket): void {
    const open = this.sockets.get(deviceId);
    open?.delete(ws);
    if (open && open.size > 0) return;
    this.sockets.delete(deviceId);
    this.offline.disconnected(deviceId);
  }

  /** Answers every message with an ack or an error; false when it was not valid. */
  private async onMessage(ws: WebSocket, raw: string, context: RequestContext): Promise<boolean> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      reply(ws, { type: 'error', code: 'invalid_json', message: 'the message is not JSON' });
      return false;
    }
    const ref = parsed !== null && typeof parsed === 'object' && 'id' in parsed ? (parsed as { id: unknown }).id : undefined;
    const message = deviceMessage.safeParse(parsed);
    if (!message.success) {
      reply(ws, { type: 'error', code: 'validation_failed', message: message.error.issues.map((i) => `${i.path.join('.') || 'message'}: ${i.message}`).join('; '), ref });
      return false;
    }
    try {
      const result = await this.handle(message.data, context);
      reply(ws, { type: 'ack', ref: message.data.id ?? null, ...result });
    } catch (error) {
      const known = error instanceof DomainError;
      if (!known) this.services.logger.error({ err: error }, 'device message failed');
      reply(ws, { type: 'error', code: known ? error.code : 'internal', message: known ? error.message : 'internal error', ref: message.data.id ?? null });
    }
    return true;
  }

  private async handle(message: DeviceMessage, context: RequestContext): Promise<Record<string, unknown>> {
    const deviceId = (context.principal as DevicePrincipal).deviceId;
    switch (message.type) {
      case 'readings': {
        return this.telemetry.submit(deviceId, { readings: readingInputs(message.sensor_readings), timestamp: message.timestamp ?? null, device_status: message.device_status ?? null }, context, message.idempotency_key);
      }
      case 'heartbeat':
        return this.telemetry.heartbeat(deviceId, { device_status: message.device_status ?? null, firmware_version: message.firmware_version ?? null, metrics: message.metrics ?? null, configuration: message.configuration }, context);
      case 'command_result': {
        const command = await this.commands.recordResult(deviceId, message.command_id, { status: message.status, response: message.response ?? null }, context);
        return { command_id: command.id, status: command.status };
      }
    }
  }
}

function reply(ws: WebSocket, message: Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
}
