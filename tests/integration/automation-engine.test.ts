import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execution as executionSchema } from '../../src/api/schemas/rules.js';
import { MAX_FIRINGS_PER_MINUTE } from '../../src/domain/rule.js';
import { createProjections } from '../../src/projections/index.js';
import { rebuildAndCompare } from '../../src/projections/rebuild.js';
import { DATABASE_FILE } from '../../src/server.js';
import { client, registerUser } from '../helpers/client.js';
import { expectValidation, restartFromDisk, uniqueName, type Data, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, submitOk, HOUR, MINUTE, type Alert, type Owner } from '../helpers/telemetry-fixtures.js';

/**
 * The automation engine against the real server, driven by the injected clock: after readings
 * the tests wait for the engine (automation.idle()); after moving the clock they run the timer
 * jobs and one more engine tick, as the 1 s interval would.
 */
const SECOND = 1000;

interface Rule {
  id: string;
  user_id: string;
  name: string;
  trigger_conditions: unknown;
  actions: Array<Record<string, unknown>>;
  schedule: Record<string, unknown> | null;
  is_enabled: boolean;
  cooldown_seconds: number;
  last_triggered: string | null;
  trigger_count: number;
  version: number;
}

interface ActionOutcome {
  index: number;
  type: string;
  due_at: string;
  status: 'pending' | 'done' | 'failed';
  detail: string | null;
  completed_at: string | null;
}

interface Execution {
  id: string;
  rule_id: string;
  triggered_at: string;
  cause: { kind: string; position: number | null; event_type: string | null };
  matched: Record<string, unknown>;
  actions: ActionOutcome[];
}

type Device = Awaited<ReturnType<typeof deviceOf>>;

