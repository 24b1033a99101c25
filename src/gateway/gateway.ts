import type { OfflineDetector } from '../automation/offline-detector.js';
import { certificatePrincipal } from '../api/auth.js';
import type { Accounts } from '../commands/accounts.js';
import type { DeviceCommands } from '../commands/device-commands.js';
import type { Principal, RequestContext, Services } from '../commands/services.js';
import { readingInputs, type Telemetry } from '../commands/telemetry.js';
import { DomainError, type ErrorDetail } from '../domain/errors.js';
import type { RecordedEvent } from '../domain/events.js';
import { findDevice } from '../projections/devices.js';
import type { CommandRow } from '../projections/commands.js';
import type { DeviceMessage } from './messages.js';
import { deviceRateKey, RateWindows } from './rate.js';

export type DevicePrincipal = Extract<Principal, { kind: 'device' }>;
type Body<T extends DeviceMessage['type']> = Extract<DeviceMessage, { type: T }>['body'];

/** One open connection of a device (a socket, an MQTT session): what the gateway needs of it. */
export interface DeviceSession {
  readonly deviceId: string;
  /** The client certificate it authenticated with (mutual TLS); unbinding it cuts this session, not one opened with a token. */
  readonly certificateFingerprint: string | null;
  isOpen(): boolean;
  /** Commands already marked sent: the session must carry them to the device. */
  deliver(commands: readonly CommandRow[]): void;
  /** Its credentials went (deletion, a replaced token): close at once, saying why. */
  revoke(reason: string): void;
}

/** A refusal as every transport answers it: the HTTP error code, and whether a retry could succeed. */
export interface Refusal {
  code: string;
  message: string;
  details: ErrorDetail[];
  /** Overload, stalled read models, a rate limit: not acknowledged, so the device sends it again later. */
  transient: boolean;
}

/** Carries commands to devices the server has no connection of its own with (an existing MQTT broker does). */
export interface CommandRelay {
  deliver(deviceId: string, commands: readonly CommandRow[]): void;
}

/** A device's desired configuration changed; null once the device is deleted (nothing is desired of it any more). */
export type ConfigurationListener = (deviceId: string, configuration: Record<string, unknown> | null) => void;

/**
 * The device side of the server, whatever the transport: authentication, validation results,
 * idempotency, rate limits, presence, command delivery and revocation. HTTP routes, the device
 * socket and MQTT are adapters that turn their frames into these calls and the answers back.
 * Every answer comes after the events are committed and projected.
 */
export class DeviceGateway {
  readonly rates: RateWindows;
  private readonly sessions = new Map<string, Set<DeviceSession>>();
  private readonly configurationListeners = new Set<ConfigurationListener>();
  private relay: CommandRelay | null = null;

  constructor(
    private readonly services: Services,
    private readonly accounts: Accounts,
    private readonly telemetry: Telemetry,
    private readonly commands: DeviceCommands,
    private readonly offline: OfflineDetector,
  ) {
    this.rates = new RateWindows(services.config.rateLimitPerMinute, services.clock);
  }

  get log(): Services['logger'] {
    return this.services.logger;
  }

  /** Refuses with service_unavailable while the read models are stalled (a connection could not be marked online, a message not be stored). */
  refuseWhileStalled(): void {
    this.services.runner.refuseWhileStalled();
  }

  /** Whoever a credential names (a device token, an API key, a session), or null. */
  async principalOf(credential: string | undefined): Promise<Principal | null> {
    return credential && credential.length <= 4096 ? this.accounts.authenticate(credential) : null;
  }

  /** A device's principal from its token; null for anything else (a user's credential included). */
  async authenticate(credential: string | undefined): Promise<DevicePrincipal | null> {
    const principal = await this.principalOf(credential);
    return principal?.kind === 'device' ? principal : null;
  }

  /** A device's principal from the client certificate of its connection (mutual TLS); `refused` says why one was not taken. */
  authenticateCertificate(socket: unknown): { principal: DevicePrincipal | null; refused: string | null } {
    const { principal, refused } = certificatePrincipal(this.accounts, socket, this.log);
    return { principal: principal?.kind === 'device' ? principal : null, refused };
  }

  /** Whether a device of this id is registered. */
  knows(deviceId: string): boolean {
    return Boolean(findDevice(this.services.sql, deviceId));
  }

  /** Counts one message of a device against its rate budget (shared with its HTTP requests). */
  admit(deviceId: string): void {
    this.rates.admit(deviceRateKey(deviceId));
  }

  async submitReadings(deviceId: string, body: Body<'readings'>, context: RequestContext, idempotencyKey?: string) {
    return this.telemetry.submit(deviceId, { readings: readingInputs(body.sensor_readings), timestamp: body.timestamp ?? null, device_status: body.device_status ?? null }, context, idempotencyKey);
  }

  async heartbeat(deviceId: string, body: Body<'heartbeat'>, context: RequestContext) {
    const { position } = await this.telemetry.heartbeat(deviceId, { device_status: body.device_status ?? null, firmware_version: body.firmware_version ?? null, metrics: body.metrics ?? null, configuration: body.configuration }, context);
    const status = findDevice(this.services.sql, deviceId)?.status ?? 'online';
    return { device_id: deviceId, status, position, server_time: this.services.clock.now().toISOString() };
  }

  async commandResult(deviceId: string, commandId: string, body: Body<'command_result'>, context: RequestContext): Promise<CommandRow> {
    return this.commands.recordResult(deviceId, commandId, { status: body.status, response: body.response ?? null }, context);
  }

