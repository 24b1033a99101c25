import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser, type Answer } from '../helpers/client.js';
import { createDevice, createGroup, expectValidation, headPosition, uniqueName, uniqueMac, type Data, type RegisteredDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Body = Record<string, unknown>;

interface Ids {
  device: RegisteredDevice;
  group: string;
  command: string;
  template: string;
  rule: string;
}

interface Walk {
  /** A body the route takes: the walk adds to it or misspells it. Absent: the route takes no body. */
  body?: (ids: Ids) => Body;
  /** The same body with a field misspelt inside a nested object the server reads, and the path of that field. */
  nested?: (ids: Ids) => { body: Body; path: string; meant: string };
  /** The route answers to the device's own token, not a user's. */
  device?: true;
  /** A broker's callback: EMQX and mosquitto-go-auth send fields of their own, which must be taken. */
  brokerCallback?: true;
}

const reading = (deviceId: string) => ({ type: 'reading', device_id: deviceId, sensor_type: 'temperature', operator: '>', value: 80 });
const alertAction = { type: 'alert', severity: 'critical', message: 'too hot' };
const rule = (ids: Ids): Body => ({ name: uniqueName('rule'), trigger_conditions: reading(ids.device.id), actions: [alertAction] });
const hotThresholds = { temperature: { maximum: 80 } };
const CHECKSUM = 'a'.repeat(64);

/** Every route of the served document, with a body it would take and a nested misspelling where it reads nested objects. */
const WALKS: Record<string, Walk> = {
  'GET /api/health': {},
  'GET /api/openapi.json': {},
  'GET /api/docs': {},
  'POST /api/auth/register': { body: () => ({ username: uniqueName('u'), email: `${uniqueName('e')}@example.com`, password: 'correct horse' }) },
  'POST /api/auth/login': { body: () => ({ username: 'nobody', password: 'whatever1' }) },
  'POST /api/auth/logout': {},
  'GET /api/auth/user': {},
  'POST /api/devices': {
    body: () => ({ name: uniqueName('d'), device_type: 'sensor' }),
    nested: () => ({ body: { name: uniqueName('d'), device_type: 'sensor', configuration: { thresholds: hotThresholds } }, path: 'configuration.thresholds.temperature.maximum', meant: 'max' }),
  },
  'POST /api/devices/provision': {
    body: () => ({ mac_address: uniqueMac(), device_type: 'sensor' }),
    nested: () => ({ body: { mac_address: uniqueMac(), configuration: { thresholds: { pressure: { mni: 1 } } } }, path: 'configuration.thresholds.pressure.mni', meant: 'min' }),
  },
  'POST /api/devices/bulk': { body: () => ({ operations: [{ action: 'delete', id: 'nothing-here' }] }) },
  'GET /api/devices': {},
  'GET /api/devices/{id}': {},
  'PUT /api/devices/{id}': {
    body: () => ({ name: uniqueName('d') }),
    nested: () => ({ body: { configuration: { thresholds: hotThresholds } }, path: 'configuration.thresholds.temperature.maximum', meant: 'max' }),
  },
  'DELETE /api/devices/{id}': {},
  'GET /api/devices/{id}/history': {},
  'GET /api/groups': {},
  'POST /api/groups': { body: () => ({ name: uniqueName('g') }) },
  'GET /api/groups/{id}': {},
  'PUT /api/groups/{id}': { body: () => ({ name: uniqueName('g') }) },
  'DELETE /api/groups/{id}': {},
  'POST /api/devices/{id}/data': {
    body: () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 20 }] }),
    nested: () => ({ body: { sensor_readings: [{ sensor_type: 'temperature', valeu: 20 }] }, path: 'sensor_readings.0.valeu', meant: 'value' }),
  },
  'POST /api/devices/{id}/heartbeat': { body: () => ({ device_status: 'online' }), device: true },
  'GET /api/devices/{id}/status': {},
  'GET /api/devices/{id}/data': {},
  'GET /api/devices/{id}/data/export': {},
  'GET /api/devices/{id}/logs': {},
  'GET /api/alerts': {},
  'POST /api/alerts/{id}/acknowledge': {},
  'POST /api/alerts/{id}/clear': {},
  'GET /api/analytics': {},
  'GET /api/events': {},
  'GET /api/events/verify': {},
  'GET /api/events/export': {},
  'POST /api/devices/{id}/commands': { body: () => ({ command_type: 'reboot', priority: 'high' }) },
  'GET /api/devices/{id}/commands/pending': { device: true },
  'POST /api/devices/{id}/commands/{command_id}/result': { body: () => ({ status: 'executed' }), device: true },
  'GET /api/commands': {},
  'GET /api/commands/{id}': {},
  'POST /api/commands/{id}/cancel': {},
  'POST /api/devices/{id}/firmware': { body: () => ({ version: '2.0.0', url: 'https://example.com/fw.bin', checksum: CHECKSUM }) },
  'POST /api/devices/{id}/firmware/progress': { body: () => ({ version: '2.0.0', status: 'downloading' }), device: true },
  'POST /api/groups/{id}/commands': { body: () => ({ command_type: 'reboot' }) },
  'GET /api/templates': {},
  'POST /api/templates': {
    body: () => ({ name: uniqueName('t'), device_type: 'sensor' }),
    nested: () => ({ body: { name: uniqueName('t'), device_type: 'sensor', thresholds: hotThresholds }, path: 'thresholds.temperature.maximum', meant: 'max' }),
  },
  'GET /api/templates/{id}': {},
  'PUT /api/templates/{id}': {
    body: () => ({ name: uniqueName('t') }),
    nested: () => ({ body: { thresholds: { temperature: { min: 1, severty: 'critical' } } }, path: 'thresholds.temperature.severty', meant: 'severity' }),
  },
  'DELETE /api/templates/{id}': {},
  'GET /api/automation/rules': {},
  'POST /api/automation/rules': {
    body: rule,
    nested: (ids) => ({ body: { ...rule(ids), trigger_conditions: { ...reading(ids.device.id), for_second: 60 } }, path: 'trigger_conditions.for_second', meant: 'for_seconds' }),
  },
  'POST /api/automation/rules/test': {
    body: (ids) => ({ rule: rule(ids), start_date: '2026-03-01', end_date: '2026-03-01' }),
    nested: (ids) => ({ body: { rule: { ...rule(ids), actions: [{ ...alertAction, severty: 'info' }] }, start_date: '2026-03-01', end_date: '2026-03-01' }, path: 'rule.actions.0.severty', meant: 'severity' }),
  },
  'GET /api/automation/rules/{id}': {},
  'PUT /api/automation/rules/{id}': {
    body: () => ({ name: uniqueName('r') }),
    nested: () => ({ body: { schedule: { every_second: 60 } }, path: 'schedule.every_second', meant: 'every_seconds' }),
  },
  'DELETE /api/automation/rules/{id}': {},
  'GET /api/automation/rules/{id}/executions': {},
  'GET /api/auth/keys': {},
  'POST /api/auth/keys': { body: () => ({ name: uniqueName('key'), scope: 'read' }) },
  'POST /api/auth/keys/{id}/rotate': { body: () => ({ grace_seconds: 60 }) },
  'DELETE /api/auth/keys/{id}': {},
  'GET /api/users': {},
  'PATCH /api/users/{id}': { body: () => ({ device_quota: 10 }) },
  'PUT /api/devices/{id}/certificate': { body: () => ({ fingerprint: CHECKSUM }) },
  'DELETE /api/devices/{id}/certificate': {},
  'GET /api/groups/{id}/members': {},
  'POST /api/groups/{id}/members': { body: () => ({ username: 'nobody-here', role: 'viewer' }) },
  'DELETE /api/groups/{id}/members/{user_id}': {},
  'POST /api/devices/{id}/transfer': { body: () => ({ username: 'nobody-here' }) },
  'POST /api/devices/{id}/transfer/accept': {},
  'DELETE /api/users/{id}': {},
  'DELETE /api/auth/user': { body: () => ({ password: 'not the password' }) },
  'POST /api/mqtt/auth': { brokerCallback: true },
  'POST /api/mqtt/authz': { brokerCallback: true },
  'POST /api/mqtt/user': { brokerCallback: true },
  'POST /api/mqtt/superuser': { brokerCallback: true },
  'POST /api/mqtt/acl': { brokerCallback: true },
};

