import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LOOKS } from '../../src/automation/dry-run.js';
import { client, registerUser, type Answer } from '../helpers/client.js';
import { createGroup, expectError, expectValidation, uniqueName, type Data, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, head, submitOk, MINUTE, type Alert, type Analytics, type Owner } from '../helpers/telemetry-fixtures.js';

/** Automation over HTTP: CRUD, validation, conflicts, end to end, dry run. */
const SECOND = 1000;

interface Rule {
  id: string;
  user_id: string;
  name: string;
  description: string | null;
  trigger_conditions: unknown;
  actions: Array<Record<string, unknown>>;
  schedule: Record<string, unknown> | null;
  is_enabled: boolean;
  cooldown_seconds: number;
  last_triggered: string | null;
  trigger_count: number;
  created_at: string;
  updated_at: string;
}

interface Execution {
  id: string;
  rule_id: string;
  triggered_at: string;
  cause: { kind: string; position: number | null; event_type: string | null };
  matched: Record<string, unknown>;
  actions: Array<{ index: number; type: string; due_at: string; status: string; detail: string | null }>;
}

interface Command {
  id: string;
  device_id: string;
  user_id: string;
  command_type: string;
  parameters: Record<string, unknown>;
  priority: string;
  status: string;
  created_at: string;
}

interface DryRun {
  events_examined: number;
  count: number;
  firings: Array<{ at: string; cause: Record<string, unknown>; matched: Record<string, unknown>; actions: Array<Record<string, unknown>> }>;
}

type Device = Awaited<ReturnType<typeof deviceOf>>;

const RULES = '/api/automation/rules';

