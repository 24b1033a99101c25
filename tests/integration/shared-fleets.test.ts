import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, expectError, expectValidation, type Data } from '../helpers/fixtures.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

type Who = 'owner' | 'manager' | 'operator' | 'viewer' | 'stranger' | 'admin';

describe('shared fleets: group members', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const users = {} as Record<Who | 'newcomer', Awaited<ReturnType<typeof registerUser>>>;
  let parent: { id: string };
  let sub: { id: string };
  let device: { id: string; credentials: { auth_token: string } };

  beforeAll(async () => {
    server = await startTestServer();
    users.admin = await registerUser(api);
    for (const who of ['owner', 'manager', 'operator', 'viewer', 'stranger', 'newcomer'] as const) users[who] = await registerUser(api);
    parent = await createGroup(api, users.owner.token);
    sub = await createGroup(api, users.owner.token, { parent_id: parent.id });
    device = await createDevice(api, users.owner.token, { group_id: sub.id });
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token });
    // Granted on the parent: the device, in a subgroup, is reached through it.
    for (const role of ['manager', 'operator', 'viewer'] as const) {
      const granted = await api.post(`/api/groups/${parent.id}/members`, { user_id: users[role].id, role }, { token: users.owner.token });
      expect(granted.status).toBe(201);
    }
  });
  afterAll(() => server.close());

  it("lists a member's shared devices beside their own; a stranger sees none of them", async () => {
    const listed = async (who: Who) => (await api.get<Data<Array<{ id: string }>>>('/api/devices?limit=500', { token: users[who].token })).body.data.map((d) => d.id);
    for (const who of ['owner', 'manager', 'operator', 'viewer', 'admin'] as const) expect(await listed(who)).toContain(device.id);
    expect(await listed('stranger')).not.toContain(device.id);
    const own = await createDevice(api, users.viewer.token);
    expect(await listed('viewer')).toEqual(expect.arrayContaining([own.id, device.id]));
    expect(await listed('operator')).not.toContain(own.id);
  });

  it('streams the events of shared devices on /ws to members, not to strangers; a revoked grant stops them at once', async () => {
    const subscribe = async (token: string) => {
      const ws = await connect(wsUrl(server.url, `/ws?token=${token}`));
      ws.send({ type: 'subscribe', event_types: ['readings.recorded'] });
      await ws.next((m) => m.type === 'subscribed');
      return ws;
    };
    const viewer = await subscribe(users.viewer.token);
    const stranger = await subscribe(users.stranger.token);
    const readings = (ws: Awaited<ReturnType<typeof subscribe>>) => ws.received.filter((m) => m.type === 'event' && m.data.device_id === device.id).length;
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 30 } }, { token: device.credentials.auth_token });
    await viewer.next((m) => m.type === 'event' && m.data.device_id === device.id);
    const late = await registerUser(api);
    expect((await api.post(`/api/groups/${sub.id}/members`, { user_id: late.id, role: 'viewer' }, { token: users.owner.token })).status).toBe(201);
    const lateWs = await subscribe(late.token);
    expect((await api.del(`/api/groups/${sub.id}/members/${late.id}`, { token: users.owner.token })).status).toBe(200);
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 31 } }, { token: device.credentials.auth_token });
    await viewer.until(() => readings(viewer) === 2);
    expect(readings(stranger)).toBe(0);
    expect(readings(lateWs)).toBe(0);
    for (const ws of [viewer, stranger, lateWs]) await ws.close();
  });

  it("lists the alerts of shared devices to members; operators acknowledge them, viewers get 403, strangers 404; clearing stays the owner's", async () => {
    const hot = await createDevice(api, users.owner.token, { group_id: sub.id, configuration: { thresholds: { temperature: { min: 0, max: 30 } } } });
    await api.post(`/api/devices/${hot.id}/data`, { sensor_readings: { temperature: 40 } }, { token: hot.credentials.auth_token });
    const alertsOf = async (who: Who) => (await api.get<Data<Array<{ id: string; device_id: string }>>>(`/api/alerts?device_id=${hot.id}`, { token: users[who].token })).body.data;
    const [alert] = await alertsOf('owner');
    expect(alert).toBeDefined();
    for (const who of ['viewer', 'operator', 'manager'] as const) expect((await alertsOf(who)).map((a) => a.id)).toEqual([alert!.id]);
    expect(await alertsOf('stranger')).toEqual([]);
    expectError(await api.post(`/api/alerts/${alert!.id}/acknowledge`, undefined, { token: users.stranger.token }), 404, 'not_found');
    expectError(await api.post(`/api/alerts/${alert!.id}/acknowledge`, undefined, { token: users.viewer.token }), 403, 'forbidden');
    expectError(await api.post(`/api/alerts/${alert!.id}/clear`, undefined, { token: users.operator.token }), 403, 'forbidden');
    const acknowledged = await api.post<Data<{ status: string }>>(`/api/alerts/${alert!.id}/acknowledge`, undefined, { token: users.operator.token });
    expect(acknowledged.status).toBe(200);
    expect(acknowledged.body.data.status).toBe('acknowledged');
    const analyticsOf = async (who: Who) => (await api.get<Data<{ devices: { total: number }; readings: { total: number }; alerts: { active: number } }>>(`/api/analytics?device_id=${hot.id}`, { token: users[who].token })).body.data;
    const owners = await analyticsOf('owner');
    expect(owners).toMatchObject({ devices: { total: 1 }, readings: { total: 1 } });
    expect(await analyticsOf('viewer')).toEqual(owners);
    expectError(await api.get(`/api/analytics?device_id=${hot.id}`, { token: users.stranger.token }), 404, 'not_found');
    expect((await api.post(`/api/alerts/${alert!.id}/clear`, undefined, { token: users.owner.token })).status).toBe(200);
  });

  it('lists the shared groups beside their own to members (the tree from the granted group down); strangers none', async () => {
    const ids = async (who: Who, query = '') => (await api.get<Data<Array<{ id: string; children?: Array<{ id: string }> }>>>(`/api/groups?limit=500${query}`, { token: users[who].token })).body.data;
    expect((await ids('viewer')).map((g) => g.id).sort()).toEqual([parent.id, sub.id].sort());
    const tree = await ids('viewer', '&tree=true');
    expect(tree.map((g) => g.id)).toEqual([parent.id]);
    expect(tree[0]!.children!.map((g) => g.id)).toEqual([sub.id]);
    expect((await ids('stranger')).map((g) => g.id)).not.toContain(parent.id);
  });

  it("serves the shared devices' events in /api/events to members, not to strangers", async () => {
    const streamsOf = async (who: Who) =>
      new Set((await api.get<Data<Array<{ stream_id: string }>>>(`/api/events?device_id=${device.id}&limit=500`, { token: users[who].token })).body.data.map((e) => e.stream_id));
    expect(await streamsOf('viewer')).toEqual(await streamsOf('owner'));
    expect((await streamsOf('viewer')).has(`device-${device.id}`)).toBe(true);
    expect((await streamsOf('stranger')).size).toBe(0);
  });

  it('fleet-wide analytics count the shared devices (their readings and active alerts) as GET /api/devices and /api/alerts list them', async () => {
    type Analytics = { devices: { total: number }; readings: { total: number }; alerts: { active: number } };
    const analyticsOf = async (who: Who, query = '') => (await api.get<Data<Analytics>>(`/api/analytics${query}`, { token: users[who].token })).body.data;
    const total = async (who: Who, path: string) => (await api.get<{ meta: { total: number } }>(path, { token: users[who].token })).body.meta.total;
    const hot = await createDevice(api, users.owner.token, { group_id: sub.id, configuration: { thresholds: { temperature: { min: 0, max: 30 } } } });
    await api.post(`/api/devices/${hot.id}/data`, { sensor_readings: { temperature: 40 } }, { token: hot.credentials.auth_token });
    const fleet = await analyticsOf('viewer');
    const listed = (await api.get<Data<Array<{ id: string }>>>('/api/devices?limit=500', { token: users.viewer.token })).body.data;
    expect(listed.some((d) => d.id === device.id)).toBe(true);
    expect(fleet.devices.total).toBe(listed.length);
    const perDevice = await Promise.all(listed.map(async (d) => (await analyticsOf('viewer', `?device_id=${d.id}`)).readings.total));
    expect(fleet.readings.total).toBe(perDevice.reduce((a, b) => a + b, 0));
    expect(fleet.readings.total).toBeGreaterThan(0);
    expect(fleet.alerts.active).toBe(await total('viewer', '/api/alerts?status=active&limit=500'));
    expect(fleet.alerts.active).toBeGreaterThan(0);
    expect((await analyticsOf('stranger')).devices.total).toBe(await total('stranger', '/api/devices?limit=500'));
  });

  it('lists the commands of shared devices to members; an operator cancels them, a viewer gets 403, a stranger 404', async () => {
    const queued = await api.post<Data<{ id: string }>>(`/api/devices/${device.id}/commands`, { command_type: 'blink' }, { token: users.owner.token });
    const id = queued.body.data.id;
    const listed = async (who: Who) => (await api.get<Data<Array<{ id: string }>>>(`/api/commands?device_id=${device.id}&limit=500`, { token: users[who].token })).body.data.map((c) => c.id);
    expect(await listed('viewer')).toContain(id);
    expect(await listed('stranger')).toEqual([]);
    expect((await api.get(`/api/commands/${id}`, { token: users.viewer.token })).status).toBe(200);
    expectError(await api.get(`/api/commands/${id}`, { token: users.stranger.token }), 404, 'not_found');
    expectError(await api.post(`/api/commands/${id}/cancel`, undefined, { token: users.viewer.token }), 403, 'forbidden');
    expectError(await api.post(`/api/commands/${id}/cancel`, undefined, { token: users.stranger.token }), 404, 'not_found');
    expect((await api.post(`/api/commands/${id}/cancel`, undefined, { token: users.operator.token })).status).toBe(200);
  });

  it('lists the members, and the grants a user holds with what they allow', async () => {
    const members = (await api.get<Data<Array<{ user_id: string; username: string; role: string }>>>(`/api/groups/${parent.id}/members`, { token: users.viewer.token })).body.data;
    expect(members.map((m) => [m.username, m.role]).sort((a, b) => a[1]!.localeCompare(b[1]!))).toEqual([
      [users.manager.username, 'manager'],
      [users.operator.username, 'operator'],
      [users.viewer.username, 'viewer'],
    ]);
    const me = (await api.get<Data<{ group_permissions: Array<{ group_id: string; role: string; permissions: string[] }> }>>('/api/auth/user', { token: users.viewer.token })).body.data;
    expect(me.group_permissions).toEqual([{ group_id: parent.id, role: 'viewer', permissions: ['devices:read', 'telemetry:read', 'groups:read', 'members:read'] }]);
    const stranger = (await api.get<Data<{ group_permissions: unknown[] }>>('/api/auth/user', { token: users.stranger.token })).body.data;
    expect(stranger.group_permissions).toEqual([]);
  });

  it('refuses bad grants with 400 and stores nothing', async () => {
    const before = (await api.get<Data<unknown[]>>(`/api/groups/${parent.id}/members`, { token: users.owner.token })).body.data.length;
    expectValidation(await api.post(`/api/groups/${parent.id}/members`, { user_id: users.stranger.id, role: 'owner' }, { token: users.owner.token }), 'role');
    expectValidation(await api.post(`/api/groups/${parent.id}/members`, { role: 'viewer' }, { token: users.owner.token }), 'user_id');
    expectValidation(await api.post(`/api/groups/${parent.id}/members`, { user_id: users.owner.id, role: 'viewer' }, { token: users.owner.token }), 'user_id');
    expectValidation(await api.post(`/api/groups/${parent.id}/members`, { user_id: '00000000-0000-4000-8000-000000000000', role: 'viewer' }, { token: users.owner.token }), 'user_id');
    expectValidation(await api.post(`/api/groups/${parent.id}/members`, { username: 'nobody_at_all', role: 'viewer' }, { token: users.owner.token }), 'username');
    expectError(await api.post(`/api/groups/${parent.id}/members`, { user_id: users.stranger.id, role: 'viewer', group_id: sub.id }, { token: users.owner.token }), 400, 'validation_failed');
    expectError(await api.del(`/api/groups/${parent.id}/members/${users.stranger.id}`, { token: users.owner.token }), 404, 'not_found');
    expect((await api.get<Data<unknown[]>>(`/api/groups/${parent.id}/members`, { token: users.owner.token })).body.data.length).toBe(before);
  });

  it('granting again changes the role; revoking closes access at once', async () => {
    const newcomer = users.newcomer;
    expect((await api.post(`/api/groups/${sub.id}/members`, { user_id: newcomer.id, role: 'viewer' }, { token: users.owner.token })).status).toBe(201);
    expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'ping' }, { token: newcomer.token }), 403, 'forbidden');
    const promoted = await api.post(`/api/groups/${sub.id}/members`, { username: newcomer.username, role: 'operator' }, { token: users.owner.token });
    expect(promoted.body.data).toMatchObject({ user_id: newcomer.id, role: 'operator' });
    expect((await api.post(`/api/devices/${device.id}/commands`, { command_type: 'ping' }, { token: newcomer.token })).status).toBe(202);
    expect((await api.del(`/api/groups/${sub.id}/members/${newcomer.id}`, { token: users.owner.token })).status).toBe(200);
    expectError(await api.get(`/api/devices/${device.id}`, { token: newcomer.token }), 404, 'not_found');
    expectError(await api.get(`/api/groups/${sub.id}/members`, { token: newcomer.token }), 404, 'not_found');
  });

  it("erasing a member revokes every grant they hold, each a revocation event in its group's history", async () => {
    const leaving = await registerUser(api);
    for (const [group, role] of [[parent, 'viewer'], [sub, 'operator']] as const) {
      expect((await api.post(`/api/groups/${group.id}/members`, { user_id: leaving.id, role }, { token: users.owner.token })).status).toBe(201);
    }
    // Grants on the leaving user's own group end too: nobody stays a member of what is left of it.
    const theirs = await createGroup(api, leaving.token);
    expect((await api.post(`/api/groups/${theirs.id}/members`, { user_id: users.viewer.id, role: 'viewer' }, { token: leaving.token })).status).toBe(201);
    expect((await api.del(`/api/users/${leaving.id}`, { token: users.admin.token })).status).toBe(200);
    const viewersGroups = (await api.get<Data<Array<{ id: string }>>>('/api/groups?limit=500', { token: users.viewer.token })).body.data;
    expect(viewersGroups.map((g) => g.id)).not.toContain(theirs.id);
    expectError(await api.get(`/api/groups/${theirs.id}`, { token: users.viewer.token }), 404, 'not_found');
    for (const group of [parent, sub]) {
      const members = (await api.get<Data<Array<{ user_id: string }>>>(`/api/groups/${group.id}/members`, { token: users.owner.token })).body.data;
      expect(members.map((m) => m.user_id)).not.toContain(leaving.id);
      const history = (await api.get<Data<Array<{ type: string; data: { member_id?: string } }>>>(`/api/events?stream_id=group-${group.id}&limit=500`, { token: users.owner.token })).body.data;
      expect(history.filter((e) => e.type === 'group.member_revoked' && e.data.member_id === leaving.id)).toHaveLength(1);
    }
  });

  it('a replay rebuilds the memberships exactly', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});

