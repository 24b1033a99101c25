import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { answerClientErrors } from './api/client-errors.js';
import { RequestGate } from './api/request-gate.js';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { createApp } from './api/app.js';
import { ActionRunner } from './automation/actions.js';
import { AutomationEngine } from './automation/engine.js';
import { OfflineDetector } from './automation/offline-detector.js';
import { Timers, type TimerJob } from './automation/timers.js';
import { Accounts } from './commands/accounts.js';
import { UserAdmin } from './commands/user-admin.js';
import { DeviceCommands } from './commands/device-commands.js';
import { Rules } from './commands/rules.js';
import { Rollouts } from './commands/rollouts.js';
import { Templates } from './commands/templates.js';
import { DeviceChannel } from './realtime/device-channel.js';
import { DeviceGateway } from './gateway/index.js';
import { createMqtt } from './mqtt/index.js';
import { provisionDevice } from './api/routes/devices.js';
import { parse } from './api/route.js';
import { provisionBody } from './api/schemas/devices.js';
import { Realtime } from './realtime/realtime.js';
import { DeviceLocks } from './commands/device-locks.js';
import { KeyedLock } from './commands/keyed-lock.js';
import { Telemetry } from './commands/telemetry.js';
import { Devices } from './commands/devices.js';
import { Groups } from './commands/groups.js';
import type { Services } from './commands/services.js';
import type { Config } from './config.js';
import { systemClock, type Clock } from './domain/clock.js';
import { DATABASE_FILE, SqliteEventLog, applyLogRetention, archiveDirOf, claimDataDir, personalKeysIn, secretBoxFor, openDatabase, startCheckpointer, type Checkpointer, type SqliteDatabase } from './eventlog/index.js';
import { ProjectionRunner, Sql, createProjections } from './projections/index.js';
import type { RetryTimer } from './projections/runner.js';
import { TlsCredentials } from './transport/tls.js';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  db: SqliteDatabase;
  http: Server;
  /** The certificate served when TLS is on (null: plain HTTP); `reload()` is what SIGHUP does. */
  tls: TlsCredentials | null;
  /** Timer-driven work (offline sweep, ...); tests run it by hand after moving the clock. */
  timers: Timers;
  /** The rule engine; idle() resolves once it has handled everything applied so far. */
  automation: AutomationEngine;
  /**
   * One graceful stop however often it is called: stops accepting, answers requests in flight with
   * `Connection: close` and refuses later ones on kept-alive connections, says going-away to the
   * sockets, flushes the read models, closes the database and releases the data directory.
   */
  close(): Promise<void>;
}

export interface ServerOptions {
  clock?: Clock;
  logger?: Logger;
  /** How often live sockets are pinged (30 s); a peer silent for a whole interval is dropped. */
  pingIntervalMs?: number;
  /** When a failed projection batch is tried again (a timer with backoff); tests run retries by hand. */
  projectionRetryTimer?: RetryTimer;
  /** How long a stop waits for requests in flight before closing their connections (10 s). */
  shutdownGraceMs?: number;
}

/** A whole request, body included, within a minute: a body trickled in a byte at a time is cut off, not waited for. */
const REQUEST_TIMEOUT_MS = 60_000;

export { DATABASE_FILE };

export function createLogger(level: Config['logLevel']): Logger {
  return pino({
    level,
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'api_key', '*.api_key', 'auth_token', '*.auth_token', 'req.headers.authorization', 'req.headers.cookie'],
      censor: '[redacted]',
    },
  });
}

interface Store {
  release: () => void;
  db: SqliteDatabase;
  checkpointer: Checkpointer;
  log?: SqliteEventLog;
  runner?: ProjectionRunner;
}

/**
 * The database with its checkpointer, the log, and read models caught up with it: served only
 * then, since a stale session table would refuse valid tokens. A failure on the way (a
 * projection that cannot apply, a locked file) closes what was opened.
 */
async function openStore(config: Config, clock: Clock, logger: Logger, retryTimer: RetryTimer | undefined): Promise<Required<Store>> {
  const release = claimDataDir(config.dataDir);
  const db = openOrRelease(join(config.dataDir, DATABASE_FILE), release);
  const store: Store = { release, db, checkpointer: startCheckpointer(db, { onError: (message) => logger.warn({ err: message }, 'background checkpoint failed; the writer checkpoints itself') }) };
  try {
    const log = (store.log = new SqliteEventLog(db, clock, archiveDirOf(config.dataDir)));
    const runner = (store.runner = new ProjectionRunner(db, log, createProjections(config), logger, retryTimer));
    runner.start();
    await runner.caughtUp();
    return { ...store, log, runner };
  } catch (error) {
    await closeStore(store);
    throw error;
  }
}

function openOrRelease(file: string, release: () => void): SqliteDatabase {
  try {
    return openDatabase(file);
  } catch (error) {
    release();
    throw error;
  }
}

/** Lets the read models finish what the log holds (unless they failed), then closes in order. */
async function closeStore({ release, db, checkpointer, log, runner }: Store): Promise<void> {
  await runner?.stop().catch(() => undefined);
  log?.close();
  await checkpointer.stop();
  db.close();
  release();
}

