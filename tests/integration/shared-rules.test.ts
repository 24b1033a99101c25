import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createGroup, expectValidation, uniqueName, type Data, type List } from '../helpers/fixtures.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, submitOk, type Owner } from '../helpers/telemetry-fixtures.js';

interface Execution {
  actions: Array<{ type: string; status: string; detail: string | null }>;
}
type Device = Awaited<ReturnType<typeof deviceOf>>;

/** Rules of members: they read the devices shared with them and act only where they may operate. */
describe('shared fleets: rules', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  let operator: Owner;
  let viewer: Owner;
  let stranger: Owner;
  let group: { id: string };
  let shared: Device;
  let unshared: Device;

  beforeAll(async () => {
    server = await startTestServer();
    await registerUser(api, uniqueName('radmin'));
    [owner, operator, viewer, stranger] = [await registerUser(api), await registerUser(api), await registerUser(api), await registerUser(api)];
    group = await createGroup(api, owner.token);
    shared = await deviceOf(api, owner, { group_id: group.id });
    unshared = await deviceOf(api, owner);
    for (const [who, role] of [[operator, 'operator'], [viewer, 'viewer']] as const) {
      expect((await api.post(`/api/groups/${group.id}/members`, { user_id: who.id, role }, { token: owner.token })).status).toBe(201);
    }
  });
  afterAll(() => server.close());

  const settle = () => server.server.automation.idle();
  const hot = (device: { id: string }) => ({ type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 30 });
  const alert = (extra: Record<string, unknown> = {}) => ({ type: 'alert', severity: 'warning', message: 'hot', ...extra });
  const ruleBody = (body: Record<string, unknown>) => ({ name: uniqueName('rule'), ...body });
  const createRule = async (who: Owner, body: Record<string, unknown>): Promise<string> => {
    const answer = await api.post<Data<{ id: string }>>('/api/automation/rules', ruleBody(body), { token: who.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    return answer.body.data.id;
  };
  const reading = async (device: Device, temperature: number) => {
    await submitOk(api, device.id, device.token, { sensor_readings: { temperature } });
    await settle();
  };
  const executions = async (who: Owner, ruleId: string): Promise<Execution[]> => {
    const answer = await api.get<List<Execution>>(`/api/automation/rules/${ruleId}/executions?limit=500`, { token: who.token });
    expect(answer.status).toBe(200);
    return [...answer.body.data].reverse();
  };
  const rulesOf = async (who: Owner) => (await api.get<List<unknown>>('/api/automation/rules?limit=500', { token: who.token })).body.data.length;

  it('a member names shared devices in conditions; actions only where they operate; anything else is refused with 400 and nothing is stored', async () => {
    await createRule(viewer, { trigger_conditions: hot(shared), actions: [alert()] });
    await createRule(operator, { trigger_conditions: hot(shared), actions: [{ type: 'command', device_id: shared.id, command_type: 'ping' }], is_enabled: false });
    const before = await Promise.all([viewer, operator, stranger].map(rulesOf));
    const refused: Array<[Owner, Record<string, unknown>, string]> = [
      [viewer, { trigger_conditions: hot(shared), actions: [{ type: 'command', device_id: shared.id, command_type: 'ping' }] }, 'actions.0.device_id'],
      [viewer, { trigger_conditions: hot(shared), actions: [alert({ device_id: shared.id })] }, 'actions.0.device_id'],
      [viewer, { trigger_conditions: hot(shared), actions: [{ type: 'command', group_id: group.id, command_type: 'ping' }] }, 'actions.0.group_id'],
      [operator, { trigger_conditions: hot(unshared), actions: [alert()] }, 'trigger_conditions.device_id'],
      [operator, { trigger_conditions: hot(shared), actions: [{ type: 'command', device_id: unshared.id, command_type: 'ping' }] }, 'actions.0.device_id'],
      [stranger, { trigger_conditions: hot(shared), actions: [alert()] }, 'trigger_conditions.device_id'],
      [stranger, { trigger_conditions: hot(shared), actions: [{ type: 'command', group_id: group.id, command_type: 'ping' }] }, 'actions.0.group_id'],
    ];
    for (const [who, body, path] of refused) expectValidation(await api.post('/api/automation/rules', ruleBody(body), { token: who.token }), path);
    expect(await Promise.all([viewer, operator, stranger].map(rulesOf))).toEqual(before);
    // A dry run of a member's draft reads the shared device's history.
    await reading(shared, 20);
    const dry = await api.post<Data<{ events_examined: number }>>(
      '/api/automation/rules/test',
      { rule: ruleBody({ trigger_conditions: hot(shared), actions: [alert()] }), start_date: '2026-01-01T00:00:00.000Z', end_date: '2026-12-31T00:00:00.000Z' },
      { token: viewer.token },
    );
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.data.events_examined).toBeGreaterThan(0);
  });

  it("an operator's rule commands a shared device and group as their owner's commands and alerts on the device; once the role falls to viewer the rule still reads the device but its actions fail", async () => {
    const actions = [{ type: 'command', device_id: shared.id, command_type: 'reboot' }, alert({ device_id: shared.id }), { type: 'command', group_id: group.id, command_type: 'identify' }];
    const ruleId = await createRule(operator, { trigger_conditions: hot(shared), actions });
    await reading(shared, 35);
    const [first] = await executions(operator, ruleId);
    expect(first!.actions.map((a) => a.status)).toEqual(['done', 'done', 'done']);
    const commands = await api.get<List<{ command_type: string; user_id: string }>>(`/api/commands?device_id=${shared.id}&limit=500`, { token: owner.token });
    expect(commands.body.data.filter((c) => c.command_type === 'reboot' || c.command_type === 'identify').map((c) => c.user_id)).toEqual([owner.id, owner.id]);
    const alerts = await api.get<List<{ rule_id: string | null }>>(`/api/alerts?device_id=${shared.id}&limit=500`, { token: owner.token });
    expect(alerts.body.data.filter((a) => a.rule_id === ruleId)).toHaveLength(1);

    expect((await api.post(`/api/groups/${group.id}/members`, { user_id: operator.id, role: 'viewer' }, { token: owner.token })).status).toBe(201);
    await reading(shared, 20);
    await reading(shared, 36);
    const after = await executions(operator, ruleId);
    expect(after).toHaveLength(2);
    expect(after[1]!.actions.map((a) => [a.status, a.detail])).toEqual([
      ['failed', `device ${shared.id} is no longer the rule owner's to operate`],
      ['failed', `device ${shared.id} is no longer the rule owner's to operate`],
      ['failed', `group ${group.id} is no longer the rule owner's to operate`],
    ]);
    expect((await api.post(`/api/groups/${group.id}/members`, { user_id: operator.id, role: 'operator' }, { token: owner.token })).status).toBe(201);
  });

  it("a revoked member's rule no longer sees the device's readings", async () => {
    const late = await registerUser(api);
    expect((await api.post(`/api/groups/${group.id}/members`, { user_id: late.id, role: 'viewer' }, { token: owner.token })).status).toBe(201);
    const ruleId = await createRule(late, { trigger_conditions: hot(shared), actions: [alert()] });
    expect((await api.del(`/api/groups/${group.id}/members/${late.id}`, { token: owner.token })).status).toBe(200);
    await reading(shared, 20);
    await reading(shared, 40);
    expect(await executions(late, ruleId)).toEqual([]);
  });

  it("after a transfer the giver's rules no longer evaluate the device's readings, neither as trigger nor as a fact", async () => {
    const moving = await deviceOf(api, owner);
    const staying = await deviceOf(api, owner);
    const ruleId = await createRule(owner, { trigger_conditions: { any: [hot(moving), hot(staying)] }, actions: [alert()] });
    await reading(moving, 20);
    expect((await api.post(`/api/devices/${moving.id}/transfer`, { user_id: stranger.id }, { token: owner.token })).status).toBe(201);
    expect((await api.post(`/api/devices/${moving.id}/transfer/accept`, undefined, { token: stranger.token })).status).toBe(200);
    await reading(moving, 40);
    // Before the transfer the moved device's last reading (40) would have held the condition here.
    await reading(staying, 10);
    expect(await executions(owner, ruleId)).toEqual([]);
    await reading(staying, 35);
    expect(await executions(owner, ruleId)).toHaveLength(1);
  });

  it("a replay rebuilds the rules, their executions and what they raised exactly", async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});
