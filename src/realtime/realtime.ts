import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Subscription } from 'rxjs';
import { WebSocketServer, type WebSocket } from 'ws';
import { certificatePrincipal, certificateRefusal, credentialOf, subscriberCredentialOf, unauthenticated } from '../api/auth.js';
import { originAllowed } from '../api/origins.js';
import { requestIdOf } from '../api/request-context.js';
import type { Accounts } from '../commands/accounts.js';
import type { CredentialRefusal } from '../commands/credentials.js';
import type { Principal, Services } from '../commands/services.js';
import { DomainError } from '../domain/errors.js';
import type { RecordedEvent } from '../domain/events.js';
import { findApiKey, findSession } from '../projections/users.js';
import type { DeviceChannel } from './device-channel.js';
import { CLOSE } from './messages.js';
import { Subscriber, type LiveItem } from './subscriber.js';
import { audienceOf, liveMessage } from './visibility.js';

export interface RealtimeOptions {
  /** A subscriber whose unsent data passes this is closed with 1013. */
  maxBufferedBytes: number;
  pingIntervalMs: number;
  /** Other endpoints upgraded on the same port (MQTT over WebSocket at /mqtt), by path. */
  upgrades?: Record<string, (req: IncomingMessage, socket: Duplex, head: Buffer) => void>;
}

const MAX_MESSAGE_BYTES = 1024 * 1024;

interface Tracked {
  ws: WebSocket;
  alive: boolean;
  sessionId: string | null;
  /** A subscriber (user) or a device; the user it speaks for (a device's owner); the API key it was opened with, if any. */
  kind: Principal['kind'];
  userId: string;
  apiKeyId: string | null;
  /** When its session token, API key or client certificate stops being valid (ISO); null: not by time. */
  expiresAt: string | null;
}