/** HTTPS (and so WSS) when TLS is configured; each reload of the certificate reaches its next handshakes. */
/** LOG_ARCHIVE_AFTER_DAYS: every ten minutes, the log's old telemetry moves into sealed segments (and old segments go, with LOG_DELETE_AFTER_DAYS). */
function logRetentionJobs(config: Config, log: SqliteEventLog, clock: Clock, logger: Logger): TimerJob[] {
  const archiveAfterDays = config.logArchiveAfterDays;
  if (archiveAfterDays === null) return [];
  const run = async () => {
    const done = await applyLogRetention(log, clock.now(), { archiveAfterDays, deleteAfterDays: config.logDeleteAfterDays });
    if (done.segments > 0 || done.deleted > 0) logger.info({ segments: done.segments, events: done.events, bytes: done.bytes, deleted_segments: done.deleted }, 'log archived');
  };
  return [{ name: 'log-archive', everyMs: 600_000, run, stores: true }];
}

function createListener(tls: TlsCredentials | null, listener: RequestGate['listener']): Server {
  if (!tls) return createServer({ requestTimeout: REQUEST_TIMEOUT_MS }, listener);
  const server = createHttpsServer({ ...tls.serverOptions(), requestTimeout: REQUEST_TIMEOUT_MS }, listener);
  tls.attach(server);
  return server;
}

export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(config.logLevel);
  // Before the data directory is claimed: a certificate that cannot be read stops the start at once.
  const tls = config.tls ? new TlsCredentials(config.tls, logger) : null;
  const store = await openStore(config, clock, logger, options.projectionRetryTimer);
  const { db, log, runner } = store;

  const secrets = secretBoxFor(config);
  const personal = personalKeysIn(config.dataDir, secrets);
  const services: Services = { config, clock, log, runner, sql: new Sql(db), logger, newId: randomUUID, secrets, personal, locks: { devices: new DeviceLocks(), owners: new KeyedLock() } };
  const offline = new OfflineDetector(services);
  const telemetry = new Telemetry(services);
  const commands = new DeviceCommands(services);
  const accounts = new Accounts(services);
  const rules = new Rules(services);
  const automation = new AutomationEngine(services, new ActionRunner(services, commands, rules));
  automation.start();
  const rollouts = new Rollouts(services, commands);
  const gateway = new DeviceGateway(services, accounts, telemetry, commands, offline);
  const gatewayFeed = runner.applied$.subscribe((events) => gateway.onApplied(events));
  const devices = new Devices(services, commands);
  const broker = await createMqtt(services, gateway, (body, context) => provisionDevice(devices, parse(provisionBody, body, ''), context), tls);
  const groups = new Groups(services);
  const app = createApp(services, { accounts, devices, groups, offline, commands, rules, templates: new Templates(services), rollouts, users: new UserAdmin(services, devices, groups), gateway, health: () => ({ mqtt: broker.status() }) });
  const gate = new RequestGate(app);
  const http = createListener(tls, gate.listener);
  answerClientErrors(http);
  const realtime = new Realtime(services, accounts, new DeviceChannel(services, gateway), {
    maxBufferedBytes: config.wsMaxBufferedBytes,
    pingIntervalMs: options.pingIntervalMs ?? 30_000,
    upgrades: broker.upgrade ? { '/mqtt': broker.upgrade } : {},
  });
  realtime.attach(http);
  const timers = new Timers(
    logger,
    [
      { name: 'offline-sweep', everyMs: 1_000, run: () => offline.sweep(), stores: true },
      { name: 'command-deadlines', everyMs: 1_000, run: () => commands.checkDeadlines(), stores: true },
      { name: 'automation', everyMs: 1_000, run: () => automation.tick(), stores: true },
      { name: 'rollouts', everyMs: 1_000, run: () => rollouts.tick(), stores: true },
      { name: 'expired-sockets', everyMs: 1_000, run: async () => realtime.closeExpired(), stores: false },
      ...logRetentionJobs(config, log, clock, logger),
    ],
    () => runner.stalled() !== undefined,
  );
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(config.port, config.host, () => resolve());
  }).catch(async (error: unknown) => {
    // A start that fails leaves nothing behind: no checkpointer thread, no open database.
    realtime.close();
    await broker.close();
    await automation.stop();
    await closeStore(store);
    throw error;
  });
  const port = (http.address() as AddressInfo).port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info({ port, tls: tls !== null, position: log.headPosition() }, 'listening');
  await broker.listen();
  timers.start();

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      timers.stop();
      // A client that never finishes its request, or never answers going-away, must not hold the stop up.
      const drained = gate.close(http, options.shutdownGraceMs ?? 10_000, () => realtime.terminate());
      realtime.close();
      const brokerClosed = broker.close();
      gatewayFeed.unsubscribe();
      runner.beginStop();
      await drained;
      await brokerClosed;
      await timers.idle();
      await automation.stop();
      await closeStore(store);
      logger.info('stopped');
    })());

  return { url: `${tls ? 'https' : 'http'}://${host}:${port}`, port, services, db, http, tls, timers, automation, close };
}