/** One letter pair swapped: a typo one edit away. */
const misspell = (name: string): string => (name.length < 3 ? `${name}x` : `${name.slice(0, 1)}${name[2]}${name[1]}${name.slice(3)}`);

interface Operation {
  parameters?: Array<{ name: string; in: string }>;
}

describe('strict input on every route', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let token: string;
  let ids: Ids;
  let operations: Array<{ method: string; path: string; operation: Operation }>;

  beforeAll(async () => {
    server = await startTestServer();
    token = (await registerUser(api, uniqueName('strict'))).token;
    const device = await createDevice(api, token);
    const group = (await createGroup(api, token)).id;
    const command = (await api.post<Data<{ id: string }>>(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token })).body.data.id;
    const template = (await api.post<Data<{ id: string }>>('/api/templates', { name: uniqueName('t'), device_type: 'sensor' }, { token })).body.data.id;
    ids = { device, group, command, template, rule: '' };
    ids.rule = (await api.post<Data<{ id: string }>>('/api/automation/rules', rule(ids), { token })).body.data.id;
    const document = (await api.get<{ paths: Record<string, Record<string, Operation>> }>('/api/openapi.json')).body;
    operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ method: method.toUpperCase(), path, operation })));
  });
  afterAll(() => server?.close());

  const urlOf = (path: string) =>
    path
      .replace('/api/devices/{id}', `/api/devices/${ids.device.id}`)
      .replace('/api/groups/{id}', `/api/groups/${ids.group}`)
      .replace('/api/commands/{id}', `/api/commands/${ids.command}`)
      .replace('/api/templates/{id}', `/api/templates/${ids.template}`)
      .replace('/api/automation/rules/{id}', `/api/automation/rules/${ids.rule}`)
      .replace('/api/alerts/{id}', '/api/alerts/00000000-0000-4000-8000-000000000000')
      .replace('/api/auth/keys/{id}', '/api/auth/keys/00000000-0000-4000-8000-000000000000')
      .replace('/api/users/{id}', '/api/users/00000000-0000-4000-8000-000000000000')
      .replace('{command_id}', ids.command)
      .replace('{user_id}', '00000000-0000-4000-8000-000000000000');

  /** Sends, and shows the log took nothing from it. */
  async function refusedAndNothingStored(method: string, path: string, walk: Walk, send: { query?: string; body?: Body }): Promise<Answer> {
    const before = await headPosition(api);
    const credential = walk.device ? ids.device.credentials.auth_token : token;
    const answer = await api.call(method, `${urlOf(path)}${send.query ?? ''}`, send.body, { token: credential });
    expect(await headPosition(api), `${method} ${path} stored something`).toBe(before);
    return answer;
  }

  it('has a walk for every route the document lists', () => {
    const listed = operations.map(({ method, path }) => `${method} ${path}`);
    expect(listed.filter((route) => !(route in WALKS))).toEqual([]);
    expect(listed.length).toBeGreaterThan(50);
  });

  it('refuses an unknown field on every route: in the body where it takes one, else in the query', async () => {
    for (const { method, path } of operations) {
      const walk = WALKS[`${method} ${path}`]!;
      if (walk.brokerCallback) continue;
      const takesBody = walk.body !== undefined || method !== 'GET';
      const send = takesBody ? { body: { ...walk.body?.(ids), bogus_field: 1 } } : { query: '?bogus_field=1' };
      const answer = await refusedAndNothingStored(method, path, walk, send);
      const error = expectValidation(answer, 'bogus_field');
      expect(error.details.find((d) => d.path === 'bogus_field')?.message, `${method} ${path}`).toBe('unknown field "bogus_field"');
    }
  });

  it('refuses a misspelt known field on every route that has one, naming the field meant', async () => {
    let walked = 0;
    for (const { method, path, operation } of operations) {
      const walk = WALKS[`${method} ${path}`]!;
      if (walk.brokerCallback) continue;
      const body = walk.body?.(ids);
      const known = body ? Object.keys(body)[0] : operation.parameters?.find((p) => p.in === 'query')?.name;
      if (known === undefined) continue;
      const typo = misspell(known);
      const send = body ? { body: { ...Object.fromEntries(Object.entries(body).filter(([key]) => key !== known)), [typo]: body[known] } } : { query: `?${typo}=1` };
      const error = expectValidation(await refusedAndNothingStored(method, path, walk, send), typo);
      expect(error.details.find((d) => d.path === typo)?.message, `${method} ${path}`).toBe(`unknown field "${typo}"; did you mean "${known}"?`);
      walked++;
    }
    expect(walked).toBeGreaterThan(30);
  });

  it('refuses a misspelling inside the nested objects the server reads', async () => {
    for (const [route, walk] of Object.entries(WALKS)) {
      if (!walk.nested) continue;
      const [method, path] = route.split(' ') as [string, string];
      const { body, path: field, meant } = walk.nested(ids);
      const error = expectValidation(await refusedAndNothingStored(method, path, walk, { body }), field);
      const name = field.split('.').at(-1)!;
      expect(error.details.find((d) => d.path === field)?.message, route).toBe(`unknown field "${name}"; did you mean "${meant}"?`);
    }
  });

  it('answers a misspelt operation of a bulk request on its own, and stores nothing for it', async () => {
    const before = await headPosition(api);
    const answer = await api.post<{ data: Array<{ status: number; error?: { details: Array<{ path: string; message: string }> } }> }>(
      '/api/devices/bulk',
      { operations: [{ action: 'register', device: { name: uniqueName('d'), device_type: 'sensor', configuration: { thresholds: hotThresholds } } }] },
      { token },
    );
    expect(answer.status).toBe(207);
    expect(answer.body.data[0]?.status).toBe(400);
    expect(answer.body.data[0]?.error?.details[0]?.path).toBe('operations.0.device.configuration.thresholds.temperature.maximum');
    expect(await headPosition(api)).toBe(before);
  });

  it('refuses synonyms given together with different values, on bodies and queries', async () => {
    const refuse = async (method: string, path: string, send: { body?: Body; query?: string }, field: string) => expectValidation(await refusedAndNothingStored(method, path, {}, send), field);
    await refuse('POST', '/api/devices', { body: { name: uniqueName('d'), type: 'sensor', device_type: 'valve' } }, 'device_type');
    await refuse('PUT', '/api/devices/{id}', { body: { settings: { rate: 1 }, configuration: { rate: 2 } } }, 'configuration');
    await refuse('POST', '/api/groups', { body: { name: uniqueName('g'), parent_group: ids.group, parent_id: null } }, 'parent_group');
    await refuse('GET', '/api/devices', { query: '?type=sensor&device_type=valve' }, 'device_type');
    const mixed = { operator: 'AND', conditions: [reading(ids.device.id)], any: [reading(ids.device.id)] };
    await refuse('POST', '/api/automation/rules', { body: { ...rule(ids), trigger_conditions: mixed } }, 'trigger_conditions');
  });
});
