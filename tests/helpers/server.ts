import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { ManualClock } from '../../src/domain/clock.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server.js';

export interface TestServer {
  url: string;
  server: RunningServer;
  clock: ManualClock;
  dataDir: string;
  /** Closes the server and starts a new one on the same data directory. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** The real server on an ephemeral port with a temporary data dir and a hand-moved clock. */
export async function startTestServer(
  env: Record<string, string> = {},
  clock = new ManualClock('2026-03-01T12:00:00.000Z'),
  options: Pick<ServerOptions, 'projectionRetryTimer' | 'shutdownGraceMs' | 'logger'> = {},
): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'iot-test-'));
  const config = loadConfig({ PORT: '0', MQTT_PORT: '0', MQTT_TLS_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent', ...env });
  const logger = options.logger ?? pino({ level: 'silent' });
  const handle: TestServer = {
    url: '',
    server: undefined as unknown as RunningServer,
    clock,
    dataDir,
    async restart() {
      await handle.server.close();
      handle.server = await startServer(config, { clock, logger, ...options });
      handle.url = handle.server.url;
    },
    async close() {
      await handle.server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  handle.server = await startServer(config, { clock, logger, ...options });
  handle.url = handle.server.url;
  return handle;
}
