import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, buildWhenStale, startBuiltServer, type BuiltServer } from '../helpers/built-server.js';
import { client } from '../helpers/client.js';

const run = promisify(execFile);
const USER = { username: 'fleetsim', password: 'fleet simulator pw' };

/** npm run simulate, as built; answers its output, or its failure with its exit code. */
function simulate(server: BuiltServer, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = ['dist/src/tools/simulate.js', '--url', server.url, '--username', USER.username, '--password', USER.password, ...args];
  return run(process.execPath, argv, { cwd: ROOT, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** The figures of the last line (`done: ...`). */
function summary(stdout: string): Record<string, number> {
  const done = stdout.split('\n').find((line) => line.startsWith('done:'));
  expect(done, stdout).toBeDefined();
  return Object.fromEntries([...done!.matchAll(/(sent|acknowledged|refused|failed|commands answered) (\d+)/g)].map(([, name, value]) => [name!, Number(value)]));
}

describe('npm run simulate', () => {
  let server: BuiltServer;
  const api = client(() => server.url);
  let token: string;
  const simDevices = async () => (await api.get(`/api/devices?q=sim-&limit=500`, { token })).body.data as Array<{ id: string; name: string; status: string }>;
  const readingsOf = async (id: string) => (await api.get(`/api/devices/${id}/data?limit=500`, { token })).body.meta.total as number;

  beforeAll(async () => {
    buildWhenStale();
    server = await startBuiltServer();
  }, 180_000);
  afterAll(() => server?.stop());

  it('over http: registers the devices and the rule, streams readings that are all acknowledged, prints a line a second', async () => {
    const result = await simulate(server, ['--devices', '3', '--protocol', 'http', '--rate', '2', '--duration', '3']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('registered the user fleetsim');
    expect(result.stdout).toContain('3 devices: 0 reused, 3 registered');
    expect(result.stdout).toContain('created the rule "sim overheat" on sim-001');
    expect(result.stdout.split('\n').filter((line) => /^\[\s*\d+ s\]/.test(line)).length).toBeGreaterThanOrEqual(2);
    const figures = summary(result.stdout);
    expect(figures.sent).toBeGreaterThanOrEqual(9);
    expect(figures).toMatchObject({ acknowledged: figures.sent, refused: 0, failed: 0 });

    token = (await api.post('/api/auth/login', USER)).body.data.token as string;
    const devices = await simDevices();
    expect(devices.map((d) => d.name).sort()).toEqual(['sim-001', 'sim-002', 'sim-003']);
    const stored = await Promise.all(devices.map((d) => readingsOf(d.id)));
    // Four sensors a message.
    expect(stored.reduce((a, b) => a + b, 0)).toBe(figures.sent! * 4);
    const raw = (await api.get(`/api/devices/${devices[0]!.id}/data?limit=500`, { token })).body.data as Array<{ quality_score: number; unit: string }>;
    expect(raw.every((r) => r.quality_score === 100)).toBe(true);
  }, 90_000);

  it('over ws: reuses the devices, and answers a queued command with its result', async () => {
    const [first] = (await simDevices()).filter((d) => d.name === 'sim-002');
    const queued = await api.post(`/api/devices/${first!.id}/commands`, { command_type: 'set_target', parameters: { celsius: 23 } }, { token });
    expect(queued.status).toBe(202);
    const result = await simulate(server, ['--devices', '3', '--protocol', 'ws', '--rate', '1', '--duration', '3']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('3 devices: 3 reused, 0 registered');
    expect(result.stdout).not.toContain('created the rule');
    const figures = summary(result.stdout);
    expect(figures).toMatchObject({ acknowledged: figures.sent, refused: 0, failed: 0 });
    expect(figures['commands answered']).toBeGreaterThanOrEqual(1);
    const command = (await api.get(`/api/commands/${queued.body.data.id}`, { token })).body.data;
    expect(command).toMatchObject({ status: 'executed', response: { done: 'set_target' } });
    expect(await simDevices()).toHaveLength(3);
  }, 90_000);

  it('over http too, a queued command ends executed, not failed by its timeout', async () => {
    const [device] = (await simDevices()).filter((d) => d.name === 'sim-003');
    const queued = await api.post(`/api/devices/${device!.id}/commands`, { command_type: 'fan_on' }, { token });
    const result = await simulate(server, ['--devices', '3', '--rate', '1', '--duration', '3']);
    expect(result.code, result.stderr).toBe(0);
    expect((await api.get(`/api/commands/${queued.body.data.id}`, { token })).body.data.status).toBe('executed');
  }, 90_000);

  it.each([
    [['--protocol', 'pigeon'], '--protocol'],
    [['--devices', '0'], '--devices'],
    [['--rate', 'fast'], '--rate'],
    [['--url', 'not a url'], '--url'],
    [['--mqtt-url', 'http://x'], '--mqtt-url'],
  ])('refuses bad options %j with a message naming them and exit 1', async (args, named) => {
    const result = await simulate(server, args);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(named);
    expect(result.stderr).toContain('usage: npm run simulate');
  });

  it('says so, exit 1, when the account exists with another password', async () => {
    const result = await simulate(server, ['--password', 'another password entirely']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('exists with another password');
  });
});

/** A free TCP port on loopback (for a broker the test starts). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

describe('npm run simulate over mqtt (against a throwaway mosquitto)', () => {
  let server: BuiltServer;
  let broker: ChildProcess;
  let brokerUrl: string;
  let dir: string;

  beforeAll(async () => {
    buildWhenStale();
    server = await startBuiltServer();
    dir = mkdtempSync(join(tmpdir(), 'sim-mosquitto-'));
    const port = await freePort();
    writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    broker = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
    brokerUrl = `mqtt://127.0.0.1:${port}`;
    // Ready once it takes a connection.
    for (let attempt = 0; ; attempt++) {
      try {
        await (await mqtt.connectAsync(brokerUrl, { reconnectPeriod: 0, connectTimeout: 1_000 })).endAsync();
        break;
      } catch (error) {
        if (attempt > 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }, 180_000);
  afterAll(async () => {
    broker?.kill();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes readings on devices/{id}/telemetry (QoS 1) and answers a command on .../commands/{command_id}/result', async () => {
    const watcher = await mqtt.connectAsync(brokerUrl);
    const seen: Array<{ topic: string; body: Record<string, unknown> }> = [];
    watcher.on('message', (topic, payload) => seen.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
    await watcher.subscribeAsync('devices/#', { qos: 1 });

    const simulator = spawn(process.execPath, ['dist/src/tools/simulate.js', '--url', server.url, '--protocol', 'mqtt', '--mqtt-url', brokerUrl, '--devices', '2', '--rate', '2', '--duration', '4', '--no-rule', '--username', USER.username, '--password', USER.password], { cwd: ROOT });
    let stdout = '';
    simulator.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => simulator.once('exit', resolve));

    const telemetry = () => seen.filter((m) => /^devices\/[0-9a-f-]{36}\/telemetry$/.test(m.topic));
    while (telemetry().length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    const deviceId = telemetry()[0]!.topic.split('/')[1]!;
    await watcher.publishAsync(`devices/${deviceId}/commands/cmd-1`, JSON.stringify({ id: 'cmd-1', command_type: 'set_target', parameters: { celsius: 24 } }), { qos: 1 });

    expect(await exited).toBe(0);
    await watcher.endAsync();
    const devices = new Set(telemetry().map((m) => m.topic.split('/')[1]));
    expect(devices.size).toBe(2);
    for (const { body } of telemetry()) {
      expect(body).toMatchObject({ sensor_readings: expect.arrayContaining([expect.objectContaining({ sensor_type: 'temperature', unit: '°C' })]), idempotency_key: expect.stringMatching(/^sim-/) });
    }
    expect(seen.find((m) => m.topic === `devices/${deviceId}/commands/cmd-1/result`)?.body).toMatchObject({ status: 'executed', response: { done: 'set_target' } });
    const figures = summary(stdout);
    expect(figures).toMatchObject({ acknowledged: figures.sent, refused: 0, failed: 0, 'commands answered': 1 });
    expect(telemetry().length).toBe(figures.sent);
  }, 90_000);
});

describe("npm run simulate over mqtt against the server's own broker", () => {
  let server: BuiltServer;
  let mqttPort: number;
  const api = client(() => server.url);

  beforeAll(async () => {
    buildWhenStale();
    mqttPort = await freePort();
    server = await startBuiltServer({ MQTT_PORT: String(mqttPort) });
  }, 180_000);
  afterAll(() => server?.stop());

  it('stores every reading it publishes (PUBACK = stored) and executes a queued command', async () => {
    const mqttArgs = ['--protocol', 'mqtt', '--mqtt-url', `mqtt://127.0.0.1:${mqttPort}`, '--devices', '3', '--rate', '2', '--no-rule'];
    // A first short run registers the devices, so a command can wait for one of them.
    expect((await simulate(server, [...mqttArgs, '--duration', '1'])).code).toBe(0);
    const token = (await api.post('/api/auth/login', USER)).body.data.token as string;
    const devices = (await api.get('/api/devices?q=sim-&limit=500', { token })).body.data as Array<{ id: string; name: string }>;
    const queued = await api.post(`/api/devices/${devices[0]!.id}/commands`, { command_type: 'cool' }, { token });
    expect(queued.status).toBe(202);

    const result = await simulate(server, [...mqttArgs, '--duration', '3']);
    expect(result.code, result.stderr).toBe(0);
    const figures = summary(result.stdout);
    expect(figures).toMatchObject({ acknowledged: figures.sent, refused: 0, failed: 0 });
    expect(figures['commands answered']).toBeGreaterThanOrEqual(1);
    expect((await api.get(`/api/commands/${queued.body.data.id}`, { token })).body.data).toMatchObject({ status: 'executed', response: { done: 'cool' } });
    const stored = await Promise.all(devices.map(async (d) => (await api.get(`/api/devices/${d.id}/data?limit=1`, { token })).body.meta.total as number));
    const firstRun = stored.reduce((a, b) => a + b, 0) - figures.sent! * 4;
    // Whatever the first run sent, and four readings for each message of this one.
    expect(firstRun).toBeGreaterThanOrEqual(0);
    expect(firstRun % 4).toBe(0);
  }, 120_000);
});
