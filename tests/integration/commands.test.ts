import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, expectError, expectValidation, uniqueName, type Data, type List, type Meta, type RegisteredDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { z } from 'zod';
import type { command as commandSchema } from '../../src/api/schemas/commands.js';

/** The Command shape of the contract (plus the fields the server adds). */
type Command = z.infer<typeof commandSchema>;

interface CommandList {
  data: Command[];
  meta: Meta & { batch?: { batch_id: string; by_status: Record<string, number> } };
}

interface CommandStats {
  total: number;
  by_status: Record<string, number>;
  success_rate: number | null;
  avg_latency_ms: number | null;
}

interface DeviceMetrics {
  commands_total: number;
  commands_by_status: Record<string, number>;
  command_success_rate: number | null;
  mean_command_latency_ms: number | null;
}

type Account = Awaited<ReturnType<typeof registerUser>>;

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SECOND = 1000;
const COMMAND_KEYS = ['command_type', 'created_at', 'device_id', 'executed_at', 'expires_at', 'id', 'parameters', 'priority', 'response', 'sent_at', 'status', 'user_id'];

describe('commands', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Account;
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    server = await startTestServer({ DEFAULT_DEVICE_QUOTA: '1000' });
    admin = await registerUser(api, uniqueName('cadmin'));
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
  });
  afterAll(async () => {
    await server?.close();
  });

  const queue = async (token: string, deviceId: string, body: Record<string, unknown> = { command_type: 'reboot' }): Promise<Command> => {
    const answer = await api.post<Data<Command>>(`/api/devices/${deviceId}/commands`, body, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    return answer.body.data;
  };
  const fetchPending = async (device: RegisteredDevice): Promise<Command[]> => {
    const answer = await api.get<Data<Command[]>>(`/api/devices/${device.id}/commands/pending`, { token: device.credentials.auth_token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const report = (device: RegisteredDevice, commandId: string, body: Record<string, unknown>, token = device.credentials.auth_token) =>
    api.post<Data<Command>>(`/api/devices/${device.id}/commands/${commandId}/result`, body, { token });
  const command = async (token: string, id: string): Promise<Command> => {
    const answer = await api.get<Data<Command>>(`/api/commands/${id}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const list = async (token: string, query: string): Promise<CommandList> => {
    const answer = await api.get<CommandList>(`/api/commands?${query}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body;
  };
  /** Moves the clock, then runs the timers (twice: a run already under way may have read the old time). */
  const advanceAndTick = async (ms: number): Promise<void> => {
    server.clock.advance(ms);
    await server.server.timers.runAll();
    await server.server.timers.runAll();
  };

  describe('POST /api/devices/:id/commands', () => {
    it('answers 202 with a pending Command of the contract shape', async () => {
      const device = await createDevice(api, alice.token);
      const now = server.clock.now().toISOString();
      const answer = await api.post<Data<Command>>(`/api/devices/${device.id}/commands`, { command_type: 'set_mode', parameters: { mode: 'eco', level: 2 } }, { token: alice.token });
      expect(answer.status).toBe(202);
      const c = answer.body.data;
      for (const key of COMMAND_KEYS) expect(c).toHaveProperty(key);
      expect(c.id).toMatch(UUID);
      expect(c).toMatchObject({
        device_id: device.id,
        user_id: alice.id,
        command_type: 'set_mode',
        parameters: { mode: 'eco', level: 2 },
        priority: 'normal',
        status: 'pending',
        created_at: now,
        sent_at: null,
        executed_at: null,
        expires_at: null,
        response: null,
      });
      expect(c.created_at).toMatch(ISO_MS);
      expect(await command(alice.token, c.id)).toEqual(c);
    });

    it('defaults parameters to {}, keeps the priority, and sets expires_at from expires_in', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id, { command_type: 'reboot', priority: 'critical', expires_in: 60 });
      expect(c.parameters).toEqual({});
      expect(c.priority).toBe('critical');
      expect(c.expires_at).toBe(new Date(Date.parse(c.created_at) + 60 * SECOND).toISOString());
      expect(c.timeout_seconds).toBe(60);
      expect(c.retries).toBe(0);
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['a command_type starting with a digit', { command_type: '1reboot' }, 'command_type'],
      ['a command_type with a space', { command_type: 're boot' }, 'command_type'],
      ['an empty command_type', { command_type: '' }, 'command_type'],
      ['a command_type of 65 characters', { command_type: `a${'b'.repeat(64)}` }, 'command_type'],
      ['a command_type that is not a string', { command_type: 42 }, 'command_type'],
      ['no command_type', { parameters: {} }, 'command_type'],
      ['parameters as an array', { command_type: 'reboot', parameters: [1, 2] }, 'parameters'],
      ['parameters as a string', { command_type: 'reboot', parameters: 'fast' }, 'parameters'],
      ['parameters as a number', { command_type: 'reboot', parameters: 5 }, 'parameters'],
      ['parameters over 16 KiB', { command_type: 'reboot', parameters: { blob: 'x'.repeat(17 * 1024) } }, 'parameters'],
      ['an unknown priority', { command_type: 'reboot', priority: 'urgent' }, 'priority'],
      ['expires_in 0', { command_type: 'reboot', expires_in: 0 }, 'expires_in'],
      ['a negative expires_in', { command_type: 'reboot', expires_in: -5 }, 'expires_in'],
      ['a fractional expires_in', { command_type: 'reboot', expires_in: 1.5 }, 'expires_in'],
      ['expires_in as a string', { command_type: 'reboot', expires_in: '60' }, 'expires_in'],
      ['timeout_seconds 0', { command_type: 'reboot', timeout_seconds: 0 }, 'timeout_seconds'],
      ['negative retries', { command_type: 'reboot', retries: -1 }, 'retries'],
    ])('refuses %s with 400 and stores nothing', async (_name, body, path) => {
      const device = await createDevice(api, alice.token);
      expectValidation(await api.post(`/api/devices/${device.id}/commands`, body, { token: alice.token }), path);
      expect((await list(alice.token, `device_id=${device.id}`)).meta.total).toBe(0);
    });

    it("answers 404 for another user's device or an unknown one, 401 without credentials, 403 for a device token", async () => {
      const device = await createDevice(api, alice.token);
      expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: bob.token }), 404, 'not_found');
      expectError(await api.post('/api/devices/00000000-0000-4000-8000-000000000000/commands', { command_type: 'reboot' }, { token: alice.token }), 404, 'not_found');
      expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }), 401, 'unauthenticated');
      expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: device.credentials.auth_token }), 403, 'forbidden');
      expect((await list(alice.token, `device_id=${device.id}`)).meta.total).toBe(0);
    });

    it("lets an admin queue on anyone's device, owned by the device's owner", async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(admin.token, device.id);
      expect(c.user_id).toBe(alice.id);
      expect((await command(alice.token, c.id)).id).toBe(c.id);
    });
  });

  describe('the device fetches and reports', () => {
    it('fetches only its own pending commands, highest priority first then oldest, and they become sent', async () => {
      const device = await createDevice(api, alice.token);
      const other = await createDevice(api, alice.token);
      const ids: Record<string, string> = {};
      for (const [name, priority] of [
        ['A', 'low'],
        ['B', 'critical'],
        ['C', 'normal'],
        ['D', 'high'],
        ['E', 'normal'],
        ['F', 'critical'],
        ['G', 'low'],
      ] as const) {
        ids[name] = (await queue(alice.token, device.id, { command_type: `cmd_${name}`, priority })).id;
        server.clock.advance(1);
      }
      const foreign = await queue(alice.token, other.id);

      const before = server.clock.now().toISOString();
      const fetched = await fetchPending(device);
      expect(fetched.map((c) => c.id)).toEqual(['B', 'F', 'D', 'C', 'E', 'A', 'G'].map((n) => ids[n]));
      for (const c of fetched) {
        expect(c.device_id).toBe(device.id);
        expect(c.status).toBe('sent');
        expect(c.sent_at).toBe(before);
      }
      expect(await fetchPending(device)).toEqual([]);
      expect((await command(alice.token, ids.B!)).status).toBe('sent');
      expect((await command(alice.token, foreign.id)).status).toBe('pending');
      expect((await fetchPending(other)).map((c) => c.id)).toEqual([foreign.id]);
    });

    it('takes at most limit commands, the most urgent; meta.total says how many were waiting; the rest stay pending', async () => {
      const device = await createDevice(api, alice.token);
      const queued = [];
      for (const priority of ['low', 'critical', 'normal', 'high'] as const) {
        queued.push(await queue(alice.token, device.id, { command_type: `c_${priority}`, priority }));
        server.clock.advance(1);
      }
      const page = await api.get<List<Command>>(`/api/devices/${device.id}/commands/pending?limit=2`, { token: device.credentials.auth_token });
      expect(page.status).toBe(200);
      expect(page.body.data.map((c) => c.command_type)).toEqual(['c_critical', 'c_high']);
      expect(page.body.meta).toEqual({ total: 4, limit: 2, offset: 0 });
      const rest = await api.get<List<Command>>(`/api/devices/${device.id}/commands/pending`, { token: device.credentials.auth_token });
      expect(rest.body.data.map((c) => c.command_type)).toEqual(['c_normal', 'c_low']);
      expect(rest.body.meta).toEqual({ total: 2, limit: 50, offset: 0 });
      expectValidation(await api.get(`/api/devices/${device.id}/commands/pending?limit=0`, { token: device.credentials.auth_token }), 'limit');
    });

    it('for any sequence of priorities, the fetch answers critical > high > normal > low, then oldest first (fast-check over HTTP)', async () => {
      const rank = { critical: 3, high: 2, normal: 1, low: 0 } as const;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.constantFrom<keyof typeof rank>('low', 'normal', 'high', 'critical'), { minLength: 1, maxLength: 8 }), fc.boolean(), async (priorities, stepClock) => {
          const device = await createDevice(api, alice.token);
          const queued: Array<{ id: string; priority: keyof typeof rank; age: number }> = [];
          for (const [age, priority] of priorities.entries()) {
            queued.push({ id: (await queue(alice.token, device.id, { command_type: 'ping', priority })).id, priority, age });
            if (stepClock) server.clock.advance(1);
          }
          const expected = [...queued].sort((a, b) => rank[b.priority] - rank[a.priority] || a.age - b.age).map((c) => c.id);
          expect((await fetchPending(device)).map((c) => c.id)).toEqual(expected);
          expect(await fetchPending(device)).toEqual([]);
        }),
        { numRuns: 15 },
      );
    });

    it('hands each command to one of two concurrent fetches, never to both', async () => {
      const device = await createDevice(api, alice.token);
      const queued = [];
      for (let i = 0; i < 5; i++) queued.push((await queue(alice.token, device.id)).id);
      const [first, second] = await Promise.all([fetchPending(device), fetchPending(device)]);
      const all = [...first!, ...second!].map((c) => c.id);
      expect(all.sort()).toEqual([...queued].sort());
    });

    it("refuses another device's token (403), a user token (403) and no credentials (401) on the pending route", async () => {
      const device = await createDevice(api, alice.token);
      const other = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      expectError(await api.get(`/api/devices/${device.id}/commands/pending`, { token: other.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${device.id}/commands/pending`, { token: alice.token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${device.id}/commands/pending`), 401, 'unauthenticated');
      expect((await command(alice.token, c.id)).status).toBe('pending');
    });

    it('records executed and failed results with the response; a second result answers 409', async () => {
      const device = await createDevice(api, alice.token);
      const ok = await queue(alice.token, device.id, { command_type: 'reboot' });
      const bad = await queue(alice.token, device.id, { command_type: 'calibrate' });
      await fetchPending(device);
      server.clock.advance(1500);

      const executed = await report(device, ok.id, { status: 'executed', response: { uptime: 0, note: 'rebooted' } });
      expect(executed.status).toBe(200);
      expect(executed.body.data).toMatchObject({ id: ok.id, status: 'executed', response: { uptime: 0, note: 'rebooted' }, executed_at: server.clock.now().toISOString() });

      const failed = await report(device, bad.id, { status: 'failed', response: { error: 'sensor stuck' } });
      expect(failed.status).toBe(200);
      expect(failed.body.data).toMatchObject({ id: bad.id, status: 'failed', response: { error: 'sensor stuck' }, failure_reason: 'device' });

      expectError(await report(device, ok.id, { status: 'executed' }), 409, 'conflict');
      expectError(await report(device, ok.id, { status: 'failed' }), 409, 'conflict');
      expectError(await report(device, bad.id, { status: 'executed' }), 409, 'conflict');
      expect((await command(alice.token, ok.id)).status).toBe('executed');
      expect((await command(alice.token, bad.id)).status).toBe('failed');
    });

    it('two results sent at once: exactly one 200, the other 409; a result racing a cancel: one wins, the other 409', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      await fetchPending(device);
      const [first, second] = await Promise.all([report(device, c.id, { status: 'executed' }), report(device, c.id, { status: 'failed' })]);
      expect([first!.status, second!.status].sort()).toEqual([200, 409]);
      const winner = first!.status === 200 ? first! : second!;
      expect((await command(alice.token, c.id)).status).toBe(winner.body.data.status);

      const raced = await queue(alice.token, device.id);
      await fetchPending(device);
      const [result, cancel] = await Promise.all([
        report(device, raced.id, { status: 'executed' }),
        api.post<Data<Command>>(`/api/commands/${raced.id}/cancel`, undefined, { token: alice.token }),
      ]);
      expect([result.status, cancel.status].sort()).toEqual([200, 409]);
      expect((await command(alice.token, raced.id)).status).toBe(result.status === 200 ? 'executed' : 'cancelled');
      const events = await api.get<List<{ type: string }>>(`/api/events?stream_id=command-${raced.id}`, { token: alice.token });
      expect(events.body.data.map((e) => e.type)).toEqual(['command.queued', 'command.sent', result.status === 200 ? 'command.executed' : 'command.cancelled']);
    });

    it('accepts a result without a response, and one for a command not fetched yet', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      const answer = await report(device, c.id, { status: 'executed' });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ status: 'executed', response: null });
    });

    it("refuses a result for another device's command (404 through its own path, 403 through the other's) and leaves it open", async () => {
      const device = await createDevice(api, alice.token);
      const other = await createDevice(api, alice.token);
      const theirs = await queue(alice.token, other.id);
      await fetchPending(other);
      expectError(await report(device, theirs.id, { status: 'executed' }), 404, 'not_found');
      expectError(await api.post(`/api/devices/${other.id}/commands/${theirs.id}/result`, { status: 'executed' }, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await report(device, '00000000-0000-4000-8000-000000000000', { status: 'executed' }), 404, 'not_found');
      expectError(await report(other, theirs.id, { status: 'executed' }, alice.token), 403, 'forbidden');
      expect((await command(alice.token, theirs.id)).status).toBe('sent');
    });

    it('validates the result body', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      await fetchPending(device);
      expectValidation(await report(device, c.id, { status: 'done' }), 'status');
      expectValidation(await report(device, c.id, {}), 'status');
      expectValidation(await report(device, c.id, { status: 'executed', response: 'fine' }), 'response');
      expect((await command(alice.token, c.id)).status).toBe('sent');
    });
  });

  describe('cancel', () => {
    it('cancels a pending and a sent command (200), refuses an executed or cancelled one (409)', async () => {
      const device = await createDevice(api, alice.token);
      const sent = await queue(alice.token, device.id);
      await fetchPending(device);
      const pending = await queue(alice.token, device.id);
      const done = await queue(alice.token, device.id);
      expect((await report(device, done.id, { status: 'executed' })).status).toBe(200);

      const cancelPending = await api.post<Data<Command>>(`/api/commands/${pending.id}/cancel`, undefined, { token: alice.token });
      expect(cancelPending.status).toBe(200);
      expect(cancelPending.body.data).toMatchObject({ id: pending.id, status: 'cancelled' });
      const cancelSent = await api.post<Data<Command>>(`/api/commands/${sent.id}/cancel`, undefined, { token: alice.token });
      expect(cancelSent.status).toBe(200);
      expect(cancelSent.body.data.status).toBe('cancelled');

      expectError(await api.post(`/api/commands/${done.id}/cancel`, undefined, { token: alice.token }), 409, 'conflict');
      expectError(await api.post(`/api/commands/${pending.id}/cancel`, undefined, { token: alice.token }), 409, 'conflict');
      expect((await command(alice.token, done.id)).status).toBe('executed');
      // A cancelled command is never delivered, and its result is refused.
      expect(await fetchPending(device)).toEqual([]);
      expectError(await report(device, sent.id, { status: 'executed' }), 409, 'conflict');
    });

    it("answers 404 for another user's command or an unknown one; 403 for a device token", async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      expectError(await api.post(`/api/commands/${c.id}/cancel`, undefined, { token: bob.token }), 404, 'not_found');
      expectError(await api.post('/api/commands/00000000-0000-4000-8000-000000000000/cancel', undefined, { token: alice.token }), 404, 'not_found');
      expectError(await api.post(`/api/commands/${c.id}/cancel`, undefined, { token: device.credentials.auth_token }), 403, 'forbidden');
      expect((await command(alice.token, c.id)).status).toBe('pending');
    });
  });

  describe('GET /api/commands', () => {
    it('filters by device_id, status, command_type and dates, newest first, with paging; scoped to the user', async () => {
      const carol = await registerUser(api, uniqueName('carol'));
      const one = await createDevice(api, carol.token);
      const two = await createDevice(api, carol.token);
      const t0 = server.clock.now().getTime();
      const a = await queue(carol.token, one.id, { command_type: 'reboot' });
      server.clock.advance(60 * SECOND);
      const b = await queue(carol.token, one.id, { command_type: 'read_sensor' });
      server.clock.advance(60 * SECOND);
      const c = await queue(carol.token, two.id, { command_type: 'reboot' });
      server.clock.advance(60 * SECOND);
      const d = await queue(carol.token, two.id, { command_type: 'set_mode' });
      await fetchPending(two);
      expect((await report(two, c.id, { status: 'executed' })).status).toBe(200);

      const ids = (body: CommandList) => body.data.map((x) => x.id);
      const all = await list(carol.token, '');
      expect(ids(all)).toEqual([d.id, c.id, b.id, a.id]);
      expect(all.meta).toMatchObject({ total: 4, limit: 50, offset: 0 });
      expect(ids(await list(carol.token, `device_id=${one.id}`))).toEqual([b.id, a.id]);
      expect(ids(await list(carol.token, 'status=pending'))).toEqual([b.id, a.id]);
      expect(ids(await list(carol.token, 'status=sent'))).toEqual([d.id]);
      expect(ids(await list(carol.token, 'status=executed'))).toEqual([c.id]);
      expect(ids(await list(carol.token, 'status=failed'))).toEqual([]);
      expect(ids(await list(carol.token, 'command_type=reboot'))).toEqual([c.id, a.id]);
      expect(ids(await list(carol.token, `command_type=reboot&device_id=${two.id}`))).toEqual([c.id]);
      const iso = (ms: number) => new Date(ms).toISOString();
      expect(ids(await list(carol.token, `start_date=${iso(t0 + 60 * SECOND)}&end_date=${iso(t0 + 120 * SECOND)}`))).toEqual([c.id, b.id]);
      expect(ids(await list(carol.token, `start_date=${iso(t0 + 61 * SECOND)}`))).toEqual([d.id, c.id]);
      expect(ids(await list(carol.token, `end_date=${iso(t0 + 59 * SECOND)}`))).toEqual([a.id]);

      const page = await list(carol.token, 'limit=2&offset=1');
      expect(ids(page)).toEqual([c.id, b.id]);
      expect(page.meta).toMatchObject({ total: 4, limit: 2, offset: 1 });
      expect(ids(await list(carol.token, 'limit=2&offset=4'))).toEqual([]);

      // Another user sees none of them; an admin sees them all.
      const bobs = await list(bob.token, `device_id=${one.id}`);
      expect(bobs.meta.total).toBe(0);
      expect(ids(await list(bob.token, 'limit=500'))).not.toContain(a.id);
      expect(ids(await list(admin.token, `device_id=${one.id}`))).toEqual([b.id, a.id]);
    });

    it('refuses unknown filter values with 400', async () => {
      expectValidation(await api.get('/api/commands?status=done', { token: alice.token }), 'status');
      expectValidation(await api.get('/api/commands?command_type=1x', { token: alice.token }), 'command_type');
      expectValidation(await api.get('/api/commands?start_date=yesterday', { token: alice.token }), 'start_date');
      expectValidation(await api.get('/api/commands?start_date=2026-03-02&end_date=2026-03-01', { token: alice.token }), 'start_date');
      expectValidation(await api.get('/api/commands?limit=0', { token: alice.token }), 'limit');
      expectValidation(await api.get('/api/commands?limit=501', { token: alice.token }), 'limit');
    });

    it("GET /api/commands/:id answers 404 for another user's command and an unknown id; the owner and admins see it", async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      expectError(await api.get(`/api/commands/${c.id}`, { token: bob.token }), 404, 'not_found');
      expectError(await api.get('/api/commands/00000000-0000-4000-8000-000000000000', { token: alice.token }), 404, 'not_found');
      expectError(await api.get(`/api/commands/${c.id}`), 401, 'unauthenticated');
      expect((await command(alice.token, c.id)).id).toBe(c.id);
      expect((await command(admin.token, c.id)).id).toBe(c.id);
    });
  });

  describe('expiry and response timeout with the injected clock', () => {
    it('expires pending and sent commands once expires_in has passed, not before', async () => {
      const pendingDevice = await createDevice(api, alice.token);
      const sentDevice = await createDevice(api, alice.token);
      const pending = await queue(alice.token, pendingDevice.id, { command_type: 'reboot', expires_in: 60 });
      const sent = await queue(alice.token, sentDevice.id, { command_type: 'reboot', expires_in: 60, timeout_seconds: 3600 });
      const forever = await queue(alice.token, pendingDevice.id, { command_type: 'reboot' });
      expect((await fetchPending(sentDevice)).map((c) => c.id)).toEqual([sent.id]);

      await advanceAndTick(59 * SECOND);
      expect((await command(alice.token, pending.id)).status).toBe('pending');
      expect((await command(alice.token, sent.id)).status).toBe('sent');

      await advanceAndTick(2 * SECOND);
      expect(await command(alice.token, pending.id)).toMatchObject({ status: 'expired' });
      expect(await command(alice.token, sent.id)).toMatchObject({ status: 'expired' });
      expect((await command(alice.token, forever.id)).status).toBe('pending');

      // Expired: not delivered, no result, no cancel.
      expect((await fetchPending(pendingDevice)).map((c) => c.id)).toEqual([forever.id]);
      expectError(await report(sentDevice, sent.id, { status: 'executed' }), 409, 'conflict');
      expectError(await api.post(`/api/commands/${pending.id}/cancel`, undefined, { token: alice.token }), 409, 'conflict');
      expect((await list(alice.token, `device_id=${pendingDevice.id}&status=expired`)).data.map((c) => c.id)).toEqual([pending.id]);
    });

    it('fails a sent command with failure_reason timeout after timeout_seconds without a result', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id, { command_type: 'reboot', timeout_seconds: 30 });
      expect(c.timeout_seconds).toBe(30);
      await fetchPending(device);
      await advanceAndTick(29 * SECOND);
      expect((await command(alice.token, c.id)).status).toBe('sent');
      await advanceAndTick(2 * SECOND);
      expect(await command(alice.token, c.id)).toMatchObject({ status: 'failed', failure_reason: 'timeout' });
      expectError(await report(device, c.id, { status: 'executed' }), 409, 'conflict');
    });

    it('does not time out a command that is only pending', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id, { command_type: 'reboot', timeout_seconds: 5 });
      await advanceAndTick(600 * SECOND);
      expect((await command(alice.token, c.id)).status).toBe('pending');
    });

    it('with retries 1: a timed-out command goes back to pending, is sent again, then fails with timeout', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id, { command_type: 'reboot', timeout_seconds: 30, retries: 1 });
      expect(c.retries).toBe(1);
      expect((await fetchPending(device))[0]).toMatchObject({ id: c.id, status: 'sent', attempt: 1 });
      await advanceAndTick(31 * SECOND);
      expect(await command(alice.token, c.id)).toMatchObject({ status: 'pending', failure_reason: null });

      const again = await fetchPending(device);
      expect(again.map((x) => x.id)).toEqual([c.id]);
      expect(again[0]).toMatchObject({ status: 'sent', attempt: 2, sent_at: server.clock.now().toISOString() });
      await advanceAndTick(29 * SECOND);
      expect((await command(alice.token, c.id)).status).toBe('sent');
      await advanceAndTick(2 * SECOND);
      expect(await command(alice.token, c.id)).toMatchObject({ status: 'failed', failure_reason: 'timeout' });
    });

    it('a result before the timeout wins: nothing changes afterwards', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id, { command_type: 'reboot', timeout_seconds: 30, expires_in: 40 });
      await fetchPending(device);
      expect((await report(device, c.id, { status: 'executed' })).status).toBe(200);
      await advanceAndTick(120 * SECOND);
      expect((await command(alice.token, c.id)).status).toBe('executed');
    });

    it('keeps the deadlines across restarts: expiry, timeout and retry are re-armed from the log', async () => {
      const pendingDevice = await createDevice(api, alice.token);
      const sentDevice = await createDevice(api, alice.token);
      const expiring = await queue(alice.token, pendingDevice.id, { command_type: 'reboot', expires_in: 60 });
      const timing = await queue(alice.token, sentDevice.id, { command_type: 'reboot', timeout_seconds: 30, retries: 1 });
      await fetchPending(sentDevice);

      await server.restart();
      expect((await command(alice.token, expiring.id)).status).toBe('pending');
      expect((await command(alice.token, timing.id)).status).toBe('sent');

      await advanceAndTick(31 * SECOND);
      expect((await command(alice.token, expiring.id)).status).toBe('pending');
      expect(await command(alice.token, timing.id)).toMatchObject({ status: 'pending', attempt: 1 });

      await server.restart();
      expect((await fetchPending(sentDevice)).map((c) => c.id)).toEqual([timing.id]);
      await server.restart();
      await advanceAndTick(30 * SECOND);
      expect(await command(alice.token, expiring.id)).toMatchObject({ status: 'expired' });
      expect(await command(alice.token, timing.id)).toMatchObject({ status: 'failed', failure_reason: 'timeout', attempt: 2 });
    });
  });

  describe('configuration push and device deletion', () => {
    it('PUT /api/devices/:id with a changed configuration queues update_configuration carrying it', async () => {
      const device = await createDevice(api, alice.token, { configuration: { interval: 60 } });
      const configs = async () => (await list(alice.token, `device_id=${device.id}&command_type=update_configuration`)).data;
      expect(await configs()).toEqual([]);

      expect((await api.put(`/api/devices/${device.id}`, { configuration: { interval: 30, unit: 'C' } }, { token: alice.token })).status).toBe(200);
      const [pushed] = await configs();
      expect(pushed).toMatchObject({ device_id: device.id, user_id: alice.id, command_type: 'update_configuration', status: 'pending', parameters: { configuration: { interval: 30, unit: 'C' } } });

      // The same configuration again, or a change of something else: nothing queued.
      expect((await api.put(`/api/devices/${device.id}`, { configuration: { interval: 30, unit: 'C' } }, { token: alice.token })).status).toBe(200);
      expect((await api.put(`/api/devices/${device.id}`, { name: 'renamed' }, { token: alice.token })).status).toBe(200);
      expect(await configs()).toHaveLength(1);

      // `settings` is the other name of configuration.
      expect((await api.put(`/api/devices/${device.id}`, { settings: { interval: 10 } }, { token: alice.token })).status).toBe(200);
      const both = await configs();
      expect(both.map((c) => c.parameters)).toEqual([{ configuration: { interval: 10 } }, { configuration: { interval: 30, unit: 'C' } }]);

      const delivered = await fetchPending(device);
      expect(delivered.map((c) => c.id).sort()).toEqual(both.map((c) => c.id).sort());
    });

    it('a refused PUT queues nothing', async () => {
      const device = await createDevice(api, alice.token, { configuration: { interval: 60 } });
      expectError(await api.put(`/api/devices/${device.id}`, { configuration: { interval: 5 } }, { token: bob.token }), 404, 'not_found');
      expectValidation(await api.put(`/api/devices/${device.id}`, { configuration: 'fast' }, { token: alice.token }), 'configuration');
      expect((await list(alice.token, `device_id=${device.id}`)).meta.total).toBe(0);
    });

    it("deleting a device cancels its pending and sent commands and keeps finished ones; its token stops working", async () => {
      const device = await createDevice(api, alice.token);
      const done = await queue(alice.token, device.id);
      await fetchPending(device);
      expect((await report(device, done.id, { status: 'executed' })).status).toBe(200);
      const sent = await queue(alice.token, device.id);
      await fetchPending(device);
      const pending = await queue(alice.token, device.id, { command_type: 'reboot', priority: 'critical' });

      expect((await api.del(`/api/devices/${device.id}`, { token: alice.token })).status).toBe(200);
      expect(await command(alice.token, pending.id)).toMatchObject({ status: 'cancelled', failure_reason: 'device_deleted' });
      expect(await command(alice.token, sent.id)).toMatchObject({ status: 'cancelled', failure_reason: 'device_deleted' });
      expect((await command(alice.token, done.id)).status).toBe('executed');
      // ... and they leave every list: the user's commands, filtered by status or not.
      const listed = await list(alice.token, 'limit=500');
      expect(listed.data.some((c) => [done.id, sent.id, pending.id].includes(c.id))).toBe(false);
      expect((await list(alice.token, 'status=cancelled&limit=500')).data.some((c) => c.device_id === device.id)).toBe(false);
      expectError(await api.get(`/api/devices/${device.id}/commands/pending`, { token: device.credentials.auth_token }), 401, 'unauthenticated');
      expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: alice.token }), 404, 'not_found');
    });
    it('given commands queued while their devices are deleted, then none is left pending: each is refused or cancelled', async () => {
      const devices = await Promise.all(Array.from({ length: 48 }, () => createDevice(api, alice.token)));
      // The server shares this event loop: each device's command precedes or follows its deletion
      // by a different number of turns, so some land inside the deletion, whatever this machine's speed.
      const turns = (n: number) => Array.from({ length: n }).reduce<Promise<unknown>>((after) => after.then(() => new Promise((resolve) => setImmediate(resolve))), Promise.resolve());
      const raced = await Promise.all(
        devices.map(async (device, index) => {
          const [first, second] = [
            () => api.post<Data<Command>>(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: alice.token }),
            () => api.del(`/api/devices/${device.id}`, { token: alice.token }),
          ];
          const lead = index % 2 === 0 ? first() : second();
          await turns(index >> 1);
          const [queued, deleted] = index % 2 === 0 ? [await lead, await second()] : [await first(), await lead];
          expect(deleted.status).toBe(200);
          return queued as Awaited<ReturnType<typeof first>>;
        }),
      );

      const statuses = raced.map((queued) => queued.status);
      expect(statuses.every((status) => status === 202 || status === 404), String(statuses)).toBe(true);
      expect(statuses).toContain(202);
      for (const queued of raced.filter((q) => q.status === 202)) {
        expect(await command(alice.token, queued.body.data.id)).toMatchObject({ status: 'cancelled', failure_reason: 'device_deleted' });
      }
    });
  });

  describe('group commands', () => {
    it('queues one command per device of the group and its subgroups, tracked by batch_id with counts by status', async () => {
      const top = await createGroup(api, alice.token);
      const sub = await createGroup(api, alice.token, { parent_id: top.id });
      const subsub = await createGroup(api, alice.token, { parent_id: sub.id });
      const elsewhere = await createGroup(api, alice.token);
      const inTop = await createDevice(api, alice.token, { group_id: top.id });
      const inSub = await createDevice(api, alice.token, { group_id: sub.id });
      const inSubSub = await createDevice(api, alice.token, { group_id: subsub.id });
      const outside = await createDevice(api, alice.token, { group_id: elsewhere.id });
      const ungrouped = await createDevice(api, alice.token);

      const answer = await api.post<Data<{ batch_id: string; count: number; commands: Command[] }>>(
        `/api/groups/${top.id}/commands`,
        { command_type: 'reboot', priority: 'high', parameters: { delay: 1 } },
        { token: alice.token },
      );
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
      const { batch_id, count, commands } = answer.body.data;
      expect(batch_id).toMatch(UUID);
      expect(count).toBe(3);
      expect(commands.map((c) => c.device_id).sort()).toEqual([inTop.id, inSub.id, inSubSub.id].sort());
      for (const c of commands) expect(c).toMatchObject({ batch_id, status: 'pending', priority: 'high', command_type: 'reboot', parameters: { delay: 1 }, user_id: alice.id });

      const batch = await list(alice.token, `batch_id=${batch_id}`);
      expect(batch.data.map((c) => c.id).sort()).toEqual(commands.map((c) => c.id).sort());
      expect(batch.meta.total).toBe(3);
      expect(batch.meta.batch).toMatchObject({ batch_id, by_status: { pending: 3 } });

      const [first] = await fetchPending(inTop);
      expect((await report(inTop, first!.id, { status: 'executed' })).status).toBe(200);
      const [second] = await fetchPending(inSub);
      expect((await report(inSub, second!.id, { status: 'failed' })).status).toBe(200);
      expect((await list(alice.token, `batch_id=${batch_id}`)).meta.batch?.by_status).toEqual({ executed: 1, failed: 1, pending: 1 });
      expect((await list(alice.token, `batch_id=${batch_id}&status=pending`)).data.map((c) => c.device_id)).toEqual([inSubSub.id]);

      expect(await fetchPending(outside)).toEqual([]);
      expect(await fetchPending(ungrouped)).toEqual([]);

      // A subgroup: its own subtree only. Another user: nothing seen, 404 on the group.
      const subBatch = await api.post<Data<{ batch_id: string; count: number }>>(`/api/groups/${sub.id}/commands`, { command_type: 'ping' }, { token: alice.token });
      expect(subBatch.status).toBe(202);
      expect(subBatch.body.data.count).toBe(2);
      const forBob = await list(bob.token, `batch_id=${batch_id}`);
      expect(forBob.meta.total).toBe(0);
      expect(forBob.meta.batch?.by_status).toEqual({});
      expectError(await api.post(`/api/groups/${top.id}/commands`, { command_type: 'reboot' }, { token: bob.token }), 404, 'not_found');
    });

    it('validates the body, answers 404 for an unknown group and an empty batch for an empty group', async () => {
      const group = await createGroup(api, alice.token);
      expectValidation(await api.post(`/api/groups/${group.id}/commands`, { command_type: '!' }, { token: alice.token }), 'command_type');
      expectValidation(await api.post(`/api/groups/${group.id}/commands`, { command_type: 'reboot', priority: 'now' }, { token: alice.token }), 'priority');
      expectError(await api.post('/api/groups/00000000-0000-4000-8000-000000000000/commands', { command_type: 'reboot' }, { token: alice.token }), 404, 'not_found');
      const empty = await api.post<Data<{ batch_id: string; count: number; commands: Command[] }>>(`/api/groups/${group.id}/commands`, { command_type: 'reboot' }, { token: alice.token });
      expect(empty.status).toBe(202);
      expect(empty.body.data).toMatchObject({ count: 0, commands: [] });
    });
  });

  describe('metrics and analytics', () => {
    it('GET /api/devices/:id metrics and /api/analytics count commands by status, success rate and mean latency', async () => {
      const dana = await registerUser(api, uniqueName('dana'));
      const device = await createDevice(api, dana.token);
      const idle = await createDevice(api, dana.token);

      const first = await queue(dana.token, device.id);
      server.clock.advance(2 * SECOND);
      await fetchPending(device);
      expect((await report(device, first.id, { status: 'executed' })).status).toBe(200);
      const second = await queue(dana.token, device.id);
      server.clock.advance(4 * SECOND);
      await fetchPending(device);
      expect((await report(device, second.id, { status: 'executed' })).status).toBe(200);
      const third = await queue(dana.token, device.id);
      await fetchPending(device);
      expect((await report(device, third.id, { status: 'failed' })).status).toBe(200);
      const fourth = await queue(dana.token, device.id);

      const detail = await api.get<Data<{ metrics: DeviceMetrics; recent_commands: Command[] }>>(`/api/devices/${device.id}`, { token: dana.token });
      expect(detail.status).toBe(200);
      const { metrics, recent_commands } = detail.body.data;
      expect(metrics.commands_by_status).toEqual({ executed: 2, failed: 1, pending: 1 });
      expect(metrics.commands_total).toBe(4);
      expect(metrics.command_success_rate).toBeCloseTo(2 / 3, 6);
      expect(Math.abs(metrics.mean_command_latency_ms! - 3000)).toBeLessThanOrEqual(2);
      expect(recent_commands.map((c) => c.id)).toEqual([fourth.id, third.id, second.id, first.id]);

      const idleDetail = await api.get<Data<{ metrics: DeviceMetrics }>>(`/api/devices/${idle.id}`, { token: dana.token });
      expect(idleDetail.body.data.metrics).toMatchObject({ commands_by_status: {}, command_success_rate: null, mean_command_latency_ms: null });

      const analytics = await api.get<Data<{ commands: CommandStats }>>(`/api/analytics?device_id=${device.id}`, { token: dana.token });
      expect(analytics.status).toBe(200);
      const stats = analytics.body.data.commands;
      expect(stats.total).toBe(4);
      expect(stats.by_status).toEqual({ executed: 2, failed: 1, pending: 1 });
      expect(stats.success_rate).toBeCloseTo(2 / 3, 6);
      expect(Math.abs(stats.avg_latency_ms! - 3000)).toBeLessThanOrEqual(2);

      // The whole account: the idle device adds nothing; another user's commands are not counted.
      const mine = await api.get<Data<{ commands: CommandStats }>>('/api/analytics', { token: dana.token });
      expect(mine.body.data.commands.total).toBe(4);
      const bobs = await api.get<Data<{ commands: CommandStats }>>('/api/analytics', { token: bob.token });
      expect(bobs.body.data.commands.total).toBe(0);
      expectError(await api.get(`/api/analytics?device_id=${device.id}`, { token: bob.token }), 404, 'not_found');
    });
  });

  describe('the log records every transition with its time', () => {
    it('command.queued, command.sent and command.executed are in the command stream, in order', async () => {
      const device = await createDevice(api, alice.token);
      const c = await queue(alice.token, device.id);
      await fetchPending(device);
      expect((await report(device, c.id, { status: 'executed', response: { ok: true } })).status).toBe(200);
      const events = await api.get<List<{ type: string; recorded_at: string; data: Record<string, unknown> }>>(`/api/events?stream_id=command-${c.id}`, { token: alice.token });
      expect(events.status).toBe(200);
      expect(events.body.data.map((e) => e.type)).toEqual(['command.queued', 'command.sent', 'command.executed']);
      for (const e of events.body.data) expect(e.recorded_at).toMatch(ISO_MS);
    });
  });
});