  async firmwareProgress(deviceId: string, body: Body<'firmware_progress'>, context: RequestContext) {
    await this.commands.reportFirmwareProgress(deviceId, { version: body.version, status: body.status, detail: body.detail ?? null }, context);
    return { version: body.version, status: body.status };
  }

  /** A decoded message from a connected device: the answer's fields (a command result answers its id and status). */
  async handle(deviceId: string, message: DeviceMessage, context: RequestContext): Promise<Record<string, unknown>> {
    // As HTTP's stall guard does: refused before queueing behind the device's lock, which a
    // write of the same device stored just before the stall holds until the retry shows it.
    this.refuseWhileStalled();
    switch (message.type) {
      case 'readings':
        return this.submitReadings(deviceId, message.body, context, message.idempotencyKey);
      case 'heartbeat':
        return this.heartbeat(deviceId, message.body, context);
      case 'command_result': {
        const command = await this.commandResult(deviceId, message.commandId, message.body, context);
        return { command_id: command.id, status: command.status };
      }
      case 'firmware_progress':
        return this.firmwareProgress(deviceId, message.body, context);
    }
  }

  /** What a transport answers for a failure; an unexpected one is logged and answered without internals. */
  refusal(error: unknown, deviceId: string): Refusal {
    // A rate limit passes with time, as an overload does: resent later, the message is taken.
    if (error instanceof DomainError) return { code: error.code, message: error.message, details: error.details, transient: error.code === 'service_unavailable' || error.code === 'rate_limited' };
    this.services.logger.error({ err: error, device_id: deviceId }, 'device message failed');
    return { code: 'internal', message: 'internal error', details: [], transient: true };
  }

  /**
   * A connection opened: the device is online while any of its connections is, and its pending
   * commands go to this one (the newest: an older one is most likely half-open).
   */
  async open(session: DeviceSession, context: RequestContext): Promise<void> {
    // Its pending commands could not be marked sent, and nothing would push them once the read models resume.
    this.refuseWhileStalled();
    const open = this.sessions.get(session.deviceId) ?? new Set();
    open.add(session);
    this.sessions.set(session.deviceId, open);
    this.offline.connected.add(session.deviceId);
    await this.telemetry.markOnline(session.deviceId, context);
    await this.push(session.deviceId);
  }

  /** A connection closed: once the device's last one goes, the offline deadline starts. */
  close(session: DeviceSession): void {
    const open = this.sessions.get(session.deviceId);
    if (!open?.delete(session)) return;
    if (open.size > 0) return;
    this.sessions.delete(session.deviceId);
    this.offline.disconnected(session.deviceId);
  }

  isConnected(deviceId: string): boolean {
    return this.sessions.has(deviceId);
  }

  /** From now on, commands of devices with no connection here go to `relay` as they are queued. */
  setRelay(relay: CommandRelay | null): void {
    this.relay = relay;
  }

  onConfiguration(listener: ConfigurationListener): () => void {
    this.configurationListeners.add(listener);
    return () => this.configurationListeners.delete(listener);
  }

  /** Reacts to applied events: queued commands are pushed, revoked devices cut off, changed configurations announced. */
  onApplied(events: readonly RecordedEvent[]): void {
    for (const event of events) {
      if (event.type === 'command.queued' && (this.relay || this.sessions.has(event.data.device_id))) void this.push(event.data.device_id);
      if (event.type === 'device.decommissioned') {
        this.revokeAll(event.data.device_id, 'device deleted');
        for (const listener of this.configurationListeners) listener(event.data.device_id, null);
      }
      if (event.type === 'device.token_rotated') this.revokeAll(event.data.device_id, 'device token replaced');
      if (event.type === 'device.certificate_unbound') this.revokeBound(event.data.device_id, event.data.fingerprint);
      if (event.type === 'device.updated' && event.data.changes.configuration !== undefined) this.announceConfiguration(event.data.device_id);
    }
  }

  /** Cuts off every connection of a device (an unbound certificate, say). */
  revokeAll(deviceId: string, reason: string): void {
    for (const session of [...(this.sessions.get(deviceId) ?? [])]) session.revoke(reason);
  }

  private revokeBound(deviceId: string, fingerprint: string): void {
    for (const session of [...(this.sessions.get(deviceId) ?? [])]) if (session.certificateFingerprint === fingerprint) session.revoke('client certificate unbound');
  }

  /** The desired configuration as the read model holds it (null once the device is gone). */
  desiredConfiguration(deviceId: string): Record<string, unknown> | null {
    const device = findDevice(this.services.sql, deviceId);
    return device ? (JSON.parse(device.configuration) as Record<string, unknown>) : null;
  }

  private announceConfiguration(deviceId: string): void {
    const configuration = this.desiredConfiguration(deviceId);
    if (configuration) for (const listener of this.configurationListeners) listener(deviceId, configuration);
  }

  private async push(deviceId: string): Promise<void> {
    const session = [...(this.sessions.get(deviceId) ?? [])].reverse().find((candidate) => candidate.isOpen());
    const relay = this.relay;
    const target = session ?? (relay && { deliver: (commands: readonly CommandRow[]) => relay.deliver(deviceId, commands) });
    if (!target) return;
    const context: RequestContext = { principal: { kind: 'device', deviceId, userId: '' }, requestId: `push-${deviceId}` };
    try {
      // A connected device gets its whole queue pushed, not a page of it.
      const { sent } = await this.commands.deliverPending(deviceId, context, Number.POSITIVE_INFINITY);
      if (sent.length > 0) target.deliver(sent);
    } catch (error) {
      this.services.logger.warn({ err: error, device_id: deviceId }, 'command push failed');
    }
  }
}
