import type { RawData, WebSocket } from 'ws';
import type { RequestContext, Services } from '../commands/services.js';
import type { CommandRow } from '../projections/commands.js';
import { presentCommand } from '../api/routes/commands.js';
import { answerCorrelation, decodeMessage, parseSocketMessage, type DeviceGateway, type DevicePrincipal, type DeviceSession } from '../gateway/index.js';
import { CLOSE } from './messages.js';

const MAX_GARBAGE = 5;

/**
 * /ws/device, an adapter over the device gateway: each frame is decoded, validated and handled
 * by the gateway as an HTTP body would be, and answered with an ack or an error carrying the
 * client's correlation field (`id` or `ref`, whichever it used).
 */
export class DeviceChannel {
  private readonly sessions = new Set<SocketSession>();

  constructor(
    private readonly services: Services,
    private readonly gateway: DeviceGateway,
  ) {}

  async connect(ws: WebSocket, principal: DevicePrincipal, requestId: string): Promise<void> {
    const context: RequestContext = { principal, requestId };
    const maxBufferedBytes = this.services.config.wsMaxBufferedBytes;
    const session = new SocketSession(ws, principal.deviceId, principal.certificate?.fingerprint ?? null, maxBufferedBytes);
    this.sessions.add(session);
    let garbage = 0;
    // One message at a time, as over one HTTP connection: answers come in the order the messages did.
    let previous = Promise.resolve();
    // Messages read but not yet handled. Past the bound the socket is no longer read, so a device
    // sending faster than its messages are stored waits in TCP instead of in the server's memory.
    let backlogBytes = 0;
    ws.on('message', (data) => {
      const bytes = bytesOf(data);
      backlogBytes += bytes.length;
      if (backlogBytes > maxBufferedBytes) ws.pause();
      previous = previous
        .then(async () => {
          // A device that sends and hangs up at once is still heard; one whose credentials went is not.
          if (session.revoked) return;
          const ok = await this.onMessage(session, bytes, context);
          garbage = ok ? 0 : garbage + 1;
          if (garbage >= MAX_GARBAGE) session.cutOff(CLOSE.policy, 'too many invalid messages');
        })
        // A failure must not stop the messages queued behind it.
        .catch((error: unknown) => this.services.logger.error({ err: error }, 'device message failed'))
        .finally(() => {
          backlogBytes -= bytes.length;
          if (backlogBytes <= maxBufferedBytes && ws.isPaused) ws.resume();
        });
    });
    ws.on('close', () => {
      this.sessions.delete(session);
      this.gateway.close(session);
    });
    await this.gateway.open(session, context);
  }

  closeAll(): void {
    for (const session of this.sessions) session.ws.close(CLOSE.goingAway, 'server shutting down');
  }

  /** Answers every message with an ack or an error; false when it was not valid. */
  private async onMessage(session: SocketSession, bytes: Buffer, context: RequestContext): Promise<boolean> {
    const decoded = decodeMessage(bytes, parseSocketMessage);
    const correlation = answerCorrelation(decoded.correlation);
    if ('error' in decoded) {
      session.reply({ type: 'error', ...this.refusalOf(decoded.error, session), ...correlation });
      return false;
    }
    try {
      this.gateway.admit(session.deviceId);
      const result = await this.gateway.handle(session.deviceId, decoded.message, context);
      session.reply({ type: 'ack', ...result, ...correlation });
    } catch (error) {
      session.reply({ type: 'error', ...this.refusalOf(error, session), ...correlation });
    }
    return true;
  }

  private refusalOf(error: unknown, session: SocketSession) {
    const { code, message, details } = this.gateway.refusal(error, session.deviceId);
    return { code, message, ...(details.length > 0 ? { details } : {}) };
  }
}

function bytesOf(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

export class SocketSession implements DeviceSession {
  /** Closed because its credentials went (or for garbage): what it queued is dropped. */
  revoked = false;

  constructor(
    readonly ws: WebSocket,
    readonly deviceId: string,
    readonly certificateFingerprint: string | null,
    private readonly maxBufferedBytes: number,
  ) {}

  isOpen(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  deliver(commands: readonly CommandRow[]): void {
    for (const command of commands) this.reply({ type: 'command', command: presentCommand(command) });
  }

  revoke(reason: string): void {
    this.cutOff(CLOSE.credentialsRevoked, reason);
  }

  cutOff(code: number, reason: string): void {
    this.revoked = true;
    this.ws.close(code, reason);
  }

  /** A device that does not read its answers is closed (1013) rather than queued for without bound; it reconnects. */
  reply(message: Record<string, unknown>): void {
    if (!this.isOpen()) return;
    const text = JSON.stringify(message);
    if (this.ws.bufferedAmount > 0 && this.ws.bufferedAmount + Buffer.byteLength(text) > this.maxBufferedBytes) return this.cutOff(CLOSE.tryAgainLater, 'not reading its answers; reconnect');
    this.ws.send(text);
  }
}
