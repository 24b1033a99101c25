import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/eventlog/index.js';
import { DATABASE_FILE, startServer } from '../../src/server.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, uniqueName, type Data, type Group, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

/**
 * A trigger refusing inserts into a read model stands in for a full disk or a broken file: the
 * batch holding the event fails, and the read models stall at their checkpoint until a retry.
 */
const failInsertsInto = (server: TestServer, table: string) =>
  server.server.db.exec(`CREATE TRIGGER disk_full BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
const healAndRetry = async (server: TestServer, retries: Array<() => void>, api: ReturnType<typeof client>) => {
  server.server.db.exec(`DROP TRIGGER disk_full`);
  retries.shift()!();
  await expect.poll(async () => (await api.get('/api/health')).status).toBe(200);
};
/** Until the batch holding the failing write has failed: turns of the event loop, no sleep. */
const untilStalled = async (server: TestServer) => {
  while (!server.server.services.runner.stalled()) await new Promise((resolve) => setImmediate(resolve));
};
/** Retries wait for the test to run them. */
const startHeld = (retries: Array<() => void>) =>
  startTestServer({}, undefined, {
    projectionRetryTimer: (_delayMs, retry) => {
      retries.push(retry);
      return () => undefined;
    },
  });

describe('read models stalled by a failing batch', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const retries: Array<() => void> = [];
  let owner: Awaited<ReturnType<typeof registerUser>>;
  let device: Awaited<ReturnType<typeof createDevice>>;
  let fetched: string;
  let expiring: string;
  /** The write whose batch fails: stored, it waits for the retry that shows it. */
  let firstWrite: ReturnType<typeof api.post>;
  const headPosition = () => server.server.services.log.headPosition();
  const groupNames = async () => (await api.get<List<Group>>('/api/groups', { token: owner.token })).body.data.map((g) => g.name);
  const commandStatus = async (id: string) => (await api.get<Data<{ status: string }>>(`/api/commands/${id}`, { token: owner.token })).body.data.status;
  const queue = async (body: Record<string, unknown>) => (await api.post<Data<{ id: string }>>(`/api/devices/${device.id}/commands`, body, { token: owner.token })).body.data.id;

  beforeAll(async () => {
    server = await startHeld(retries);
    server.server.timers.stop(); // the tests run the timer jobs themselves
    owner = await registerUser(api);
    device = await createDevice(api, owner.token);
    fetched = await queue({ command_type: 'reboot' });
    expiring = await queue({ command_type: 'blink', expires_in: 1 });
    // Heard from: online, so connecting later stores nothing of its own.
    expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 19 } }, { token: device.credentials.auth_token })).status).toBe(201);
    failInsertsInto(server, 'groups');
    firstWrite = api.post('/api/groups', { name: 'Floor 1' }, { token: owner.token });
    await untilStalled(server);
  });
  afterAll(() => server.close());

  it('says so at /api/health, so whatever watches the server knows', async () => {
    expectError(await api.get('/api/health'), 503, 'service_unavailable');
  });

  it('refuses every write before storing it, with Retry-After and no SQL in the message, and keeps answering reads', async () => {
    const head = headPosition();
    const refused = await api.post('/api/groups', { name: 'Floor 2' }, { token: owner.token });
    expect(expectError(refused, 503, 'service_unavailable').message).not.toMatch(/disk|SQL/i);
    expect(refused.headers.get('retry-after')).toBe('5');
    // Writes decided from their own stream, which would otherwise be stored and only then refused.
    expectError(await api.put(`/api/devices/${device.id}`, { description: 'moved' }, { token: owner.token }), 503, 'service_unavailable');
    expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: owner.token }), 503, 'service_unavailable');
    const token = device.credentials.auth_token;
    expectError(await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token }), 503, 'service_unavailable');
    // A GET that stores (fetched commands become sent): the device must not lose them.
    expectError(await api.get(`/api/devices/${device.id}/commands/pending`, { token }), 503, 'service_unavailable');
    expect(headPosition()).toBe(head);
    const read = await api.get<Data<{ id: string }>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(read.status).toBe(200);
    expect(read.body.data.id).toBe(device.id);
    // A POST that stores nothing is a read: a dry run still answers.
    const draft = { name: 'draft', trigger_conditions: { type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 30 }, actions: [{ type: 'alert', severity: 'info', message: 'x' }] };
    const dryRun = await api.post('/api/automation/rules/test', { rule: draft, start_date: '2026-03-01', end_date: '2026-03-02' }, { token: owner.token });
    expect(dryRun.status, JSON.stringify(dryRun.body)).toBe(200);
    expect(await groupNames()).toEqual([]);
  });

  it('tells a device connecting over /ws/device to come back later (1013), not that its credentials are gone, though it is online', async () => {
    const head = headPosition();
    const ws = await connect(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.credentials.auth_token)}`));
    expect((await ws.waitForClose()).code).toBe(1013);
    expect(headPosition()).toBe(head);
  });

  it('runs no timer job that stores: a command past its expiry waits, rather than being expired again and again', async () => {
    const head = headPosition();
    server.clock.advance(10_000);
    await server.server.timers.runAll();
    await server.server.timers.runAll();
    expect(headPosition()).toBe(head);
  });

  it('resumes on a retry once the cause is gone: the write that waited is answered and appears once, nothing was lost, writes are taken again', async () => {
    await healAndRetry(server, retries, api);
    expect((await firstWrite).status).toBe(201);
    expect(await groupNames()).toEqual(['Floor 1']);
    expect(await commandStatus(fetched)).toBe('pending');
    await server.server.timers.runAll();
    expect(await commandStatus(expiring)).toBe('expired');
    expect((await api.post('/api/groups', { name: 'Floor 2' }, { token: owner.token })).status).toBe(201);
    expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token })).status).toBe(201);
    expect((await groupNames()).sort()).toEqual(['Floor 1', 'Floor 2']);
    expect(retries).toEqual([]);
  });
});

