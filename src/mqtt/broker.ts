import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { certificateRefusal } from '../api/auth.js';
import type { Principal, Services } from '../commands/services.js';
import { MAX_BODY_BYTES, type DeviceGateway, type DevicePrincipal } from '../gateway/index.js';
import type { TlsCredentials } from '../transport/tls.js';
import { FrameGuard, guardFrames } from './packet-guard.js';
import { slimParser, uncachedPacketNumbers, type ParserInternals } from './parser-slim.js';
import { DupMemories, MqttSession, type SessionLimits } from './session.js';
import { ProvisioningSession, type Provision } from './provisioning.js';
import { isDeviceToServer, provisioningVerdict, subscriptionVerdict, topics } from './topics.js';

/** A payload up to twice the HTTP body limit is read and answered payload_too_large; a larger packet closes the connection unread. */
export const MAX_PACKET_BYTES = 2 * MAX_BODY_BYTES;

/**
 * The broker parses everything a socket has buffered as one batch and reads again only once the
 * batch is handled, so a flooding client has at most a batch in flight. Sockets buffer at most
 * READ_BATCH_BYTES (Node 20's default, explicit since Node 22 raised it to 64 KiB); with one
 * socket chunk of up to 64 KiB a batch of the smallest publishes is about 1,300 messages: past
 * 4,000 in flight something else is wrong, and the client is closed.
 */
const READ_BATCH_BYTES = 16 * 1024;
export const DEFAULT_LIMITS: SessionLimits = { maxInFlight: 4_000, maxOutboundBytes: 1024 * 1024 };
/** How long, and for how many devices, a payload's content is remembered to recognise a DUP redelivery without idempotency_key. */
const DUP_WINDOW_MS = 10 * 60_000;
const DUP_DEVICES = 10_000;

export interface ListenerState {
  state: 'off' | 'listening' | 'failed';
  port: number | null;
  error?: string;
}

const NOT_AUTHORIZED = 5;
const SERVER_UNAVAILABLE = 3;

const ignore = (): void => undefined;

/** One function for every connection's parser (not a closure each). */
function grantAtMostQos1(packet: { cmd: string; subscriptions?: Subscription[] }): void {
  if (packet.cmd === 'subscribe') for (const subscription of packet.subscriptions ?? []) subscription.qos = Math.min(subscription.qos, 1) as 0 | 1;
}

/**
 * The embedded MQTT 3.1.1 broker: aedes, with the device gateway behind its hooks. Devices
 * authenticate at CONNECT (client id = device id, password = device token), publish and
 * subscribe only under their own prefix, and are acknowledged only once their messages are
 * stored and projected. Listens on MQTT_PORT and over WebSocket at /mqtt.
 */
