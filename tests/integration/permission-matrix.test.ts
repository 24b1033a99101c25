import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, uniqueMac, uniqueName, type Data } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Every route of the served document × the six kinds of caller, with the status each gets.
 * A route the document lists without a cell here fails the test: a new route must say who may
 * use it. Members hold their role on the parent of the device's group (reached through it).
 */
type Who = 'owner' | 'manager' | 'operator' | 'viewer' | 'stranger' | 'admin';
const WHO: Who[] = ['owner', 'manager', 'operator', 'viewer', 'stranger', 'admin'];
/** Those who may not act go first: a change by the owner or an admin must not hide what the others would get. */
const ORDER = [1, 2, 3, 4, 0, 5] as const;

interface Ids {
  device: string;
  group: string;
  alert: string;
  command: string;
  rule: string;
  template: string;
  key: string;
  user: string;
  member: string;
  token?: string;
}

interface Cell {
  /** Expected status per caller, in WHO order. */
  expect: [number, number, number, number, number, number];
  body?: () => unknown;
  query?: string;
  /** What this call uses up (a device deleted, an alert acknowledged, a session ended): made anew for each caller. */
  fresh?: (who: Who) => Promise<Partial<Ids>>;
}

const PASSWORD = 'correct horse';
const fingerprint = () => randomBytes(32).toString('hex');
const CHECKSUM = 'a'.repeat(64);
const R = [200, 200, 200, 200, 404, 200] as const; // read by any member
const READ: Cell['expect'] = [...R];
const MINE: Cell['expect'] = [200, 200, 200, 200, 200, 200]; // the caller's own things (lists, account)