describe('the automation engine across a stall', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const retries: Array<() => void> = [];

  beforeAll(async () => {
    server = await startHeld(retries);
    server.server.timers.stop();
  });
  afterAll(() => server.close());

  let owner: Awaited<ReturnType<typeof registerUser>>;
  const createRule = async (triggerConditions: Record<string, unknown>) =>
    (
      await api.post<Data<{ id: string }>>(
        '/api/automation/rules',
        { name: uniqueName('rule'), trigger_conditions: triggerConditions, actions: [{ type: 'alert', severity: 'warning', message: 'fired' }] },
        { token: owner.token },
      )
    ).body.data.id;
  const executions = async (ruleIds: readonly string[]) => {
    await server.server.automation.idle();
    return Promise.all(ruleIds.map(async (id) => (await api.get<List<unknown>>(`/api/automation/rules/${id}/executions`, { token: owner.token })).body.data.length));
  };

  it('given two rules on one reading and a stall when the first fires, then after the retry the second fires too, and the first once', async () => {
    owner = await registerUser(api);
    const device = await createDevice(api, owner.token);
    const hot = { type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 30 };
    const rules = [await createRule(hot), await createRule(hot)];
    failInsertsInto(server, 'rule_executions');

    const reading = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 35 } }, { token: device.credentials.auth_token });
    expect(reading.status).toBe(201);
    await untilStalled(server);

    await healAndRetry(server, retries, api);
    await expect.poll(() => executions(rules)).toEqual([1, 1]);
  });

  it('given a time rule whose window opens during a stall, then it fires once the read models resume, not never', async () => {
    const rule = await createRule({ type: 'time', after: '13:00' });
    await server.server.timers.runAll();
    failInsertsInto(server, 'groups');
    const stalling = api.post('/api/groups', { name: 'stall' }, { token: owner.token });
    await untilStalled(server);
    server.clock.set('2026-03-01T13:30:00.000Z');
    await server.server.timers.runAll();
    await healAndRetry(server, retries, api);
    expect((await stalling).status).toBe(201);
    await server.server.timers.runAll();
    expect(await executions([rule])).toEqual([1]);
  });
});

describe('a start whose catch-up fails', () => {
  it('stops the start with the cause itself, and starts once the cause is gone, the stored write shown', async () => {
    const retries: Array<() => void> = [];
    const server = await startHeld(retries);
    const api = client(() => server.url);
    const owner = await registerUser(api);
    failInsertsInto(server, 'groups');
    const stored = api.post('/api/groups', { name: 'Basement' }, { token: owner.token });
    await untilStalled(server);
    await server.server.close();
    // Stopped while stalled: the write that waited hears 503, its event stays in the log.
    expect((await stored).status).toBe(503);

    const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: server.dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
    const options = { logger: pino({ level: 'silent' }), projectionRetryTimer: () => () => undefined };
    await expect(startServer(config, options)).rejects.toThrow('database or disk is full');

    const db = openDatabase(join(server.dataDir, DATABASE_FILE));
    db.exec(`DROP TRIGGER disk_full`);
    db.close();
    const restarted = await startServer(config, options);
    try {
      // By API key: a session token is signed with a secret each configuration loads afresh.
      const groups = await client(() => restarted.url).get<List<Group>>('/api/groups', { headers: { 'x-api-key': owner.apiKey } });
      expect(groups.body.data.map((g) => g.name)).toEqual(['Basement']);
    } finally {
      await restarted.close();
      rmSync(server.dataDir, { recursive: true, force: true });
    }
  });
});