export class EmbeddedBroker {
  readonly tcp: ListenerState = { state: 'off', port: null };
  readonly tls: ListenerState = { state: 'off', port: null };
  private tlsServer: Server | undefined;
  private stopReloads: (() => void) | undefined;
  private readonly sessions = new Map<Client, MqttSession>();
  private readonly provisioners = new Map<Client, ProvisioningSession>();
  private readonly memories: DupMemories;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PACKET_BYTES });
  private server: Server | undefined;
  private readonly stopConfigurations: () => void;
  /** One for all connections (not a closure each). */
  private readonly tooLarge = () => this.services.logger.warn({ max_bytes: MAX_PACKET_BYTES }, 'mqtt packet too large: connection closed');

  private constructor(
    private readonly services: Services,
    private readonly gateway: DeviceGateway,
    private readonly aedes: Aedes,
    private readonly limits: SessionLimits,
    private readonly provision: Provision | null,
  ) {
    this.memories = new DupMemories(DUP_DEVICES, DUP_WINDOW_MS, () => services.clock.now().getTime());
    aedes.preConnect = (client, packet, done) => this.preConnect(client, packet, done);
    aedes.authenticate = (client, username, password, done) => void this.authenticate(client, username, password, done);
    aedes.authorizePublish = (client, packet, done) => this.authorizePublish(client, packet, done);
    aedes.authorizeSubscribe = (client, subscription, done) => this.authorizeSubscribe(client, subscription, done);
    // The device's own publishes are for the server: never forwarded to a subscriber.
    aedes.authorizeForward = (_client, packet) => (isDeviceToServer(packet.topic) ? null : packet);
    aedes.on('clientReady', (client) => void this.ready(client));
    aedes.on('clientError', (client, error) => services.logger.debug({ client_id: client.id, err: error.message }, 'mqtt client error'));
    aedes.on('connectionError', (_client, error) => services.logger.debug({ err: error.message }, 'mqtt connection error'));
    this.stopConfigurations = gateway.onConfiguration((deviceId, configuration) => this.retainConfiguration(deviceId, configuration));
  }

  /** `provision`: what answers provision/request (POST /api/devices/provision's handler); null leaves provisioning to HTTP. */
  static async create(services: Services, gateway: DeviceGateway, provision: Provision | null = null, limits: SessionLimits = DEFAULT_LIMITS): Promise<EmbeddedBroker> {
    uncachedPacketNumbers();
    const aedes = await Aedes.createBroker({ heartbeatInterval: 3_600_000, maxClientsIdLength: 128, queueLimit: 42 });
    return new EmbeddedBroker(services, gateway, aedes, limits, provision);
  }

  /** Opens MQTT_PORT; a port already taken is logged once and reported, and the server goes on without it. */
  async listen(port: number, host: string): Promise<void> {
    if (port === 0) return;
    this.server = await this.open(createServer({ highWaterMark: READ_BATCH_BYTES }, (socket) => this.accept(socket)), port, host, this.tcp, 'MQTT_PORT');
  }

  /**
   * Opens MQTT over TLS on MQTT_TLS_PORT with the HTTP listener's certificate, reloaded with it
   * (SIGHUP). With TLS_CLIENT_CA a device may connect with a bound client certificate and no password.
   */
  async listenTls(port: number, host: string, credentials: TlsCredentials): Promise<void> {
    if (port === 0) return;
    const server = createTlsServer({ ...credentials.serverOptions(), highWaterMark: READ_BATCH_BYTES }, (socket) => this.accept(socket));
    this.tlsServer = await this.open(server, port, host, this.tls, 'MQTT_TLS_PORT');
    if (this.tlsServer) this.stopReloads = credentials.attach(server);
  }

  private async open(server: Server, port: number, host: string, state: ListenerState, variable: string): Promise<Server | undefined> {
    return new Promise((resolve) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        state.state = 'failed';
        state.error = error.code === 'EADDRINUSE' ? `port ${port} is already in use` : error.message;
        this.services.logger.error({ port, err: error.message }, `MQTT listener not started: ${variable}=${port} ${error.code === 'EADDRINUSE' ? 'is already in use (another broker?)' : 'cannot be opened'}; set ${variable} to a free port, or 0 to turn the listener off`);
        resolve(undefined);
      });
      server.listen(port, host, () => {
        state.state = 'listening';
        const address = server.address();
        state.port = typeof address === 'object' && address ? address.port : port;
        this.services.logger.info({ port: state.port, variable }, 'mqtt listening');
        resolve(server);
      });
    });
  }

  /** MQTT over WebSocket at /mqtt: the same broker behind an HTTP upgrade. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(createWebSocketStream(ws), req));
  }

  status(): { tcp: ListenerState; tls: ListenerState; websocket: string } {
    return { tcp: { ...this.tcp }, tls: { ...this.tls }, websocket: '/mqtt' };
  }

  async close(): Promise<void> {
    this.stopConfigurations();
    this.stopReloads?.();
    // Stop accepting first; a listener's close completes once the broker has closed every client.
    const stopped = Promise.all([this.server, this.tlsServer].map((server) => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))));
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    for (const ws of this.wss.clients) ws.terminate();
    await stopped;
  }

  private accept(stream: Duplex | Socket, req?: IncomingMessage): void {
    stream.on('error', ignore);
    guardFrames(stream, new FrameGuard(MAX_PACKET_BYTES), this.tooLarge);
    this.aedes.handle(stream, req);
  }

  /** QoS 2 subscriptions are granted as QoS 1 (as AWS and Azure do): rewritten before the broker reads them. The parser is trimmed for the long idle life of most connections. */
  private preConnect(client: Client, packet: ConnectPacket, done: (error: Error | null, success: boolean) => void): void {
    // aedes keeps its packet parser private; without one (a changed aedes) QoS 2 is granted as asked.
    const parser = (client as unknown as { _parser?: ParserInternals })._parser;
    parser?.prependListener('packet', grantAtMostQos1);
    slimParser(parser, packet);
    done(null, true);
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (error: AuthenticateError | null, success: boolean | null) => void): Promise<void> {
    const refuse = (returnCode: number, reason: string) => {
      // Never the secret: the client id and why.
      this.services.logger.warn({ client_id: client.id.slice(0, 128), reason }, 'mqtt connection refused');
      done(Object.assign(new Error(reason), { returnCode }) as AuthenticateError, null);
    };
    try {
      this.gateway.refuseWhileStalled();
      const token = password && password.length > 0 ? password.toString('utf8') : username;
      const byCertificate = token === undefined || token === client.id ? this.certificateDevice(client) : { principal: null, refused: null };
      if (byCertificate.refused) return refuse(NOT_AUTHORIZED, certificateRefusal(byCertificate.refused));
      const principal = byCertificate.principal ?? (await this.gateway.principalOf(token));
      if (principal?.kind === 'user') return this.acceptProvisioner(client, principal, done, refuse);
      if (!principal) return refuse(NOT_AUTHORIZED, 'bad or revoked credentials');
      if (principal.deviceId !== client.id) return refuse(NOT_AUTHORIZED, 'the client id is not the device id of this token');
      this.openSession(client, principal);
      done(null, true);
    } catch (error) {
      refuse(SERVER_UNAVAILABLE, error instanceof Error ? error.message : 'unavailable');
    }
  }

  /**
   * Its own method so that the closures kept for the connection's lifetime capture only the
   * client: made inside authenticate they would share its scope, and keep the CONNECT packet,
   * its password and the broker's connect state alive for as long as the device stays connected.
   */
  private openSession(client: Client, principal: DevicePrincipal): void {
    const context = { principal, requestId: `mqtt-${client.id}` };
    this.sessions.set(client, new MqttSession(client, principal.deviceId, context, this.gateway, this.limits, this.memories));
    // Not clientDisconnect: the broker does not say it for a connection another one with the same client id took over.
    client.conn.once('close', () => this.gone(client));
  }

  /** A device by the client certificate of its TLS connection, when it offered one. */
  private certificateDevice(client: Client): { principal: DevicePrincipal | null; refused: string | null } {
    return client.conn instanceof TLSSocket ? this.gateway.authenticateCertificate(client.conn) : { principal: null, refused: null };
  }

  /** Not a device: a provisioning key (or the owner's session) may connect to provision, and nothing else. */
  private acceptProvisioner(client: Client, user: Extract<Principal, { kind: 'user' }>, done: (error: AuthenticateError | null, success: boolean | null) => void, refuse: (code: number, reason: string) => void): void {
    if (!this.provision) return refuse(NOT_AUTHORIZED, 'provisioning is not offered over MQTT here');
    this.provisioners.set(client, new ProvisioningSession(client, { principal: user, requestId: `mqtt-provision-${client.id}` }, this.gateway, this.provision));
    client.conn.once('close', () => this.provisioners.delete(client));
    done(null, true);
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    if (client === null) return done();
    const provisioner = this.provisioners.get(client);
    if (provisioner) return provisioner.receive(packet, done);
    const session = this.sessions.get(client);
    if (!session) return done(new Error('not a device session'));
    session.receive(packet, done);
  }

  private authorizeSubscribe(client: Client, subscription: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    const session = this.sessions.get(client);
    const provisioner = this.provisioners.get(client);
    const verdict = session ? subscriptionVerdict(session.deviceId, subscription.topic) : provisioner ? provisioningVerdict(provisioner.responseTopic, subscription.topic) : 'disconnect';
    if (verdict === 'allow') return done(null, subscription);
    this.services.logger.warn({ client_id: client.id, topic: subscription.topic.slice(0, 200), verdict }, 'mqtt subscription outside the device topics');
    if (verdict === 'refuse') return done(null, null);
    done(new Error('subscription outside the device topics'));
  }

  /** Online, its pending commands delivered, its desired configuration retained for it. */
  private async ready(client: Client): Promise<void> {
    const session = this.sessions.get(client);
    if (!session) return;
    try {
      const configuration = this.gateway.desiredConfiguration(session.deviceId);
      if (configuration) this.retainConfiguration(session.deviceId, configuration);
      await this.gateway.open(session, session.context);
    } catch (error) {
      this.services.logger.warn({ err: error, device_id: session.deviceId }, 'mqtt device connect failed');
      client.close();
    }
  }

  private gone(client: Client): void {
    const session = this.sessions.get(client);
    if (!session) return;
    this.sessions.delete(client);
    this.gateway.close(session);
  }

  /** Retained for the device; an empty retained message (the device is gone) clears it. */
  private retainConfiguration(deviceId: string, configuration: Record<string, unknown> | null): void {
    const payload = configuration === null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(configuration));
    this.aedes.publish({ cmd: 'publish', topic: topics.config(deviceId), payload, qos: 1, retain: true, dup: false }, () => undefined);
  }
}