describe('the permission matrix over every route of /api/openapi.json', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const users = {} as Record<Who, Awaited<ReturnType<typeof registerUser>>>;
  let parent: { id: string };
  let ids: Ids;
  let routes: string[];

  const asOwner = () => ({ token: users.owner.token });
  const newDevice = async (body: Record<string, unknown> = {}) => createDevice(api, users.owner.token, { group_id: ids.group, ...body });
  const created = async (path: string, body: unknown): Promise<string> => {
    const answer = await api.post<Data<{ id: string }>>(path, body, asOwner());
    expect(answer.status, `${path}: ${JSON.stringify(answer.body)}`).toBeLessThan(300);
    return answer.body.data.id;
  };
  const ruleBody = () => ({ name: uniqueName('rule'), trigger_conditions: { type: 'reading', device_id: ids.device, sensor_type: 'temperature', operator: '>', value: 80 }, actions: [{ type: 'alert', severity: 'info', message: 'hot' }] });
  const freshAlert = async (): Promise<Partial<Ids>> => {
    const hot = await newDevice({ configuration: { thresholds: { temperature: { min: 0, max: 30 } } } });
    await api.post(`/api/devices/${hot.id}/data`, { sensor_readings: { temperature: 40 } }, { token: hot.credentials.auth_token });
    const alerts = await api.get<Data<Array<{ id: string }>>>(`/api/alerts?device_id=${hot.id}`, asOwner());
    return { alert: alerts.body.data[0]!.id };
  };
  const freshDevice = async () => ({ device: (await newDevice()).id });
  const freshCommand = async () => ({ command: await created(`/api/devices/${ids.device}/commands`, { command_type: 'ping' }) });

  const CELLS: Record<string, Cell> = {
    'GET /api/health': { expect: MINE },
    'GET /api/openapi.json': { expect: MINE },
    'GET /api/docs': { expect: MINE },
    'POST /api/auth/register': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ username: uniqueName('u'), email: `${uniqueName('e')}@example.com`, password: PASSWORD }) },
    'POST /api/auth/login': { expect: MINE, body: () => ({ username: users.stranger.username, password: PASSWORD }) },
    'POST /api/auth/logout': { expect: MINE, fresh: async (who) => ({ token: (await api.post<Data<{ token: string }>>('/api/auth/login', { username: users[who].username, password: PASSWORD })).body.data.token }) },
    'GET /api/auth/user': { expect: MINE },
    'DELETE /api/auth/user': { expect: [401, 401, 401, 401, 401, 401], body: () => ({ password: 'not the password' }) },
    'GET /api/auth/keys': { expect: MINE },
    'POST /api/auth/keys': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ name: uniqueName('key'), scope: 'read' }) },
    'POST /api/auth/keys/{id}/rotate': { expect: [201, 404, 404, 404, 404, 404], body: () => ({ grace_seconds: 60 }), fresh: async () => ({ key: await created('/api/auth/keys', { name: uniqueName('key'), scope: 'read' }) }) },
    'DELETE /api/auth/keys/{id}': { expect: [200, 404, 404, 404, 404, 404], fresh: async () => ({ key: await created('/api/auth/keys', { name: uniqueName('key'), scope: 'read' }) }) },
    'GET /api/users': { expect: [403, 403, 403, 403, 403, 200] },
    'PATCH /api/users/{id}': { expect: [403, 403, 403, 403, 403, 200], body: () => ({ device_quota: 50 }) },
    'DELETE /api/users/{id}': { expect: [403, 403, 403, 403, 403, 200], fresh: async () => ({ user: (await registerUser(api)).id }) },

    'POST /api/devices': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ name: uniqueName('d'), device_type: 'sensor' }) },
    'POST /api/devices/provision': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ mac_address: uniqueMac(), device_type: 'sensor' }) },
    'POST /api/devices/bulk': { expect: [207, 207, 207, 207, 207, 207], body: () => ({ operations: [{ action: 'delete', id: 'nothing-here' }] }) },
    'GET /api/devices': { expect: MINE },
    'GET /api/devices/{id}': { expect: READ },
    'PUT /api/devices/{id}': { expect: [200, 200, 403, 403, 404, 200], body: () => ({ description: uniqueName('edited') }) },
    'DELETE /api/devices/{id}': { expect: [200, 403, 403, 403, 404, 200], fresh: freshDevice },
    'GET /api/devices/{id}/history': { expect: READ },
    'GET /api/devices/{id}/status': { expect: READ },
    'GET /api/devices/{id}/data': { expect: READ },
    'GET /api/devices/{id}/data/export': { expect: READ, query: '?format=ndjson' },
    'GET /api/devices/{id}/logs': { expect: READ },
    'POST /api/devices/{id}/data': { expect: [201, 403, 403, 403, 404, 201], body: () => ({ sensor_readings: { temperature: 21 } }) },
    'POST /api/devices/{id}/heartbeat': { expect: [403, 403, 403, 403, 403, 403], body: () => ({}) },
    'PUT /api/devices/{id}/certificate': { expect: [200, 403, 403, 403, 404, 200], body: () => ({ fingerprint: fingerprint() }), fresh: freshDevice },
    'DELETE /api/devices/{id}/certificate': {
      expect: [200, 403, 403, 403, 404, 200],
      fresh: async () => {
        const { device } = await freshDevice();
        expect((await api.call('PUT', `/api/devices/${device}/certificate`, { fingerprint: fingerprint() }, asOwner())).status).toBe(200);
        return { device };
      },
    },
    'POST /api/devices/{id}/transfer': { expect: [201, 403, 403, 403, 404, 201], body: () => ({ user_id: users.stranger.id }), fresh: freshDevice },
    'POST /api/devices/{id}/transfer/accept': {
      expect: [404, 404, 404, 404, 200, 404],
      fresh: async () => {
        const { device } = await freshDevice();
        await api.post(`/api/devices/${device}/transfer`, { user_id: users.stranger.id }, asOwner());
        return { device };
      },
    },
    'POST /api/devices/{id}/commands': { expect: [202, 202, 202, 403, 404, 202], body: () => ({ command_type: 'ping' }) },
    'GET /api/devices/{id}/commands/pending': { expect: [403, 403, 403, 403, 403, 403] },
    'POST /api/devices/{id}/commands/{command_id}/result': { expect: [403, 403, 403, 403, 403, 403], body: () => ({ status: 'executed' }) },
    'POST /api/devices/{id}/firmware': { expect: [202, 403, 403, 403, 404, 202], body: () => ({ version: '2.0.0', url: 'https://example.com/fw.bin', checksum: CHECKSUM }), fresh: freshDevice },
    'POST /api/devices/{id}/firmware/progress': { expect: [403, 403, 403, 403, 403, 403], body: () => ({ version: '2.0.0', status: 'downloading' }) },

    'GET /api/groups': { expect: MINE },
    'POST /api/groups': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ name: uniqueName('g') }) },
    'GET /api/groups/{id}': { expect: READ },
    'PUT /api/groups/{id}': { expect: [200, 200, 403, 403, 404, 200], body: () => ({ description: uniqueName('edited') }) },
    'DELETE /api/groups/{id}': { expect: [200, 403, 403, 403, 404, 200], fresh: async () => ({ group: await created('/api/groups', { name: uniqueName('g'), parent_id: parent.id }) }) },
    'POST /api/groups/{id}/commands': { expect: [202, 202, 202, 403, 404, 202], body: () => ({ command_type: 'ping' }) },
    'GET /api/groups/{id}/members': { expect: READ },
    'POST /api/groups/{id}/members': { expect: [201, 403, 403, 403, 404, 201], body: () => ({ user_id: ids.member, role: 'viewer' }) },
    'DELETE /api/groups/{id}/members/{user_id}': {
      expect: [200, 403, 403, 403, 404, 200],
      fresh: async () => {
        await api.post(`/api/groups/${ids.group}/members`, { user_id: ids.member, role: 'viewer' }, asOwner());
        return {};
      },
    },

    'GET /api/alerts': { expect: MINE },
    'POST /api/alerts/{id}/acknowledge': { expect: [200, 200, 200, 403, 404, 200], fresh: freshAlert },
    'POST /api/alerts/{id}/clear': { expect: [200, 403, 403, 403, 404, 200], fresh: freshAlert },
    'GET /api/analytics': { expect: MINE },
    'GET /api/events': { expect: MINE },
    'GET /api/events/verify': { expect: [403, 403, 403, 403, 403, 200] },
    'GET /api/events/export': { expect: MINE },

    'GET /api/commands': { expect: MINE },
    'GET /api/commands/{id}': { expect: READ },
    'POST /api/commands/{id}/cancel': { expect: [200, 200, 200, 403, 404, 200], fresh: freshCommand },

    'GET /api/templates': { expect: MINE },
    'POST /api/templates': { expect: [201, 201, 201, 201, 201, 201], body: () => ({ name: uniqueName('t'), device_type: 'sensor' }) },
    'GET /api/templates/{id}': { expect: [200, 404, 404, 404, 404, 200] },
    'PUT /api/templates/{id}': { expect: [200, 404, 404, 404, 404, 200], body: () => ({ description: uniqueName('edited') }) },
    'DELETE /api/templates/{id}': { expect: [200, 404, 404, 404, 404, 200], fresh: async () => ({ template: await created('/api/templates', { name: uniqueName('t'), device_type: 'sensor' }) }) },

    'GET /api/automation/rules': { expect: MINE },
    // An admin's rules, as anyone's, name only devices of their own or shared with them: the owner's device is refused (400).
    'POST /api/automation/rules': { expect: [201, 201, 201, 201, 400, 400], body: () => ruleBody() },
    'POST /api/automation/rules/test': { expect: [200, 200, 200, 200, 400, 400], body: () => ({ rule: ruleBody(), start_date: '2026-03-01', end_date: '2026-03-01' }) },
    'GET /api/automation/rules/{id}': { expect: [200, 404, 404, 404, 404, 200] },
    'PUT /api/automation/rules/{id}': { expect: [200, 404, 404, 404, 404, 200], body: () => ({ name: uniqueName('r') }) },
    'DELETE /api/automation/rules/{id}': { expect: [200, 404, 404, 404, 404, 200], fresh: async () => ({ rule: await created('/api/automation/rules', ruleBody()) }) },
    'GET /api/automation/rules/{id}/executions': { expect: [200, 404, 404, 404, 404, 200] },

    // A broker's callbacks judge the device credentials in the body, whoever calls: the same for every caller.
    'POST /api/mqtt/auth': { expect: MINE, body: () => ({ clientid: ids.device, username: ids.device, password: 'wrong' }) },
    'POST /api/mqtt/authz': { expect: MINE, body: () => ({ clientid: ids.device, username: ids.device, topic: 'devices/x', action: 'publish' }) },
    'POST /api/mqtt/user': { expect: [403, 403, 403, 403, 403, 403], body: () => ({ clientid: ids.device, username: ids.device, password: 'wrong' }) },
    'POST /api/mqtt/superuser': { expect: [403, 403, 403, 403, 403, 403], body: () => ({ username: ids.device }) },
    'POST /api/mqtt/acl': { expect: [403, 403, 403, 403, 403, 403], body: () => ({ clientid: ids.device, username: ids.device, topic: 'devices/x', acc: 2 }) },
  };

  beforeAll(async () => {
    server = await startTestServer();
    for (const who of ['admin', 'owner', 'manager', 'operator', 'viewer', 'stranger'] as const) users[who] = await registerUser(api);
    parent = await createGroup(api, users.owner.token);
    const group = (await createGroup(api, users.owner.token, { parent_id: parent.id })).id;
    ids = { device: '', group, alert: '', command: '', rule: '', template: '', key: '', user: (await registerUser(api)).id, member: (await registerUser(api)).id };
    const device = await newDevice();
    ids.device = device.id;
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token });
    Object.assign(ids, await freshCommand());
    ids.rule = await created('/api/automation/rules', ruleBody());
    ids.template = await created('/api/templates', { name: uniqueName('t'), device_type: 'sensor' });
    for (const role of ['manager', 'operator', 'viewer'] as const) {
      expect((await api.post(`/api/groups/${parent.id}/members`, { user_id: users[role].id, role }, asOwner())).status).toBe(201);
    }
    const document = (await api.get<{ paths: Record<string, Record<string, unknown>> }>('/api/openapi.json')).body;
    routes = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
  });
  afterAll(() => server?.close());

  const urlOf = (path: string, at: Ids) =>
    path
      .replace('/api/devices/{id}', `/api/devices/${at.device}`)
      .replace('/api/groups/{id}', `/api/groups/${at.group}`)
      .replace('/api/alerts/{id}', `/api/alerts/${at.alert}`)
      .replace('/api/commands/{id}', `/api/commands/${at.command}`)
      .replace('/api/templates/{id}', `/api/templates/${at.template}`)
      .replace('/api/automation/rules/{id}', `/api/automation/rules/${at.rule}`)
      .replace('/api/auth/keys/{id}', `/api/auth/keys/${at.key}`)
      .replace('/api/users/{id}', `/api/users/${at.user}`)
      .replace('{command_id}', at.command)
      .replace('{user_id}', at.member);

  it('has a cell for every route the document lists, and none for a route it does not', () => {
    expect(routes.filter((route) => !(route in CELLS))).toEqual([]);
    expect(Object.keys(CELLS).filter((route) => !routes.includes(route))).toEqual([]);
  });

  it('answers each caller of each route with the status of its cell; a refusal says forbidden (403) or not_found (404)', async () => {
    const mismatches: string[] = [];
    for (const route of routes) {
      const cell = CELLS[route];
      if (!cell) continue;
      const [method, path] = route.split(' ') as [string, string];
      for (const index of ORDER) {
        const who = WHO[index]!;
        const at = { ...ids, ...(await cell.fresh?.(who)) };
        const answer = await api.call(method, `${urlOf(path, at)}${cell.query ?? ''}`, cell.body?.(), { token: at.token ?? users[who].token });
        if (answer.status !== cell.expect[index]) mismatches.push(`${route} as ${who}: ${answer.status}, expected ${cell.expect[index]} ${answer.status >= 400 ? JSON.stringify(answer.body).slice(0, 160) : ''}`);
        if (answer.status === 403) expect(answer.body.error.code).toBe('forbidden');
        if (answer.status === 404) expect(answer.body.error.code).toBe('not_found');
      }
    }
    expect(mismatches).toEqual([]);
  });
});