/** The two raw WebSocket endpoints: /ws for subscribers, /ws/device for devices. */
export class Realtime {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  private readonly subscribers = new Set<Subscriber>();
  private readonly tracked = new Set<Tracked>();
  private subscription: Subscription | undefined;
  private pinger: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly services: Services,
    private readonly accounts: Accounts,
    private readonly devices: DeviceChannel,
    private readonly options: RealtimeOptions,
  ) {}

  attach(http: Server): void {
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Whatever goes wrong, the socket is not left open unanswered.
      this.upgrade(req, socket, head).catch((error: unknown) => {
        this.services.logger.error({ err: error }, 'websocket upgrade failed');
        socket.destroy();
      });
    });
    // The 101 answer carries the request id too, as every answer does.
    this.wss.on('headers', (headers, req) => {
      const requestId = upgradeIds.get(req);
      if (requestId) headers.push(`X-Request-Id: ${requestId}`);
    });
    this.subscription = this.services.runner.applied$.subscribe((events) => this.onApplied(events));
    this.pinger = setInterval(() => this.ping(), this.options.pingIntervalMs).unref();
  }

  /** Says going-away (1001) to every socket; one whose upgrade was still authenticating hears it on arrival. */
  close(): void {
    this.closed = true;
    clearInterval(this.pinger);
    this.subscription?.unsubscribe();
    for (const { ws } of this.tracked) ws.close(CLOSE.goingAway, 'server shutting down');
  }

  /** Drops the sockets whose peers never answered the going-away (the stop's grace is over). */
  terminate(): void {
    for (const { ws } of this.tracked) ws.terminate();
  }

  /** Authenticates before the upgrade completes; anything else is answered 401 and dropped. */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const requestId = requestIdOf(firstHeader(req.headers['x-request-id']));
    upgradeIds.set(req, requestId);
    const url = URL.canParse(req.url ?? '/', 'http://localhost') ? new URL(req.url ?? '/', 'http://localhost') : null;
    const refuse = (status: keyof typeof REASONS, code: string, message: string) => {
      // The path only: the query may carry a token.
      this.services.logger.info({ request_id: requestId, method: req.method, path: url?.pathname ?? null, status }, 'websocket upgrade refused');
      refuseUpgrade(socket, requestId, status, code, message);
    };
    if (!url) return refuse(400, 'validation_failed', 'the URL is malformed');
    const other = this.options.upgrades?.[url.pathname];
    if (other) return other(req, socket, head);
    const kind = url.pathname === '/ws' ? 'user' : url.pathname === '/ws/device' ? 'device' : null;
    if (!kind) return refuse(404, 'not_found', 'no WebSocket endpoint here');
    const headers = { header: (name: string) => firstHeader(req.headers[name.toLowerCase()]) };
    const queryToken = url.searchParams.get('token') ?? undefined;
    const credential = kind === 'user' ? subscriberCredentialOf(headers, queryToken) : credentialOf(headers, queryToken);
    // A page of another site would ride on the user's cookie (cross-site WebSocket hijacking); a token it cannot know.
    const byCookie = kind === 'user' && credential !== undefined && credential !== queryToken;
    if (byCookie && !originAllowed(this.services.config.corsOrigins, firstHeader(req.headers.origin))) {
      return refuse(403, 'forbidden', 'this origin may not subscribe with the session cookie; pass ?token=');
    }
    let principal: Principal | null = null;
    let refused: CredentialRefusal | undefined;
    let refusedCertificate: string | null = null;
    try {
      if (credential) {
        const identified = await this.accounts.identify(credential);
        if ('principal' in identified) principal = identified.principal;
        else refused = identified.refused;
      }
      // A device may instead present a bound client certificate (mutual TLS); a subscriber may not.
      else if (kind === 'device') ({ principal, refused: refusedCertificate } = certificatePrincipal(this.accounts, req.socket, this.services.logger));
    } catch (error) {
      this.services.logger.error({ err: error }, 'websocket authentication failed');
    }
    if (refusedCertificate) return refuse(401, 'unauthenticated', certificateRefusal(refusedCertificate));
    // As a REST 401 says it: what was wrong with the credential, never whose it might be. One of
    // the other kind (a device token on /ws) reads as not valid here.
    if (!principal || principal.kind !== kind) return refuse(401, 'unauthenticated', unauthenticated(principal ? 'invalid' : (refused ?? 'missing')).message);
    if (principal.kind === 'user' && principal.apiKey?.scope === 'devices:ingest') return refuse(403, 'forbidden', 'this API key may only submit device data (scope devices:ingest)');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, principal, requestId));
  }

  private accept(ws: WebSocket, principal: Principal, requestId: string): void {
    const sessionId = principal.kind === 'user' ? principal.sessionId : null;
    const apiKeyId = principal.kind === 'user' ? (principal.apiKey?.id ?? null) : null;
    const expiresAt =
      principal.kind === 'device'
        ? (principal.certificate?.expiresAt ?? null)
        : sessionId !== null
          ? (findSession(this.services.sql, sessionId)?.expires_at ?? null)
          : apiKeyId !== null
            ? (findApiKey(this.services.sql, apiKeyId)?.expires_at ?? null)
            : null;
    if (this.closed) {
      ws.close(CLOSE.goingAway, 'server shutting down');
      return;
    }
    const tracked: Tracked = { ws, alive: true, sessionId, kind: principal.kind, userId: principal.userId, apiKeyId, expiresAt };
    this.tracked.add(tracked);
    ws.on('pong', () => (tracked.alive = true));
    ws.on('error', (error) => this.services.logger.debug({ err: error }, 'websocket error'));
    ws.on('close', () => this.tracked.delete(tracked));
    if (principal.kind === 'device') {
      void this.devices.connect(ws, principal, requestId).catch((error: unknown) => {
        this.services.logger.warn({ err: error }, 'device connect failed');
        // Told its credentials are gone, a device stops reconnecting: only when they are.
        if (error instanceof DomainError && error.code === 'service_unavailable') ws.close(CLOSE.tryAgainLater, 'the server cannot take writes now; reconnect shortly');
        else ws.close(CLOSE.credentialsRevoked, 'device unavailable');
      });
      return;
    }
    const subscriber = new Subscriber(ws, principal, this.services, this.options.maxBufferedBytes);
    this.subscribers.add(subscriber);
    ws.on('close', () => this.subscribers.delete(subscriber));
    ws.on('message', (data, isBinary) => void subscriber.onMessage(isBinary ? '' : data.toString('utf8')).catch((error: unknown) => this.services.logger.error({ err: error }, 'subscriber message failed')));
    subscriber.welcome();
  }

  /** Fans each applied event out once: its audience and message are computed once for all subscribers. */
  private onApplied(events: readonly RecordedEvent[]): void {
    const items: LiveItem[] = this.subscribers.size === 0 ? [] : events.map((event) => ({ event, audience: audienceOf(this.services.sql, event), message: liveMessage(event) }));
    for (const item of items) for (const subscriber of this.subscribers) subscriber.onLive(item);
    for (const event of events) this.revokeSockets(event);
  }

  /** A credential that stops working closes the sockets it opened, as it would refuse the next REST call. */
  private revokeSockets(event: RecordedEvent): void {
    const closeWhere = (match: (t: Tracked) => boolean, reason: string) => {
      for (const t of this.tracked) if (match(t)) t.ws.close(CLOSE.credentialsRevoked, reason);
    };
    switch (event.type) {
      case 'session.ended':
        return closeWhere((t) => t.sessionId === event.data.session_id, 'logged out');
      case 'api_key.revoked':
        return closeWhere((t) => t.apiKeyId === event.data.key_id, 'API key revoked');
      case 'api_key.rotated':
        for (const t of this.tracked) if (t.apiKeyId === event.data.key_id) t.expiresAt = event.data.valid_until;
        return this.closeExpired();
      case 'user.disabled':
      case 'user.erased':
        return closeWhere((t) => t.kind === 'user' && t.userId === event.data.user_id, 'user disabled');
      default:
        return;
    }
  }

  /** A socket lives no longer than the session, key or certificate it was opened with, as a REST call with it would not. */
  closeExpired(): void {
    const now = this.services.clock.now().toISOString();
    for (const t of this.tracked) if (t.expiresAt !== null && t.expiresAt <= now) t.ws.close(CLOSE.credentialsRevoked, t.kind === 'device' ? 'client certificate expired' : 'credentials expired');
  }

  /**
   * Every interval: a peer that did not answer the last ping is dropped. A closing socket is
   * left to its close handshake: a slow reader's pong waits behind the data before the close
   * frame, and dropping it would turn its 1013 into a 1006.
   */
  private ping(): void {
    for (const t of this.tracked) {
      if (t.ws.readyState !== t.ws.OPEN) continue;
      if (!t.alive) {
        t.ws.terminate();
        continue;
      }
      t.alive = false;
      t.ws.ping();
    }
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

const REASONS = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found' } as const;

/** Each upgrade's request id, for the 101 answer's headers. */
const upgradeIds = new WeakMap<IncomingMessage, string>();

function refuseUpgrade(socket: Duplex, requestId: string, status: keyof typeof REASONS, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message, details: [], request_id: requestId } });
  const head = [`HTTP/1.1 ${status} ${REASONS[status]}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, `X-Request-Id: ${requestId}`, 'X-Content-Type-Options: nosniff', 'Connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}