describe('automation engine with the injected clock', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;

  beforeAll(async () => {
    server = await startTestServer();
    // Only the tests run the timer jobs (after moving the clock): no tick between two steps of a test.
    server.server.timers.stop();
    await registerUser(api, uniqueName('eadmin'));
    owner = await registerUser(api, uniqueName('eowner'));
  });
  afterAll(() => server.close());

  const settle = () => server.server.automation.idle();
  /** server.restart(), keeping the interval timers off in the new server too. */
  const restart = async (): Promise<void> => {
    await server.restart();
    server.server.timers.stop();
    await settle();
  };
  /** Moves the clock and runs what the timers would: the jobs, then a tick seen at the new time. */
  const advance = async (ms: number): Promise<void> => {
    server.clock.advance(ms);
    await server.server.timers.runAll();
    await server.server.automation.tick();
    await settle();
  };
  /** Sets the clock forward to the next whole hour (UTC) and ticks there. */
  const toNextHour = async (): Promise<void> => {
    const now = server.clock.now().getTime();
    await advance(Math.ceil((now + 1) / HOUR) * HOUR - now);
  };
  const reading = async (device: Device, temperature: number): Promise<void> => {
    await submitOk(api, device.id, device.token, { sensor_readings: { temperature } });
    await settle();
  };
  const createRule = async (body: Record<string, unknown>): Promise<Rule> => {
    const answer = await api.post<Data<Rule>>('/api/automation/rules', { name: uniqueName('rule'), ...body }, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    await settle();
    return answer.body.data;
  };
  const getRule = async (id: string): Promise<Rule> => {
    const answer = await api.get<Data<Rule>>(`/api/automation/rules/${id}`, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const updateRule = async (id: string, body: Record<string, unknown>): Promise<Rule> => {
    const answer = await api.put<Data<Rule>>(`/api/automation/rules/${id}`, body, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  /** The rule's executions, oldest first. */
  const executions = async (id: string): Promise<Execution[]> => {
    const answer = await api.get<List<Execution>>(`/api/automation/rules/${id}/executions?limit=500`, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.meta.total).toBe(answer.body.data.length);
    return [...answer.body.data].reverse();
  };
  /** Events of a type about one rule, straight from the log. */
  const ruleEvents = (type: string, ruleId: string): number =>
    server.server.db.prepare<[string, string], { n: number }>(`SELECT count(*) AS n FROM events WHERE type = ? AND json_extract(data, '$.rule_id') = ?`).get(type, ruleId)?.n ?? 0;
  const ruleAlerts = async (ruleId: string): Promise<Alert[]> => {
    const answer = await api.get<List<Alert>>('/api/alerts?limit=500', { token: owner.token });
    expect(answer.status).toBe(200);
    return answer.body.data.filter((a) => a.rule_id === ruleId);
  };
  const hot = (device: Device, extra: Record<string, unknown> = {}) => ({ type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 30, ...extra });
  const alertAction = (message: string, extra: Record<string, unknown> = {}) => ({ type: 'alert', severity: 'warning', message, ...extra });

  describe('condition triggers', () => {
    it('fires once when a threshold is crossed, not per reading while it stays above; again after it went below', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('too hot', { device_id: device.id })] });
      for (const value of [25, 35, 36]) {
        await reading(device, value);
        await advance(SECOND);
      }
      let history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(history[0]!.cause).toMatchObject({ kind: 'condition', event_type: 'readings.recorded' });
      expect(history[0]!.matched['trigger_conditions']).toEqual({ device_id: device.id, sensor_type: 'temperature', value: 35 });
      for (const value of [20, 40]) {
        await reading(device, value);
        await advance(SECOND);
      }
      history = await executions(rule.id);
      expect(history).toHaveLength(2);
      expect(history[1]!.matched['trigger_conditions']).toMatchObject({ value: 40 });
      expect(ruleEvents('rule.triggered', rule.id)).toBe(2);
      const stored = await getRule(rule.id);
      expect(stored.trigger_count).toBe(2);
      expect(stored.last_triggered).toBe(history[1]!.triggered_at);
      expect(await ruleAlerts(rule.id)).toHaveLength(2);
    });

    it('given a rule that fired and a reading still above, when only its name and actions change, then the next reading above does not fire it; a change of its conditions starts it afresh', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      await reading(device, 40);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { name: uniqueName('renamed'), actions: [alertAction('still hot')] });
      await settle();
      await reading(device, 45);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { trigger_conditions: hot(device, { value: 35 }) });
      await settle();
      await reading(device, 46);
      expect(await executions(rule.id)).toHaveLength(2);
    });

    it('for_seconds: renaming a rule whose window is running neither restarts the window nor fires it again', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device, { for_seconds: 30 }), actions: [alertAction('held hot')] });
      await reading(device, 40);
      await advance(20 * SECOND);
      await updateRule(rule.id, { name: uniqueName('renamed') });
      await settle();
      await advance(15 * SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { description: 'still holding' });
      await settle();
      await advance(60 * SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
    });

    it('readings of another sensor or device do not fire it', async () => {
      const device = await deviceOf(api, owner);
      const other = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      await submitOk(api, device.id, device.token, { sensor_readings: { humidity: 99 } });
      await reading(other, 99);
      await advance(SECOND);
      expect(await executions(rule.id)).toHaveLength(0);
      await reading(device, 31);
      expect(await executions(rule.id)).toHaveLength(1);
    });

    it('for_seconds: fires only once the condition has held that long, when a tick runs after the clock moved', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device, { for_seconds: 30 }), actions: [alertAction('hot for 30 s')] });
      await reading(device, 35);
      const heldFrom = server.clock.now().getTime();
      expect(await executions(rule.id)).toHaveLength(0);
      await advance(15 * SECOND);
      await reading(device, 36); // still above: the window is not restarted
      await advance(14 * SECOND);
      expect(await executions(rule.id)).toHaveLength(0);
      // The clock alone does nothing until a tick runs.
      server.clock.advance(SECOND);
      await settle();
      expect(await executions(rule.id)).toHaveLength(0);
      await server.server.automation.tick();
      await settle();
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(Date.parse(history[0]!.triggered_at) - heldFrom).toBe(30 * SECOND);
      expect(history[0]!.cause.kind).toBe('timer');
      // Still true later: no second firing.
      await advance(60 * SECOND);
      await reading(device, 37);
      await advance(60 * SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
    });

    it('for_seconds: a dip below the threshold restarts the window', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device, { for_seconds: 30 }), actions: [alertAction('hot for 30 s')] });
      await reading(device, 35);
      await advance(20 * SECOND);
      await reading(device, 25);
      await advance(5 * SECOND);
      await reading(device, 35);
      await advance(25 * SECOND); // 50 s after the first reading, 25 s after the restart
      expect(await executions(rule.id)).toHaveLength(0);
      await advance(5 * SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
    });

    it('cooldown_seconds: a second crossing within the cooldown is held back, one after it fires', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')], cooldown_seconds: 120 });
      await reading(device, 35);
      await advance(10 * SECOND);
      await reading(device, 20);
      await advance(10 * SECOND);
      await reading(device, 35); // 20 s after the firing: held back
      await advance(10 * SECOND);
      await reading(device, 20);
      expect(await executions(rule.id)).toHaveLength(1);
      await advance(2 * MINUTE);
      await reading(device, 35); // 150 s after the firing
      const history = await executions(rule.id);
      expect(history).toHaveLength(2);
      expect(Date.parse(history[1]!.triggered_at) - Date.parse(history[0]!.triggered_at)).toBeGreaterThanOrEqual(120 * SECOND);
    });

    it("an event trigger naming no device fires on its owner's events only, never on another user's", async () => {
      const stranger = await registerUser(api, uniqueName('estranger'));
      const theirs = await deviceOf(api, stranger);
      const mine = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: { type: 'event', event_type: 'readings.recorded' }, actions: [alertAction('any reading')] });
      await reading(theirs, 20);
      expect(await executions(rule.id)).toHaveLength(0);
      expect(await ruleAlerts(rule.id)).toHaveLength(0);
      await reading(mine, 20);
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(history[0]!.matched['event']).toEqual({ type: 'readings.recorded', device_id: mine.id });
    });

    it('a device_status trigger fires when the device goes offline', async () => {
      const quick = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: { type: 'device_status', device_id: quick.id, status: 'offline' }, actions: [alertAction('gone')] });
      await reading(quick, 20); // online
      expect(await executions(rule.id)).toHaveLength(0);
      await advance(181 * SECOND); // past OFFLINE_AFTER_SECONDS (180)
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(history[0]!.cause.event_type).toBe('device.went_offline');
      expect(history[0]!.matched['trigger_conditions']).toEqual({ device_id: quick.id, status: 'offline' });
    });

    it('a device_status trigger on "error" fires when the device reports an error in a heartbeat', async () => {
      const failing = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: { type: 'device_status', device_id: failing.id, status: 'error' }, actions: [alertAction('broken')] });
      await reading(failing, 20);
      expect(await executions(rule.id)).toHaveLength(0);
      const beat = await api.post(`/api/devices/${failing.id}/heartbeat`, { device_status: { status: 'error' } }, { token: failing.token });
      expect(beat.status).toBe(200);
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(history[0]!.cause.event_type).toBe('device.state_reported');
      expect(history[0]!.matched['trigger_conditions']).toEqual({ device_id: failing.id, status: 'error' });
    });
  });

  describe('a firing the log could not store', () => {
    it('given a rule whose firing was refused by the log, then it fires at its next observation instead of never', async () => {
      const rule = await createRule({ trigger_conditions: { type: 'time', after: '00:00' }, actions: [alertAction('always')] });
      server.server.db.exec(`CREATE TRIGGER refuse_firing BEFORE INSERT ON events WHEN NEW.type = 'rule.triggered' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
      await advance(SECOND);
      expect(await executions(rule.id)).toHaveLength(0);
      server.server.db.exec(`DROP TRIGGER refuse_firing`);
      await advance(SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
      await advance(SECOND);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { is_enabled: false });
    });

    it('given two rules on a reading whose firings the log refused, then the next tick judges that reading again: each fires once', async () => {
      const device = await deviceOf(api, owner);
      const rules = [await createRule({ trigger_conditions: hot(device), actions: [alertAction('a')] }), await createRule({ trigger_conditions: hot(device), actions: [alertAction('b')] })];
      server.server.db.exec(`CREATE TRIGGER refuse_firing BEFORE INSERT ON events WHEN NEW.type = 'rule.triggered' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
      await reading(device, 35);
      expect(ruleEvents('rule.triggered', rules[0]!.id) + ruleEvents('rule.triggered', rules[1]!.id)).toBe(0);
      server.server.db.exec(`DROP TRIGGER refuse_firing`);
      // Nothing else is written: only the tick can make up for the failed batch.
      await advance(SECOND);
      expect([(await executions(rules[0]!.id)).length, (await executions(rules[1]!.id)).length]).toEqual([1, 1]);
      await reading(device, 36);
      expect([(await executions(rules[0]!.id)).length, (await executions(rules[1]!.id)).length]).toEqual([1, 1]);
      for (const rule of rules) await updateRule(rule.id, { is_enabled: false });
    });
  });

  describe('schedules', () => {
    it('a cron "0 * * * *" fires 24 times across a day advanced hour by hour, and a Paris cron at Paris time', async () => {
      await toNextHour();
      const start = server.clock.now().getTime();
      const hourly = await createRule({ schedule: { cron: '0 * * * *' }, actions: [alertAction('hourly')] });
      // 07:30 in Paris is 06:30 UTC in March: with hourly ticks it fires at the 07:00 UTC tick (not 08:00).
      const paris = await createRule({ schedule: { cron: '30 7 * * *', timezone: 'Europe/Paris' }, actions: [alertAction('morning')] });
      await server.server.automation.tick();
      await settle();
      for (let hour = 1; hour <= 24; hour++) await advance(HOUR);
      const history = await executions(hourly.id);
      expect(history).toHaveLength(24);
      expect(history.map((e) => Date.parse(e.triggered_at) - start)).toEqual(Array.from({ length: 24 }, (_, i) => (i + 1) * HOUR));
      expect(history.every((e) => e.cause.kind === 'schedule')).toBe(true);
      expect(new Set(history.map((e) => new Date(e.triggered_at).getUTCMinutes()))).toEqual(new Set([0]));
      const morning = await executions(paris.id);
      expect(morning).toHaveLength(1);
      expect(new Date(morning[0]!.triggered_at).getUTCHours()).toBe(7);
      // Ticks more often than the schedule do not fire it more often.
      for (let i = 0; i < 4; i++) await advance(10 * MINUTE);
      expect(await executions(hourly.id)).toHaveLength(24);
      await updateRule(hourly.id, { is_enabled: false });
      await updateRule(paris.id, { is_enabled: false });
    });

    it('every_seconds fires on each interval, once per tick however late the tick', async () => {
      const rule = await createRule({ schedule: { every_seconds: 60 }, actions: [alertAction('minutely')] });
      await server.server.automation.tick();
      await settle();
      for (let i = 0; i < 5; i++) await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(5);
      await advance(30 * SECOND);
      expect(await executions(rule.id)).toHaveLength(5);
      // A tick long overdue fires once, not once per missed interval.
      await advance(30 * SECOND + 5 * MINUTE);
      expect(await executions(rule.id)).toHaveLength(6);
      await updateRule(rule.id, { is_enabled: false });
    });

    it('a schedule with conditions fires only when they hold at the scheduled time', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ schedule: { every_seconds: 60 }, trigger_conditions: hot(device), actions: [alertAction('hot at check')] });
      await server.server.automation.tick();
      await settle();
      await reading(device, 20);
      await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(0);
      await reading(device, 35); // a reading alone does not fire a scheduled rule
      expect(await executions(rule.id)).toHaveLength(0);
      await advance(MINUTE);
      await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(2);
      await updateRule(rule.id, { is_enabled: false });
    });
  });

  describe('actions and delays', () => {
    it('delay_seconds 60: the second action runs only once the clock moved 60 s and a tick ran; executions show pending, then done', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({
        trigger_conditions: hot(device),
        actions: [
          { type: 'command', device_id: device.id, command_type: 'fan_on', parameters: { speed: 3 } },
          alertAction('still hot after a minute', { device_id: device.id, delay_seconds: 60 }),
        ],
      });
      await reading(device, 35);
      const firedAt = server.clock.now().getTime();
      let [execution] = await executions(rule.id);
      expect(execution!.actions.map((a) => a.status)).toEqual(['done', 'pending']);
      expect(execution!.actions[1]!.due_at).toBe(new Date(firedAt + 60 * SECOND).toISOString());
      // Every field the OpenAPI document names, and none it does not.
      const documented = Object.keys(executionSchema.shape.actions.element.shape).sort();
      for (const action of execution!.actions) expect(Object.keys(action).sort()).toEqual(documented);
      expect(execution!.actions.map((a) => a.completed_at)).toEqual([new Date(firedAt).toISOString(), null]);
      expect(execution!.actions[0]!.detail).toMatch(/queued command/);
      expect(await ruleAlerts(rule.id)).toHaveLength(0);
      await advance(59 * SECOND);
      [execution] = await executions(rule.id);
      expect(execution!.actions[1]!.status).toBe('pending');
      expect(await ruleAlerts(rule.id)).toHaveLength(0);
      server.clock.advance(SECOND);
      await settle();
      expect((await executions(rule.id))[0]!.actions[1]!.status).toBe('pending');
      await server.server.automation.tick();
      await settle();
      [execution] = await executions(rule.id);
      expect(execution!.actions.map((a) => a.status)).toEqual(['done', 'done']);
      expect(execution!.actions[1]!.detail).toMatch(/raised alert/);
      expect(execution!.actions[1]!.completed_at).toBe(new Date(firedAt + 60 * SECOND).toISOString());
      const alerts = await ruleAlerts(rule.id);
      expect(alerts).toHaveLength(1);
      expect(Date.parse(alerts[0]!.raised_at)).toBe(firedAt + 60 * SECOND);
      expect(ruleEvents('rule.action_completed', rule.id)).toBe(2);
    });

    it('delays add up: actions run in order, each after the ones before it', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({
        trigger_conditions: hot(device),
        actions: [alertAction('a', { delay_seconds: 10 }), alertAction('b', { delay_seconds: 20 }), alertAction('c')],
      });
      await reading(device, 35);
      const statuses = async () => (await executions(rule.id))[0]!.actions.map((a) => a.status);
      expect(await statuses()).toEqual(['pending', 'pending', 'pending']);
      await advance(10 * SECOND);
      expect(await statuses()).toEqual(['done', 'pending', 'pending']);
      await advance(19 * SECOND);
      expect(await statuses()).toEqual(['done', 'pending', 'pending']);
      await advance(SECOND);
      expect(await statuses()).toEqual(['done', 'done', 'done']);
      expect((await ruleAlerts(rule.id)).map((a) => a.message).sort()).toEqual(['a', 'b', 'c']);
    });

    it('given a device and a group deleted after a rule named them, when the rule fires, then its actions on them fail and no alert for the device is listed', async () => {
      const sensor = await deviceOf(api, owner);
      const gone = await deviceOf(api, owner);
      const group = await api.post<Data<{ id: string }>>('/api/groups', { name: uniqueName('gone') }, { token: owner.token });
      const rule = await createRule({
        trigger_conditions: hot(sensor),
        actions: [
          alertAction('for a device that left', { device_id: gone.id }),
          { type: 'command', device_id: gone.id, command_type: 'reboot' },
          { type: 'command', group_id: group.body.data.id, command_type: 'reboot' },
        ],
      });
      expect((await api.del(`/api/devices/${gone.id}`, { token: owner.token })).status).toBe(200);
      expect((await api.del(`/api/groups/${group.body.data.id}`, { token: owner.token })).status).toBe(200);

      await reading(sensor, 35);

      const [execution] = await executions(rule.id);
      expect(execution!.actions.map((a) => [a.status, a.detail])).toEqual([
        ['failed', `device ${gone.id} no longer exists`],
        ['failed', `device ${gone.id} no longer exists`],
        ['failed', `group ${group.body.data.id} no longer exists`],
      ]);
      expect(await ruleAlerts(rule.id)).toHaveLength(0);
      const listed = await api.get<List<Alert>>('/api/alerts?limit=500', { token: owner.token });
      expect(listed.body.data.filter((alert) => alert.device_id === gone.id)).toEqual([]);
    });

    it('a command to a group queues one for each of its devices; enable_rule and disable_rule switch other rules', async () => {
      const groupAnswer = await api.post<Data<{ id: string }>>('/api/groups', { name: uniqueName('grp') }, { token: owner.token });
      expect(groupAnswer.status).toBe(201);
      const groupId = groupAnswer.body.data.id;
      const members = [await deviceOf(api, owner, { group_id: groupId }), await deviceOf(api, owner, { group_id: groupId })];
      const sensor = await deviceOf(api, owner);
      const dormant = await createRule({ trigger_conditions: hot(sensor, { value: 1000 }), actions: [alertAction('dormant')], is_enabled: false });
      const active = await createRule({ trigger_conditions: hot(sensor, { value: 1000 }), actions: [alertAction('active')] });
      const rule = await createRule({
        trigger_conditions: hot(sensor),
        actions: [
          { type: 'command', group_id: groupId, command_type: 'vent_open' },
          { type: 'enable_rule', rule_id: dormant.id },
          { type: 'disable_rule', rule_id: active.id },
        ],
      });
      await reading(sensor, 35);
      const [execution] = await executions(rule.id);
      expect(execution!.actions.map((a) => a.status)).toEqual(['done', 'done', 'done']);
      for (const member of members) {
        const commands = await api.get<List<{ command_type: string; status: string }>>(`/api/commands?device_id=${member.id}`, { token: owner.token });
        expect(commands.body.data.map((c) => c.command_type)).toEqual(['vent_open']);
      }
      expect((await getRule(dormant.id)).is_enabled).toBe(true);
      expect((await getRule(active.id)).is_enabled).toBe(false);
    });
  });

  describe('disabling and deleting', () => {
    it('a disabled rule does not fire; enabled again, it fires on the next crossing', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      await reading(device, 35);
      await reading(device, 20);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { is_enabled: false });
      await settle();
      await reading(device, 35);
      await reading(device, 20);
      await reading(device, 36);
      await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(1);
      await updateRule(rule.id, { enabled_status: true });
      await settle();
      await reading(device, 20);
      await reading(device, 40);
      expect(await executions(rule.id)).toHaveLength(2);
    });

    it("disabling a scheduled rule stops its schedule at once; enabled again it does not catch up on missed runs", async () => {
      const rule = await createRule({ schedule: { every_seconds: 60 }, actions: [alertAction('tick')] });
      await server.server.automation.tick();
      await advance(MINUTE);
      await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(2);
      await updateRule(rule.id, { is_enabled: false });
      for (let i = 0; i < 5; i++) await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(2);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(2);
      await updateRule(rule.id, { is_enabled: true });
      await server.server.automation.tick();
      await settle();
      expect(await executions(rule.id)).toHaveLength(2);
      await advance(MINUTE);
      expect(await executions(rule.id)).toHaveLength(3);
      await updateRule(rule.id, { is_enabled: false });
    });

    it("deleting a scheduled rule stops its schedule", async () => {
      const rule = await createRule({ schedule: { every_seconds: 30 }, actions: [alertAction('tick')] });
      await server.server.automation.tick();
      await advance(30 * SECOND);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
      const deleted = await api.del<Data<{ id: string; deleted: boolean }>>(`/api/automation/rules/${rule.id}`, { token: owner.token });
      expect(deleted.status).toBe(200);
      for (let i = 0; i < 5; i++) await advance(30 * SECOND);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
    });

    it('a deleted condition rule fires no more', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      await reading(device, 35);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
      expect((await api.del(`/api/automation/rules/${rule.id}`, { token: owner.token })).status).toBe(200);
      await reading(device, 20);
      await reading(device, 40);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
    });
  });

  describe('runaway chains', () => {
    it('a cycle of enable_rule is refused at validation (400), directly or through other rules', async () => {
      const device = await deviceOf(api, owner);
      const a = await createRule({ trigger_conditions: hot(device, { value: 500 }), actions: [alertAction('a')] });
      const b = await createRule({ trigger_conditions: hot(device, { value: 600 }), actions: [{ type: 'enable_rule', rule_id: a.id }] });
      const c = await createRule({ trigger_conditions: hot(device, { value: 700 }), actions: [{ type: 'enable_rule', rule_id: b.id }] });
      const selfLoop = await api.put(`/api/automation/rules/${a.id}`, { actions: [{ type: 'enable_rule', rule_id: a.id }] }, { token: owner.token });
      expectValidation(selfLoop, 'actions');
      const threeLoop = await api.put(`/api/automation/rules/${a.id}`, { actions: [alertAction('a'), { type: 'enable_rule', rule_id: c.id }] }, { token: owner.token });
      const error = expectValidation(threeLoop, 'actions');
      expect(error.message).toContain(c.id);
      // Nothing changed.
      expect((await getRule(a.id)).actions).toEqual([alertAction('a')]);
      // Disabling each other is no cycle.
      await updateRule(a.id, { actions: [{ type: 'disable_rule', rule_id: c.id }] });
    });

    const floodRule = async (): Promise<{ device: Device; rule: Rule }> => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: { type: 'event', event_type: 'readings.recorded', device_id: device.id }, actions: [alertAction('reading')], cooldown_seconds: 0 });
      return { device, rule };
    };
    /** `n` readings one second apart; answers nothing, the tests look at the executions. */
    const flood = async (device: Device, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        await reading(device, i);
        server.clock.advance(SECOND);
      }
    };

    it(`rate limit: the ${MAX_FIRINGS_PER_MINUTE + 1}th firing within a minute is held back and recorded as rule.throttled`, async () => {
      const { device, rule } = await floodRule();
      await flood(device, MAX_FIRINGS_PER_MINUTE);
      expect(await executions(rule.id)).toHaveLength(MAX_FIRINGS_PER_MINUTE);
      expect(ruleEvents('rule.throttled', rule.id)).toBe(0);
      await flood(device, 1);
      expect(await executions(rule.id)).toHaveLength(MAX_FIRINGS_PER_MINUTE);
      expect(ruleEvents('rule.throttled', rule.id)).toBe(1);
      const throttled = server.server.db.prepare<[string], { data: string }>(`SELECT data FROM events WHERE type = 'rule.throttled' AND json_extract(data, '$.rule_id') = ?`).get(rule.id);
      expect(JSON.parse(throttled!.data)).toMatchObject({ rule_id: rule.id, firings_last_minute: MAX_FIRINGS_PER_MINUTE });
      await updateRule(rule.id, { is_enabled: false });
    });

    it(`rate limit: further firings within the minute stay held back, recorded once; a minute later it fires again`, async () => {
      const { device, rule } = await floodRule();
      await flood(device, MAX_FIRINGS_PER_MINUTE + 5);
      expect(await executions(rule.id)).toHaveLength(MAX_FIRINGS_PER_MINUTE);
      expect(ruleEvents('rule.throttled', rule.id)).toBe(1);
      // A minute later the rule may fire again, up to the limit, and a new throttling is recorded.
      await advance(MINUTE);
      await flood(device, MAX_FIRINGS_PER_MINUTE + 2);
      expect(await executions(rule.id)).toHaveLength(2 * MAX_FIRINGS_PER_MINUTE);
      expect(ruleEvents('rule.throttled', rule.id)).toBe(2);
      await updateRule(rule.id, { is_enabled: false });
    });
  });

  describe('restarts and replays', () => {
    it('catching up after a crash, a rule never acts on events older than itself', async () => {
      const device = await deviceOf(api, owner);
      await settle();
      const before = server.server.services.log.headPosition();
      await reading(device, 35); // hot, but no rule yet
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('too late')] });
      await settle();
      // A crash before the engine saved its checkpoint: at restart it catches up from before the reading.
      server.server.db.prepare('UPDATE automation_checkpoint SET position = ?').run(before);
      await restart();
      expect(await executions(rule.id)).toHaveLength(0);
      // Later readings still count.
      await reading(device, 20);
      await reading(device, 36);
      expect(await executions(rule.id)).toHaveLength(1);
    });

    it('a restart in the middle of a for_seconds window: the window still completes on time, and fires once', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device, { for_seconds: 30 }), actions: [alertAction('held')] });
      await reading(device, 35);
      const heldFrom = server.clock.now().getTime();
      await advance(10 * SECOND);
      await restart();
      await advance(19 * SECOND);
      expect(await executions(rule.id)).toHaveLength(0);
      await advance(SECOND);
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(Date.parse(history[0]!.triggered_at) - heldFrom).toBe(30 * SECOND);
      await restart();
      await advance(MINUTE);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
    });

    it('a restart in the middle of a delay: the delayed action still runs on time, once, and nothing fires twice', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('now'), alertAction('later', { delay_seconds: 60 })] });
      await reading(device, 35);
      const firedAt = server.clock.now().getTime();
      await advance(30 * SECOND);
      await restart();
      await advance(29 * SECOND);
      expect((await executions(rule.id))[0]!.actions.map((a) => a.status)).toEqual(['done', 'pending']);
      await advance(SECOND);
      const history = await executions(rule.id);
      expect(history).toHaveLength(1);
      expect(history[0]!.actions.map((a) => a.status)).toEqual(['done', 'done']);
      const alerts = await ruleAlerts(rule.id);
      expect(alerts.map((a) => a.message).sort()).toEqual(['later', 'now']);
      expect(Date.parse(alerts.find((a) => a.message === 'later')!.raised_at)).toBe(firedAt + 60 * SECOND);
      await restart();
      await advance(2 * MINUTE);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
      expect(ruleEvents('rule.action_completed', rule.id)).toBe(2);
      expect(await ruleAlerts(rule.id)).toHaveLength(2);
    });

    it('a restart after firings fires nothing again, and neither does a scheduled rule at start-up', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      const every = await createRule({ schedule: { every_seconds: 3600 }, actions: [alertAction('hourly')] });
      await server.server.automation.tick();
      await reading(device, 35);
      await reading(device, 20);
      await reading(device, 35);
      await advance(HOUR);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(2);
      expect(ruleEvents('rule.triggered', every.id)).toBe(1);
      const headBefore = server.server.services.log.headPosition();
      await restart();
      await server.server.timers.runAll();
      await server.server.automation.tick();
      await settle();
      expect(server.server.services.log.headPosition()).toBe(headBefore);
      expect(ruleEvents('rule.triggered', rule.id)).toBe(2);
      expect(ruleEvents('rule.triggered', every.id)).toBe(1);
      await updateRule(every.id, { is_enabled: false });
    });

    it('an engine checkpoint lagging behind the log (a crash before it was saved) does not fire again for events already acted on', async () => {
      const device = await deviceOf(api, owner);
      const rule = await createRule({ trigger_conditions: hot(device), actions: [alertAction('hot')] });
      await reading(device, 35);
      const [execution] = await executions(rule.id);
      const cause = execution!.cause.position!;
      expect(cause).toBeGreaterThan(0);
      await server.server.close();
      const db = new Database(join(server.dataDir, DATABASE_FILE));
      try {
        db.prepare(`UPDATE automation_checkpoint SET position = ? WHERE id = 1`).run(cause - 1);
        db.prepare(`DELETE FROM automation_runtime WHERE rule_id = ?`).run(rule.id);
      } finally {
        db.close();
      }
      await restartFromDisk(server);
      server.server.timers.stop();
      await settle();
      await server.server.automation.tick();
      await settle();
      expect(ruleEvents('rule.triggered', rule.id)).toBe(1);
    });

    it('replaying the log rebuilds the same rule read models and appends nothing', async () => {
      const { services, db } = server.server;
      await settle();
      await server.server.timers.idle();
      const headBefore = services.log.headPosition();
      const result = await rebuildAndCompare({ db, log: services.log }, join(server.dataDir, `replay-${Date.now()}.db`), createProjections(services.config), pino({ level: 'silent' }));
      expect(result.differing).toEqual([]);
      expect(Object.keys(result.live)).toContain('rules');
      expect(services.log.headPosition()).toBe(headBefore);
    });
  });
});