describe('automation over HTTP', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  let stranger: Owner;

  beforeAll(async () => {
    server = await startTestServer();
    server.server.timers.stop(); // the tests run the timer jobs themselves
    await registerUser(api, uniqueName('aadmin')); // the first user is the admin; the tests use plain users
    owner = await registerUser(api, uniqueName('aowner'));
    stranger = await registerUser(api, uniqueName('astranger'));
  });
  afterAll(() => server.close());

  const settle = () => server.server.automation.idle();
  const post = (body: Record<string, unknown>, who: Owner = owner) => api.post<Data<Rule>>(RULES, { name: uniqueName('rule'), ...body }, { token: who.token });
  const createRule = async (body: Record<string, unknown>, who: Owner = owner): Promise<Rule> => {
    const answer = await post(body, who);
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    return answer.body.data;
  };
  const reading = async (device: Device, temperature: number): Promise<void> => {
    await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: temperature, unit: 'C' }] });
    await settle();
  };
  const hot = (device: { id: string }, extra: Record<string, unknown> = {}) => ({ type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 30, ...extra });
  const alert = (message = 'hot', extra: Record<string, unknown> = {}) => ({ type: 'alert', severity: 'warning', message, ...extra });
  const fan = (device: { id: string }, parameters: Record<string, unknown>) => ({ type: 'command', device_id: device.id, command_type: 'set_fan', parameters });
  const paths = (answer: Answer) => (answer.body as { error: { details: Array<{ path: string }> } }).error.details.map((d) => d.path).sort();

  describe('end to end', () => {
    it("a reading above a threshold queues the rule's command and raises its alert; the history shows it; a dry run answers the same firings", async () => {
      const startedAt = server.clock.now().toISOString();
      const device = await deviceOf(api, owner);
      const definition = {
        name: uniqueName('cooling'),
        trigger_conditions: { operator: 'AND', conditions: [hot(device)] },
        actions: [
          { type: 'command', device_id: device.id, command_type: 'fan_on', parameters: { speed: 2 }, priority: 'high' },
          { type: 'alert', severity: 'critical', message: 'greenhouse too hot', device_id: device.id },
        ],
      };
      const created = await api.post<Data<Rule>>(RULES, definition, { token: owner.token });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const rule = created.body.data;
      expect(rule).toMatchObject({ name: definition.name, user_id: owner.id, is_enabled: true, cooldown_seconds: 0, trigger_count: 0, last_triggered: null, schedule: null, description: null });
      // The alias is stored as the canonical tree.
      expect(rule.trigger_conditions).toEqual({ all: [hot(device)] });
      expect(created.headers.get('etag')).toBeTruthy();

      for (const value of [22, 25]) {
        await reading(device, value);
        server.clock.advance(10 * SECOND);
      }
      const noCommands = await api.get<List<Command>>(`/api/commands?device_id=${device.id}`, { token: owner.token });
      expect(noCommands.body.data).toEqual([]);

      await reading(device, 35.5);
      const firedAt = server.clock.now().toISOString();
      server.clock.advance(10 * SECOND);
      await reading(device, 36); // still above: no second firing

      const commands = await api.get<List<Command>>(`/api/commands?device_id=${device.id}`, { token: owner.token });
      expect(commands.status).toBe(200);
      expect(commands.body.data).toHaveLength(1);
      const command = commands.body.data[0]!;
      expect(command).toMatchObject({ device_id: device.id, user_id: owner.id, command_type: 'fan_on', parameters: { speed: 2 }, priority: 'high', status: 'pending', created_at: firedAt });

      const alerts = await api.get<List<Alert>>(`/api/alerts?device_id=${device.id}`, { token: owner.token });
      expect(alerts.status).toBe(200);
      expect(alerts.body.data).toHaveLength(1);
      expect(alerts.body.data[0]).toMatchObject({ kind: 'rule', rule_id: rule.id, device_id: device.id, severity: 'critical', status: 'active', message: 'greenhouse too hot', raised_at: firedAt });
      // Not visible to another user.
      const strangers = await api.get<List<Alert>>('/api/alerts', { token: stranger.token });
      expect(strangers.body.data.filter((a) => a.rule_id === rule.id)).toEqual([]);

      const history = await api.get<List<Execution>>(`${RULES}/${rule.id}/executions`, { token: owner.token });
      expect(history.status).toBe(200);
      expect(history.body.meta.total).toBe(1);
      const execution = history.body.data[0]!;
      expect(execution).toMatchObject({ rule_id: rule.id, triggered_at: firedAt, cause: { kind: 'condition', event_type: 'readings.recorded' } });
      expect(execution.matched['trigger_conditions.all.0']).toEqual({ device_id: device.id, sensor_type: 'temperature', value: 35.5 });
      expect(execution.actions).toHaveLength(2);
      expect(execution.actions[0]).toMatchObject({ index: 0, type: 'command', status: 'done', due_at: firedAt });
      expect(execution.actions[0]!.detail).toContain(command.id);
      expect(execution.actions[1]).toMatchObject({ index: 1, type: 'alert', status: 'done', due_at: firedAt });
      expect(execution.actions[1]!.detail).toContain(alerts.body.data[0]!.id);

      const stored = await api.get<Data<Rule>>(`${RULES}/${rule.id}`, { token: owner.token });
      expect(stored.body.data).toMatchObject({ trigger_count: 1, last_triggered: firedAt });

      // A second crossing, to make the dry run count more than one.
      server.clock.advance(10 * SECOND);
      await reading(device, 20);
      server.clock.advance(10 * SECOND);
      await reading(device, 41);
      const secondAt = server.clock.now().toISOString();
      const endedAt = server.clock.now().toISOString();
      const all = await api.get<List<Execution>>(`${RULES}/${rule.id}/executions`, { token: owner.token });
      expect(all.body.data.map((e) => e.triggered_at)).toEqual([secondAt, firedAt]); // newest first

      const headBefore = await head(api);
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: startedAt, end_date: endedAt }, { token: owner.token });
      expect(dry.status, JSON.stringify(dry.body)).toBe(200);
      expect(dry.body.data.count).toBe(2);
      expect(dry.body.data.firings.map((f) => f.at)).toEqual([firedAt, secondAt]);
      expect(dry.body.data.events_examined).toBeGreaterThanOrEqual(6);
      expect(dry.body.data.firings[0]!.matched['trigger_conditions.all.0']).toMatchObject({ value: 35.5 });
      expect(dry.body.data.firings[0]!.actions.map((a) => a['type'])).toEqual(['command', 'alert']);
      // It did nothing: no events, no commands, no alerts.
      await settle();
      expect(await head(api)).toBe(headBefore);
      expect((await api.get<List<Command>>(`/api/commands?device_id=${device.id}`, { token: owner.token })).body.data).toHaveLength(2);
      expect((await api.get<List<Alert>>(`/api/alerts?device_id=${device.id}`, { token: owner.token })).body.data).toHaveLength(2);

      expect(dry.body.data).toMatchObject({ complete: true, simulated_until: endedAt });

      // A range before the crossings holds none; another user may not name these devices, as in a rule of theirs.
      const early = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: startedAt, end_date: new Date(Date.parse(firedAt) - 1).toISOString() }, { token: owner.token });
      expect(early.body.data.count).toBe(0);
      const foreign = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: startedAt, end_date: endedAt }, { token: stranger.token });
      expectValidation(foreign, 'rule.trigger_conditions.all.0.device_id');
    });

    it('a dry run of a for_seconds rule answers the firing the engine made', async () => {
      const startedAt = server.clock.now().toISOString();
      const device = await deviceOf(api, owner);
      const definition = { name: uniqueName('held'), trigger_conditions: hot(device, { for_seconds: 30 }), actions: [alert('held')] };
      const rule = await createRule(definition);
      await reading(device, 35);
      server.clock.advance(30 * SECOND);
      await server.server.timers.runAll();
      await server.server.automation.tick();
      await settle();
      server.clock.advance(30 * SECOND);
      await reading(device, 36);
      const history = await api.get<List<Execution>>(`${RULES}/${rule.id}/executions`, { token: owner.token });
      expect(history.body.data).toHaveLength(1);
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: startedAt, end_date: server.clock.now().toISOString() }, { token: owner.token });
      expect(dry.body.data.firings.map((f) => f.at)).toEqual([history.body.data[0]!.triggered_at]);
      await api.put(`${RULES}/${rule.id}`, { is_enabled: false }, { token: owner.token });
    });

    it('a dry run of a cooldown and of a schedule over a range', async () => {
      const startedAt = server.clock.now().toISOString();
      const device = await deviceOf(api, owner);
      for (const value of [35, 20, 35, 20, 35]) {
        await reading(device, value);
        server.clock.advance(MINUTE);
      }
      const end = server.clock.now().toISOString();
      const withCooldown = { name: 'dry', trigger_conditions: hot(device), actions: [alert()], cooldown_seconds: 150 };
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: withCooldown, start_date: startedAt, end_date: end }, { token: owner.token });
      expect(dry.status).toBe(200);
      // Crossings at 0, 2 and 4 minutes; with 150 s of cooldown the one at 2 minutes is held back.
      expect(dry.body.data.count).toBe(2);
      const scheduled = { name: 'dry', schedule: { every_seconds: 60 }, actions: [alert()] };
      const ticks = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: scheduled, start_date: startedAt, end_date: end }, { token: owner.token });
      expect(ticks.body.data.count).toBe(5);
      const bad = await api.post(`${RULES}/test`, { rule: { name: 'x', actions: [alert()] }, start_date: startedAt, end_date: end }, { token: owner.token });
      expectValidation(bad, 'rule.trigger_conditions');
      const reversed = await api.post(`${RULES}/test`, { rule: withCooldown, start_date: end, end_date: startedAt }, { token: owner.token });
      expectValidation(reversed, 'start_date');
    });

    it('a dry run that would look at millions of moments stops at its bound and says how far it got', async () => {
      // Every second for a century, held back by a one-minute weekly window: without a bound, years of work on the event loop.
      const rare = { name: 'rare', schedule: { every_seconds: 1 }, trigger_conditions: { type: 'time', days: ['mon'], after: '23:59', before: '00:00' }, actions: [alert()] };
      const dry = await api.post<Data<DryRun & { complete: boolean; simulated_until: string }>>(`${RULES}/test`, { rule: rare, start_date: '2000-01-01', end_date: '2099-12-31' }, { token: owner.token });
      expect(dry.status, JSON.stringify(dry.body)).toBe(200);
      expect(dry.body.data.complete).toBe(false);
      // 200,000 one-second looks, the first a second after the start: a little over two days.
      expect(dry.body.data.simulated_until).toBe(new Date(Date.parse('2000-01-01T00:00:00.000Z') + MAX_LOOKS * SECOND).toISOString());
      expect((await api.get('/api/health')).status).toBe(200);
    });

    it('keeps a rule stored with an empty trigger before it was refused editable: it can still be disabled', async () => {
      const ruleId = randomUUID();
      const definition = { name: uniqueName('legacy'), description: null, trigger_conditions: { all: [] }, actions: [{ type: 'alert' as const, severity: 'info' as const, message: 'legacy' }], schedule: null, is_enabled: true, cooldown_seconds: 0 };
      const stored = await server.server.services.log.append([{ streamId: `rule-${ruleId}`, expectedVersion: 'no_stream', events: [{ type: 'rule.created', data: { ...definition, rule_id: ruleId, user_id: owner.id } }] }]);
      await server.server.services.runner.waitFor(stored.lastPosition);
      const disabled = await api.put<Data<{ is_enabled: boolean }>>(`${RULES}/${ruleId}`, { is_enabled: false }, { token: owner.token });
      expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
      expect(disabled.body.data.is_enabled).toBe(false);
      expectValidation(await api.put(`${RULES}/${ruleId}`, { trigger_conditions: { all: [] } }, { token: owner.token }), 'trigger_conditions');
    });

    it('refuses a trigger that names nothing, in a rule or a dry run: it never changes, so it could never fire', async () => {
      const empty = { name: 'empty', trigger_conditions: { all: [] }, actions: [alert()] };
      expectValidation(await api.post(RULES, empty, { token: owner.token }), 'trigger_conditions');
      const now = server.clock.now().toISOString();
      expectValidation(await api.post(`${RULES}/test`, { rule: empty, start_date: now, end_date: now }, { token: owner.token }), 'rule.trigger_conditions');
      // With a schedule, conditions that always hold are fine: the schedule decides.
      expect((await api.post(RULES, { ...empty, name: uniqueName('scheduled'), schedule: { every_seconds: 60 } }, { token: owner.token })).status).toBe(201);
    });
  });

  describe('dry run of a device_status rule', () => {
    it('sees a device reporting error inside the window, though the device registered (and came online) before it', async () => {
      const device = await deviceOf(api, owner);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 } });
      server.clock.advance(10 * SECOND);
      const windowStart = server.clock.now().toISOString();
      server.clock.advance(10 * SECOND);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 21 }, device_status: { status: 'error' } });
      const reportedAt = server.clock.now().toISOString();
      server.clock.advance(10 * SECOND);
      const definition = { name: 'broken', trigger_conditions: { type: 'device_status', device_id: device.id, status: 'error' }, actions: [alert()] };
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: windowStart, end_date: server.clock.now().toISOString() }, { token: owner.token });
      expect(dry.status, JSON.stringify(dry.body)).toBe(200);
      expect(dry.body.data.firings.map((f) => f.at)).toEqual([reportedAt]);
    });
  });

  describe("dry run on the readings' own time", () => {
    it('finds backfilled readings by their timestamps and fires at the crossings, not at their arrival', async () => {
      const device = await deviceOf(api, owner);
      server.clock.advance(3 * 60 * MINUTE);
      const arrival = server.clock.now();
      // Thirteen readings 10 minutes apart over the two hours before a flush, above 30 twice.
      const values = [20, 22, 24, 26, 28, 31, 33, 35, 32, 29, 27, 31, 33];
      const times = values.map((_, i) => new Date(arrival.getTime() - (130 - 10 * i) * MINUTE).toISOString());
      const readingsOf = (from: number, to: number) => values.slice(from, to).map((value, i) => ({ sensor_type: 'temperature', value, timestamp: times[from + i] }));
      // The newer half arrives first: the log's order is not the readings' order.
      await submitOk(api, device.id, device.token, { sensor_readings: readingsOf(7, 13) });
      await submitOk(api, device.id, device.token, { sensor_readings: readingsOf(0, 7) });
      server.clock.advance(MINUTE);
      const definition = { name: uniqueName('backfill'), trigger_conditions: hot(device), actions: [alert('hot')] };
      const dryRun = (start: Date | number | string, end: Date | number | string) =>
        api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: new Date(start).toISOString(), end_date: new Date(end).toISOString() }, { token: owner.token });

      // Every timestamp inside, the arrival outside.
      const readingTime = await dryRun(Date.parse(times[0]!) - MINUTE, arrival.getTime() - 5 * MINUTE);
      expect(readingTime.status, JSON.stringify(readingTime.body)).toBe(200);
      expect(readingTime.body.data.firings.map((f) => f.at)).toEqual([times[5], times[11]]);
      expect(readingTime.body.data.events_examined).toBe(2);
      expect(readingTime.body.data.firings[1]!.matched['trigger_conditions']).toMatchObject({ value: 31 });
      // The arrival alone holds none of them (only the device coming online, on its recorded time); a window over the first crossing finds that one.
      const arrivalOnly = await dryRun(arrival.getTime() - 1, server.clock.now());
      expect(arrivalOnly.body.data).toMatchObject({ count: 0, events_examined: 1 });
      const firstHalf = await dryRun(times[0]!, times[8]!);
      expect(firstHalf.body.data.firings.map((f) => f.at)).toEqual([times[5]]);
    });
    it('interleaves late readings with a state report by time: the reading taken after the report fires, not the one before it', async () => {
      const device = await deviceOf(api, owner);
      server.clock.advance(MINUTE);
      const reported = server.clock.now().getTime();
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 21 }, device_status: { status: 'error' } });
      server.clock.advance(5 * MINUTE);
      const at = (offset: number) => new Date(reported + offset).toISOString();
      await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'temperature', value: 35, timestamp: at(-10 * MINUTE) },
          { sensor_type: 'temperature', value: 36, timestamp: at(2 * MINUTE) },
        ],
      });
      const definition = { name: uniqueName('hot-broken'), trigger_conditions: { all: [hot(device), { type: 'device_status', device_id: device.id, status: 'error' }] }, actions: [alert('hot and broken')] };
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: at(-15 * MINUTE), end_date: server.clock.now().toISOString() }, { token: owner.token });
      expect(dry.body.data.firings.map((f) => f.at)).toEqual([at(2 * MINUTE)]);
    });

    it('finds a reading timed ahead of its arrival (within the 5 minutes allowed) in a window that starts after it arrived', async () => {
      const device = await deviceOf(api, owner);
      const arrival = server.clock.now().getTime();
      const ahead = new Date(arrival + 4 * MINUTE).toISOString();
      await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 40, timestamp: ahead }] });
      server.clock.advance(10 * MINUTE);
      const definition = { name: uniqueName('ahead'), trigger_conditions: hot(device), actions: [alert('hot')] };
      const dry = await api.post<Data<DryRun>>(`${RULES}/test`, { rule: definition, start_date: new Date(arrival + 3 * MINUTE).toISOString(), end_date: server.clock.now().toISOString() }, { token: owner.token });
      expect(dry.body.data.firings.map((f) => f.at)).toEqual([ahead]);
    });
  });

  describe('validation at POST and PUT', () => {
    let mine: Device;
    let theirs: Device;
    let theirGroup: string;
    let theirRule: Rule;

    beforeAll(async () => {
      mine = await deviceOf(api, owner);
      theirs = await deviceOf(api, stranger);
      theirGroup = (await createGroup(api, stranger.token)).id;
      theirRule = await createRule({ trigger_conditions: hot(theirs), actions: [alert()] }, stranger);
    });

    it('an unknown device in a condition → 400 naming its path', async () => {
      expectValidation(await post({ trigger_conditions: hot({ id: '00000000-0000-4000-8000-000000000000' }), actions: [alert()] }), 'trigger_conditions.device_id');
      const nested = await post({ trigger_conditions: { all: [hot(mine), { not: { type: 'device_status', device_id: 'no-such-device', status: 'online' } }] }, actions: [alert()] });
      expectValidation(nested, 'trigger_conditions.all.1.not.device_id');
      expect(paths(nested)).toEqual(['trigger_conditions.all.1.not.device_id']);
    });

    it("another user's device, group or rule → 400 naming each path", async () => {
      expectValidation(await post({ trigger_conditions: hot(theirs), actions: [alert()] }), 'trigger_conditions.device_id');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [fan(theirs, { speed: 1 })] }), 'actions.0.device_id');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [alert('x', { device_id: theirs.id })] }), 'actions.0.device_id');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [{ type: 'command', group_id: theirGroup, command_type: 'reboot' }] }), 'actions.0.group_id');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [{ type: 'enable_rule', rule_id: theirRule.id }] }), 'actions.0.rule_id');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [alert(), { type: 'disable_rule', rule_id: 'no-such-rule' }] }), 'actions.1.rule_id');
      const event = await post({ trigger_conditions: { type: 'event', event_type: 'device.went_offline', device_id: theirs.id }, actions: [alert()] });
      expectValidation(event, 'trigger_conditions.device_id');
    });

    it('refuses conditions that could never hold: an unknown event type, an empty any or OR', async () => {
      expectValidation(await post({ trigger_conditions: { type: 'event', event_type: 'no.such' }, actions: [alert()] }), 'trigger_conditions.event_type');
      expectValidation(await post({ trigger_conditions: { type: 'event', event_type: 'constructor' }, actions: [alert()] }), 'trigger_conditions.event_type');
      expectValidation(await post({ trigger_conditions: { any: [] }, actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: { operator: 'OR', conditions: [] }, actions: [alert()] }), 'trigger_conditions');
      expect((await post({ trigger_conditions: { all: [{ type: 'event', event_type: 'device.went_offline', device_id: mine.id }] }, actions: [alert()] })).status).toBe(201);
    });

    it('several problems at once → one 400 with the path of each', async () => {
      const answer = await post({
        trigger_conditions: { any: [hot(theirs), hot(mine)] },
        actions: [fan(theirs, { on: true }), { type: 'command', group_id: theirGroup, command_type: 'reboot' }, { type: 'enable_rule', rule_id: theirRule.id }],
        schedule: { cron: '99 99 * * *' },
      });
      expectError(answer, 400, 'validation_failed');
      expect(paths(answer)).toEqual(['actions.0.device_id', 'actions.1.group_id', 'actions.2.rule_id', 'schedule.cron', 'trigger_conditions.any.0.device_id']);
    });

    it('bad operators, bad leaves and bad values → 400 under trigger_conditions', async () => {
      for (const operator of ['=>', 'gt', '===', '']) {
        const answer = await post({ trigger_conditions: hot(mine, { operator }), actions: [alert()] });
        expectValidation(answer, 'trigger_conditions.operator');
      }
      expectValidation(await post({ trigger_conditions: { any: [hot(mine), hot(mine, { operator: '=<' })] }, actions: [alert()] }), 'trigger_conditions.any.1.operator');
      expectValidation(await post({ trigger_conditions: hot(mine, { value: 'thirty' }), actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: { type: 'time', after: '25:00' }, actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: { type: 'time', days: ['funday'] }, actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: { operator: 'XOR', conditions: [hot(mine)] }, actions: [alert()] }), 'trigger_conditions');
    });

    it('bad cron, bad timezone, bad every_seconds → 400 under schedule', async () => {
      for (const cron of ['99 * * * *', 'every hour please', '* * * * 9', '0 * * * * 2026']) expectValidation(await post({ schedule: { cron }, actions: [alert()] }), 'schedule.cron');
      expectValidation(await post({ schedule: { cron: '0 * * * *', timezone: 'Mars/Olympus_Mons' }, actions: [alert()] }), 'schedule.timezone');
      expectValidation(await post({ schedule: { every_seconds: 0 }, actions: [alert()] }), 'schedule');
      expectValidation(await post({ trigger_conditions: { type: 'time', after: '08:00', timezone: 'Not/AZone' }, actions: [alert()] }), 'trigger_conditions');
      // Good ones pass.
      const ok = await createRule({ schedule: { cron: '30 7 * * 1-5', timezone: 'Europe/Paris' }, actions: [alert()], is_enabled: false });
      expect(ok.schedule).toEqual({ cron: '30 7 * * 1-5', timezone: 'Europe/Paris' });
    });

    it('a cron of other than 5 fields → 400 schedule.cron', async () => {
      for (const cron of ['0 0 * * * *', '* * * * * *', '0 0 0 * * * *']) expectValidation(await post({ schedule: { cron }, actions: [alert()], is_enabled: false }), 'schedule.cron');
    });

    it('no trigger and no schedule, no actions, bad actions → 400', async () => {
      expectValidation(await post({ actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: null, schedule: null, actions: [alert()] }), 'trigger_conditions');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [] }), 'actions');
      expectValidation(await post({ trigger_conditions: hot(mine) }), 'actions');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [{ type: 'command', command_type: 'reboot' }] }), 'actions');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [{ type: 'alert', severity: 'doom', message: 'x' }] }), 'actions.0.severity');
      expectValidation(await post({ trigger_conditions: hot(mine), actions: [alert()], cooldown_seconds: -5 }), 'cooldown_seconds');
      const unnamed = await api.post(RULES, { trigger_conditions: hot(mine), actions: [alert()] }, { token: owner.token });
      expectValidation(unnamed, 'name');
    });

    it('PUT validates the rule as it would become', async () => {
      const rule = await createRule({ trigger_conditions: hot(mine), actions: [alert()] });
      const put = (body: Record<string, unknown>) => api.put(`${RULES}/${rule.id}`, body, { token: owner.token });
      expectValidation(await put({ actions: [fan(theirs, { speed: 1 })] }), 'actions.0.device_id');
      expectValidation(await put({ trigger_conditions: hot(theirs) }), 'trigger_conditions.device_id');
      expectValidation(await put({ trigger_conditions: null }), 'trigger_conditions'); // no schedule either
      expectValidation(await put({ schedule: { cron: '61 * * * *' } }), 'schedule.cron');
      expectValidation(await put({ trigger_conditions: hot(mine, { operator: '~' }) }), 'trigger_conditions');
      expectValidation(await put({ actions: [{ type: 'enable_rule', rule_id: rule.id }] }), 'actions');
      // Nothing changed.
      const stored = await api.get<Data<Rule>>(`${RULES}/${rule.id}`, { token: owner.token });
      expect(stored.body.data).toMatchObject({ trigger_conditions: hot(mine), actions: [alert()], schedule: null });
      // Trading the trigger for a schedule is fine.
      const swapped = await put({ trigger_conditions: null, schedule: { every_seconds: 3600 } });
      expect(swapped.status).toBe(200);
      expect((swapped.body as Data<Rule>).data).toMatchObject({ trigger_conditions: null, schedule: { every_seconds: 3600 } });
      await put({ is_enabled: false });
    });

    it('PUT judges only what it sends: a rule naming a device deleted since can still be disabled or edited', async () => {
      const gone = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: { any: [hot(gone), hot(mine)] }, actions: [fan(gone, { speed: 1 }), alert()] });
      expect((await api.del(`/api/devices/${gone.id}`, { token: owner.token })).status).toBe(200);
      const put = (body: Record<string, unknown>) => api.put<Data<Rule>>(`${RULES}/${rule.id}`, body, { token: owner.token });
      const disabled = await put({ is_enabled: false });
      expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
      expect(disabled.body.data.is_enabled).toBe(false);
      expect((await put({ cooldown_seconds: 5, name: uniqueName('renamed') })).status).toBe(200);
      expect((await put({ schedule: { every_seconds: 600 } })).status).toBe(200);
      // What it sends is judged as at creation.
      expectValidation(await put({ trigger_conditions: { any: [hot(gone), hot(mine)] } }), 'trigger_conditions.any.0.device_id');
      expectValidation(await put({ actions: [fan(gone, { speed: 1 })] }), 'actions.0.device_id');
      expect((await put({ trigger_conditions: hot(mine), actions: [alert()] })).status).toBe(200);
    });
  });

  describe('conflicts', () => {
    it('409 rule_conflict listing the enabled rule with an overlapping trigger commanding the device differently', async () => {
      const device = await deviceOf(api, owner);
      const first = await createRule({ trigger_conditions: hot(device), actions: [fan(device, { speed: 1 })] });
      const answer = await post({ trigger_conditions: hot(device, { value: 25 }), actions: [alert(), fan(device, { speed: 3 })] });
      const error = expectError(answer, 409, 'rule_conflict');
      expect(error.details).toHaveLength(1);
      expect(error.details[0]).toMatchObject({ rule_id: first.id, name: first.name });
      expect(JSON.stringify(error.details)).toContain(first.id);

      // allow_conflicts: created anyway.
      const allowed = await post({ trigger_conditions: hot(device, { value: 25 }), actions: [fan(device, { speed: 3 })], allow_conflicts: true });
      expect(allowed.status).toBe(201);
      // Now both conflict with a third one.
      const third = await post({ trigger_conditions: hot(device, { value: 40 }), actions: [fan(device, { speed: 2 })] });
      expect(expectError(third, 409, 'rule_conflict').details.map((d) => (d as { rule_id?: string }).rule_id).sort()).toEqual([first.id, allowed.body.data.id].sort());
    });

    it('409 for opposite command types (turn_on / turn_off) and for a command reaching the device through its group', async () => {
      const device = await deviceOf(api, owner);
      const command = (command_type: string, target: Record<string, string>, parameters?: Record<string, unknown>) => ({ type: 'command', ...target, command_type, ...(parameters ? { parameters } : {}) });
      const on = await createRule({ trigger_conditions: hot(device, { value: 50 }), actions: [command('turn_on', { device_id: device.id })] });
      const off = await post({ trigger_conditions: hot(device, { value: 60 }), actions: [command('turn_off', { device_id: device.id })] });
      expect(expectError(off, 409, 'rule_conflict').details[0]).toMatchObject({ rule_id: on.id });

      const group = await createGroup(api, owner.token);
      const member = await deviceOf(api, owner, { group_id: group.id });
      await createRule({ trigger_conditions: hot(member), actions: [command('set', { device_id: member.id }, { t: 4 })] });
      const viaGroup = await post({ trigger_conditions: hot(member, { value: 35 }), actions: [command('set', { group_id: group.id }, { t: 1 })] });
      expectError(viaGroup, 409, 'rule_conflict');
    });

    it('no conflict: non-overlapping triggers, same parameters, another command type or device, a disabled rule', async () => {
      const device = await deviceOf(api, owner);
      const other = await deviceOf(api, owner);
      await createRule({ trigger_conditions: hot(device), actions: [fan(device, { on: true })] });
      const cold = await post({ trigger_conditions: hot(device, { operator: '<', value: 20 }), actions: [fan(device, { on: false })] });
      expect(cold.status, JSON.stringify(cold.body)).toBe(201);
      expect((await post({ trigger_conditions: hot(device, { value: 35 }), actions: [fan(device, { on: true })] })).status).toBe(201);
      expect((await post({ trigger_conditions: hot(device, { value: 35 }), actions: [{ type: 'command', device_id: device.id, command_type: 'set_light', parameters: { on: false } }] })).status).toBe(201);
      expect((await post({ trigger_conditions: hot(device, { value: 35 }), actions: [fan(other, { on: false })] })).status).toBe(201);
      const disabled = await createRule({ trigger_conditions: hot(device, { value: 35 }), actions: [fan(device, { on: 'maybe' })], is_enabled: false });
      // Enabling it brings the conflict up; with allow_conflicts it goes through.
      expectError(await api.put(`${RULES}/${disabled.id}`, { is_enabled: true }, { token: owner.token }), 409, 'rule_conflict');
      const forced = await api.put<Data<Rule>>(`${RULES}/${disabled.id}`, { is_enabled: true, allow_conflicts: true }, { token: owner.token });
      expect(forced.status).toBe(200);
      expect(forced.body.data.is_enabled).toBe(true);
    });

    it("another user's rules never conflict with mine", async () => {
      const device = await deviceOf(api, owner);
      await createRule({ trigger_conditions: hot(device), actions: [fan(device, { speed: 1 })] });
      const theirDevice = await deviceOf(api, stranger);
      await createRule({ trigger_conditions: hot(theirDevice), actions: [fan(theirDevice, { speed: 1 })] }, stranger);
      expect((await post({ trigger_conditions: hot(theirDevice), actions: [fan(theirDevice, { speed: 9 })] }, stranger)).status).toBe(409);
      const mine = await deviceOf(api, owner);
      expect((await post({ trigger_conditions: hot(mine), actions: [fan(mine, { speed: 9 })] })).status).toBe(201);
    });

    it('temp > 30 and temp <= 30 (the thermostat pair) do not conflict', async () => {
      const device = await deviceOf(api, owner);
      await createRule({ trigger_conditions: hot(device), actions: [fan(device, { on: true })] });
      const answer = await post({ trigger_conditions: hot(device, { operator: '<=' }), actions: [fan(device, { on: false })] });
      expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    });
  });

  describe('routes', () => {
    it('GET /api/automation/rules filters device_id, type and is_enabled, with paging meta', async () => {
      const user = await registerUser(api, uniqueName('filters'));
      const d1 = await deviceOf(api, user);
      const d2 = await deviceOf(api, user);
      const reading1 = await createRule({ trigger_conditions: hot(d1), actions: [alert()] }, user);
      const status2 = await createRule({ trigger_conditions: { type: 'device_status', device_id: d2.id, status: 'offline' }, actions: [alert()], is_enabled: false }, user);
      const schedule1 = await createRule({ schedule: { every_seconds: 3600 }, actions: [fan(d1, { on: true })] }, user);
      const eventTime = await createRule({ trigger_conditions: { all: [{ type: 'event', event_type: 'command.failed' }, { type: 'time', after: '08:00', before: '18:00' }] }, actions: [alert()] }, user);
      const list = async (query: string) => {
        const answer = await api.get<List<Rule>>(`${RULES}${query}`, { token: user.token });
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
        expect(answer.body.meta.total).toBe(answer.body.data.length);
        return answer.body.data.map((r) => r.id).sort();
      };
      const sorted = (...rules: Rule[]) => rules.map((r) => r.id).sort();
      expect(await list('')).toEqual(sorted(reading1, status2, schedule1, eventTime));
      expect(await list(`?device_id=${d1.id}`)).toEqual(sorted(reading1, schedule1));
      expect(await list(`?device_id=${d2.id}`)).toEqual(sorted(status2));
      expect(await list('?type=reading')).toEqual(sorted(reading1));
      expect(await list('?type=device_status')).toEqual(sorted(status2));
      expect(await list('?type=schedule')).toEqual(sorted(schedule1));
      expect(await list('?type=event')).toEqual(sorted(eventTime));
      expect(await list('?type=time')).toEqual(sorted(eventTime));
      expect(await list('?is_enabled=false')).toEqual(sorted(status2));
      expect(await list('?is_enabled=true')).toEqual(sorted(reading1, schedule1, eventTime));
      expect(await list(`?device_id=${d1.id}&type=schedule&is_enabled=true`)).toEqual(sorted(schedule1));
      expect(await list(`?device_id=${d2.id}&is_enabled=true`)).toEqual([]);
      const page = await api.get<List<Rule>>(`${RULES}?limit=2&offset=1`, { token: user.token });
      expect(page.body.meta).toEqual({ total: 4, limit: 2, offset: 1 });
      expect(page.body.data).toHaveLength(2);
      expectValidation(await api.get(`${RULES}?type=weather`, { token: user.token }), 'type');
      // Another user sees none of them.
      const theirs = await api.get<List<Rule>>(RULES, { token: stranger.token });
      expect(theirs.body.data.filter((r) => r.user_id === user.id)).toEqual([]);
    });

    it('PUT changes fields, takes enabled_status, and honours If-Match (412 when stale)', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alert()], description: 'first' });
      const got = await api.get<Data<Rule>>(`${RULES}/${rule.id}`, { token: owner.token });
      const etag = got.headers.get('etag');
      expect(etag).toBeTruthy();

      const changed = await api.put<Data<Rule>>(`${RULES}/${rule.id}`, { name: 'renamed', description: null, cooldown_seconds: 300 }, { token: owner.token, headers: { 'if-match': etag! } });
      expect(changed.status, JSON.stringify(changed.body)).toBe(200);
      expect(changed.body.data).toMatchObject({ id: rule.id, name: 'renamed', description: null, cooldown_seconds: 300, is_enabled: true });
      expect(changed.headers.get('etag')).not.toBe(etag);

      const stale = await api.put(`${RULES}/${rule.id}`, { name: 'again' }, { token: owner.token, headers: { 'if-match': etag! } });
      expectError(stale, 412, 'precondition_failed');
      expect((await api.get<Data<Rule>>(`${RULES}/${rule.id}`, { token: owner.token })).body.data.name).toBe('renamed');

      const disabled = await api.put<Data<Rule>>(`${RULES}/${rule.id}`, { enabled_status: false }, { token: owner.token, headers: { 'if-match': changed.headers.get('etag')! } });
      expect(disabled.status).toBe(200);
      expect(disabled.body.data.is_enabled).toBe(false);
      const enabled = await api.put<Data<Rule>>(`${RULES}/${rule.id}`, { is_enabled: true }, { token: owner.token });
      expect(enabled.body.data.is_enabled).toBe(true);
      expect(enabled.body.data.updated_at >= rule.updated_at).toBe(true);
      expectValidation(await api.put(`${RULES}/${rule.id}`, { is_enabled: 'yes' }, { token: owner.token }), 'is_enabled');
      expectValidation(await api.put(`${RULES}/${rule.id}`, { is_enabled: true, enabled_status: false }, { token: owner.token }), 'enabled_status');
      expect((await api.put(`${RULES}/${rule.id}`, { is_enabled: false, enabled_status: false }, { token: owner.token })).status).toBe(200);

      // DELETE honours If-Match too, as devices and groups do.
      const current = (await api.get(`${RULES}/${rule.id}`, { token: owner.token })).headers.get('etag')!;
      expectError(await api.del(`${RULES}/${rule.id}`, { token: owner.token, headers: { 'if-match': etag! } }), 412, 'precondition_failed');
      expect((await api.del(`${RULES}/${rule.id}`, { token: owner.token, headers: { 'if-match': current } })).status).toBe(200);
    });

    it('DELETE answers {id, deleted: true}; afterwards the rule is 404 everywhere and leaves the list', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alert()] });
      const deleted = await api.del<Data<{ id: string; deleted: boolean }>>(`${RULES}/${rule.id}`, { token: owner.token });
      expect(deleted.status).toBe(200);
      expect(deleted.body.data).toEqual({ id: rule.id, deleted: true });
      expectError(await api.get(`${RULES}/${rule.id}`, { token: owner.token }), 404, 'not_found');
      expectError(await api.get(`${RULES}/${rule.id}/executions`, { token: owner.token }), 404, 'not_found');
      expectError(await api.put(`${RULES}/${rule.id}`, { name: 'x' }, { token: owner.token }), 404, 'not_found');
      expectError(await api.del(`${RULES}/${rule.id}`, { token: owner.token }), 404, 'not_found');
      const list = await api.get<List<Rule>>(`${RULES}?limit=500`, { token: owner.token });
      expect(list.body.data.map((r) => r.id)).not.toContain(rule.id);
      // A deleted rule can no longer be the target of another rule.
      expectValidation(await post({ trigger_conditions: hot(device), actions: [{ type: 'enable_rule', rule_id: rule.id }] }), 'actions.0.rule_id');
      // Readings no longer fire it.
      await reading(device, 50);
      const count = server.server.db.prepare<[string], { n: number }>(`SELECT count(*) AS n FROM events WHERE type = 'rule.triggered' AND json_extract(data, '$.rule_id') = ?`).get(rule.id);
      expect(count?.n).toBe(0);
    });

    it("another user's rule answers 404 to GET, PUT, DELETE and executions, and stays as it was", async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alert()] });
      expectError(await api.get(`${RULES}/${rule.id}`, { token: stranger.token }), 404, 'not_found');
      expectError(await api.get(`${RULES}/${rule.id}/executions`, { token: stranger.token }), 404, 'not_found');
      expectError(await api.put(`${RULES}/${rule.id}`, { is_enabled: false }, { token: stranger.token }), 404, 'not_found');
      expectError(await api.del(`${RULES}/${rule.id}`, { token: stranger.token }), 404, 'not_found');
      expectError(await api.get(`${RULES}/00000000-0000-4000-8000-000000000000`, { token: owner.token }), 404, 'not_found');
      const still = await api.get<Data<Rule>>(`${RULES}/${rule.id}`, { token: owner.token });
      expect(still.body.data.is_enabled).toBe(true);
      expect((await api.get(RULES)).status).toBe(401);
    });

    it('/api/analytics counts rules: total, enabled and triggered', async () => {
      const user = await registerUser(api, uniqueName('analyst'));
      const device = await deviceOf(api, user);
      const analytics = async () => {
        const answer = await api.get<Data<Analytics>>('/api/analytics', { token: user.token });
        expect(answer.status).toBe(200);
        return answer.body.data.rules;
      };
      expect(await analytics()).toEqual({ total: 0, enabled: 0, triggered: 0 });
      const firing = await createRule({ trigger_conditions: hot(device), actions: [alert()] }, user);
      await createRule({ trigger_conditions: hot(device, { value: 90 }), actions: [alert()], is_enabled: false }, user);
      await createRule({ schedule: { every_seconds: 86_400 }, actions: [alert()] }, user);
      expect(await analytics()).toEqual({ total: 3, enabled: 2, triggered: 0 });
      await reading(device, 31);
      await reading(device, 20);
      await reading(device, 32);
      expect(await analytics()).toEqual({ total: 3, enabled: 2, triggered: 2 });
      await api.del(`${RULES}/${firing.id}`, { token: user.token });
      expect((await analytics()).total).toBe(2);
      // Each user counts only their own rules.
      const theirs = await api.get<Data<Analytics>>('/api/analytics', { token: stranger.token });
      const theirList = await api.get<List<Rule>>(`${RULES}?limit=1`, { token: stranger.token });
      expect(theirList.body.meta.total).toBeGreaterThanOrEqual(1);
      expect(theirs.body.data.rules.total).toBe(theirList.body.meta.total);
    });
  });
});