describe('device transfer: the owner offers, the receiver accepts', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Awaited<ReturnType<typeof registerUser>>;
  let giver: Awaited<ReturnType<typeof registerUser>>;
  let receiver: Awaited<ReturnType<typeof registerUser>>;
  let stranger: Awaited<ReturnType<typeof registerUser>>;

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api);
    giver = await registerUser(api);
    receiver = await registerUser(api);
    stranger = await registerUser(api);
  });
  afterAll(() => server.close());

  it('moves the device with its token and history; the giver loses it, nobody else can take it', async () => {
    const group = await createGroup(api, giver.token);
    const device = await createDevice(api, giver.token, { group_id: group.id });
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token });
    expectValidation(await api.post(`/api/devices/${device.id}/transfer`, { user_id: giver.id }, { token: giver.token }), 'user_id');
    expectValidation(await api.post(`/api/devices/${device.id}/transfer`, {}, { token: giver.token }), 'user_id');
    expectError(await api.post(`/api/devices/${device.id}/transfer`, { user_id: stranger.id }, { token: receiver.token }), 404, 'not_found');
    const offered = await api.post(`/api/devices/${device.id}/transfer`, { username: receiver.username }, { token: giver.token });
    expect(offered.status).toBe(201);
    expect(offered.body.data).toEqual({ device_id: device.id, to_user_id: receiver.id, status: 'offered' });
    expectError(await api.get(`/api/devices/${device.id}`, { token: receiver.token }), 404, 'not_found');
    expectError(await api.post(`/api/devices/${device.id}/transfer/accept`, undefined, { token: stranger.token }), 404, 'not_found');
    expectError(await api.post(`/api/devices/${device.credentials.device_id}/transfer/accept`, undefined, { token: device.credentials.auth_token }), 403, 'forbidden');

    const accepted = await api.post<Data<{ id: string; user_id: string; group_id: string | null }>>(`/api/devices/${device.id}/transfer/accept`, undefined, { token: receiver.token });
    expect(accepted.status).toBe(200);
    expect(accepted.body.data).toMatchObject({ id: device.id, user_id: receiver.id, group_id: null });
    expectError(await api.get(`/api/devices/${device.id}`, { token: giver.token }), 404, 'not_found');
    expectError(await api.post(`/api/devices/${device.id}/transfer/accept`, undefined, { token: receiver.token }), 404, 'not_found');
    expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.credentials.auth_token })).status).toBe(200);
    const history = await api.get<Data<Array<{ type: string }>>>(`/api/devices/${device.id}/history?limit=500`, { token: receiver.token });
    expect(history.body.data.map((e) => e.type)).toEqual(expect.arrayContaining(['device.registered', 'readings.recorded', 'device.transfer_offered', 'device.transferred']));
    expect((await api.get<Data<unknown[]>>(`/api/devices/${device.id}/data`, { token: receiver.token })).body.data).toHaveLength(1);
  });

  it('refuses a receiver at their quota (403); anyone else learns nothing (404)', async () => {
    const device = await createDevice(api, giver.token);
    const full = await registerUser(api);
    expect((await api.call('PATCH', `/api/users/${full.id}`, { device_quota: 0 }, { token: admin.token })).status).toBe(200);
    await api.post(`/api/devices/${device.id}/transfer`, { user_id: full.id }, { token: giver.token });
    expectError(await api.post(`/api/devices/${device.id}/transfer/accept`, undefined, { token: full.token }), 403, 'quota_exceeded');
    expectError(await api.post(`/api/devices/${device.id}/transfer/accept`, undefined, { token: stranger.token }), 404, 'not_found');
    expect((await api.get(`/api/devices/${device.id}`, { token: giver.token })).status).toBe(200);
  });

  it('a replay rebuilds the transferred ownership exactly', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});
