import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyExport } from '../../src/eventlog/export-verifier.js';
import { client, registerUser, type Answer } from '../helpers/client.js';
import { createDevice, createGroup, expectError, expectValidation, headPosition, uniqueName, type Data, type Device, type List, type Meta, type RegisteredDevice, type StoredEvent } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Account = Awaited<ReturnType<typeof registerUser>>;
interface EventPage {
  data: StoredEvent[];
  meta: Meta & { next_position: number };
}
interface Verified {
  ok: boolean;
  checked: number;
  head_hash?: string;
  first_bad_position?: number;
  reason?: string;
}
interface StoredRow {
  position: number;
  stream_id: string;
  version: number;
  type: string;
  data: string;
  metadata: string;
  recorded_at: string;
  hash: string;
}

const PASSWORD = 'correct horse';
const NOWHERE = '00000000-0000-4000-8000-000000000000';

describe('audit: the event log through the API', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Account;
  let alice: Account;
  let bob: Account;
  let aliceLogin: string;
  let a1: RegisteredDevice;
  let a2: RegisteredDevice;
  let b1: RegisteredDevice;
  let customToken: string;
  const known = { alice: new Set<string>(), bob: new Set<string>() };

  /** Every event, as an admin reads it: the oracle the scoped reads are compared with. */
  let everything: StoredEvent[];
  /** Owner and device of each stream, from the events that create them. */
  const owners = new Map<string, { user: string; device: string | null }>();

  const allEvents = async (token: string, query = ''): Promise<StoredEvent[]> => {
    const out: StoredEvent[] = [];
    for (let after = 0; ; ) {
      const page = await api.get<EventPage>(`/api/events?limit=500&after_position=${after}${query}`, { token });
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      if (page.body.data.length === 0) return out;
      out.push(...page.body.data);
      after = page.body.meta.next_position;
    }
  };
  const exportLines = async (token: string, query = ''): Promise<{ answer: Answer<string>; lines: string[] }> => {
    const answer = await api.get<string>(`/api/events/export?format=ndjson${query}`, { token });
    const text = typeof answer.body === 'string' ? answer.body : answer.body === undefined ? '' : JSON.stringify(answer.body);
    return { answer, lines: text.split('\n').filter((line) => line.trim() !== '') };
  };
  const settle = async (): Promise<void> => {
    await server.server.timers.runAll();
    await server.server.timers.runAll();
  };

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('auditadm'));
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
    const login = await api.post<Data<{ token: string }>>('/api/auth/login', { username: alice.username, password: PASSWORD });
    expect(login.status).toBe(200);
    aliceLogin = login.body.data.token;

    const group = await createGroup(api, alice.token);
    customToken = 'custom-device-token-0123456789';
    a1 = await createDevice(api, alice.token, { group_id: group.id, configuration: { thresholds: { temperature: { max: 30 } } }, auth_token: customToken });
    a2 = await createDevice(api, alice.token, { configuration: { interval: 60 } });
    b1 = await createDevice(api, bob.token);
    expect((await api.put(`/api/devices/${a1.id}`, { name: 'Kitchen' }, { token: alice.token })).status).toBe(200);
    expect((await api.post(`/api/devices/${a1.id}/data`, { sensor_readings: { temperature: 35 } }, { token: customToken })).status).toBe(201);
    expect((await api.post(`/api/devices/${a1.id}/heartbeat`, {}, { token: customToken })).status).toBe(200);
    const ca = await api.post<Data<{ id: string }>>(`/api/devices/${a1.id}/commands`, { command_type: 'reboot' }, { token: alice.token });
    expect(ca.status).toBe(202);
    await api.get(`/api/devices/${a1.id}/commands/pending`, { token: customToken });
    expect((await api.post(`/api/devices/${a1.id}/commands/${ca.body.data.id}/result`, { status: 'executed' }, { token: customToken })).status).toBe(200);
    const cb = await api.post<Data<{ id: string }>>(`/api/devices/${b1.id}/commands`, { command_type: 'reboot' }, { token: bob.token });
    expect(cb.status).toBe(202);
    expect((await api.post(`/api/devices/${b1.id}/data`, { sensor_readings: { humidity: 40 } }, { token: b1.credentials.auth_token })).status).toBe(201);
    await createGroup(api, bob.token);
    // a2: renamed, then deleted (its history stays).
    server.clock.advance(5_000);
    expect((await api.put(`/api/devices/${a2.id}`, { name: 'Renamed' }, { token: alice.token })).status).toBe(200);
    server.clock.advance(5_000);
    expect((await api.del(`/api/devices/${a2.id}`, { token: alice.token })).status).toBe(200);
    await settle();

    for (const s of [`user-${alice.id}`, `device-${a1.id}`, `telemetry-${a1.id}`, `device-${a2.id}`, `group-${group.id}`, `command-${ca.body.data.id}`]) known.alice.add(s);
    for (const s of [`user-${bob.id}`, `device-${b1.id}`, `telemetry-${b1.id}`, `command-${cb.body.data.id}`]) known.bob.add(s);

    everything = await allEvents(admin.token);
    for (const e of everything) {
      const d = e.data as Record<string, string>;
      const own = (stream: string, user: string, device: string | null) => owners.set(stream, { user, device });
      if (e.type === 'user.registered') own(`user-${d.user_id}`, d.user_id!, null);
      if (e.type === 'device.registered') {
        own(`device-${d.device_id}`, d.user_id!, d.device_id!);
        own(`telemetry-${d.device_id}`, d.user_id!, d.device_id!);
      }
      if (e.type === 'group.created') own(`group-${d.group_id}`, d.user_id!, null);
      if (e.type === 'command.queued') own(`command-${d.command_id}`, d.user_id!, d.device_id!);
      if (e.type === 'alert.raised') own(`alert-${d.alert_id}`, d.user_id!, d.device_id ?? null);
    }
  });
  afterAll(async () => {
    await server?.close();
  });

  const streamsOf = (userId: string): Set<string> => new Set([...owners].filter(([, o]) => o.user === userId).map(([s]) => s));

  it('the oracle holds what was done: every stream has an owner, an alert was raised for alice', () => {
    expect(everything.map((e) => e.position)).toEqual(everything.map((_, i) => i + 1));
    for (const e of everything) expect(owners.has(e.stream_id), e.stream_id).toBe(true);
    for (const s of known.alice) expect(owners.get(s)?.user).toBe(alice.id);
    for (const s of known.bob) expect(owners.get(s)?.user).toBe(bob.id);
    expect(everything.some((e) => e.type === 'alert.raised' && (e.data as { user_id: string }).user_id === alice.id)).toBe(true);
  });

  it('a user sees exactly the events of their own streams, all of them, deleted devices included', async () => {
    for (const who of [alice, bob]) {
      const mine = streamsOf(who.id);
      const seen = await allEvents(who.token);
      expect(seen).toEqual(everything.filter((e) => mine.has(e.stream_id)));
    }
    const aliceSees = await allEvents(alice.token);
    const text = JSON.stringify(aliceSees);
    for (const s of known.bob) expect(aliceSees.some((e) => e.stream_id === s)).toBe(false);
    expect(text).not.toContain(bob.id);
    expect(text).not.toContain(b1.id);
    expect(aliceSees.some((e) => e.type === 'device.decommissioned' && e.stream_id === `device-${a2.id}`)).toBe(true);
    // The first session of another account (the admin's) is not in alice's view either.
    expect(text).not.toContain(admin.id);
  });

  it('admins see every event', async () => {
    expect(everything.length).toBe(await headPosition(api));
    const streams = new Set(everything.map((e) => e.stream_id));
    for (const s of [...known.alice, ...known.bob]) expect(streams.has(s), s).toBe(true);
    expect(everything.some((e) => e.type === 'user.registered' && e.stream_id === `user-${admin.id}`)).toBe(true);
  });

  it('filters stay inside the scope: stream_id, device_id, type of another user answer nothing', async () => {
    const get = async (token: string, query: string) => {
      const page = await api.get<EventPage>(`/api/events?${query}`, { token });
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      return page.body;
    };
    expect((await get(alice.token, `stream_id=device-${b1.id}`)).data).toEqual([]);
    expect((await get(alice.token, `stream_id=device-${b1.id}`)).meta.total).toBe(0);
    expect((await get(alice.token, `stream_id=user-${bob.id}`)).data).toEqual([]);
    expect((await get(alice.token, `device_id=${b1.id}`)).data).toEqual([]);
    expect((await get(alice.token, `device_id=${b1.id}&type=readings.recorded`)).data).toEqual([]);
    expect((await get(alice.token, `stream_id=device-${b1.id}&device_id=${b1.id}`)).data).toEqual([]);
    expect((await get(alice.token, 'type=user.registered&limit=500')).data.map((e) => e.stream_id)).toEqual([`user-${alice.id}`]);
    expect((await get(bob.token, `device_id=${a2.id}`)).data).toEqual([]);
    // Their own: device_id covers the device, its telemetry and its commands and alerts.
    const byDevice = (await get(alice.token, `device_id=${a1.id}&limit=500`)).data;
    expect(new Set(byDevice.map((e) => e.stream_id.split('-')[0]))).toEqual(new Set(['device', 'telemetry', 'command', 'alert']));
    expect(byDevice).toEqual(everything.filter((e) => owners.get(e.stream_id)?.device === a1.id));
    // Admins filter any device.
    expect((await get(admin.token, `device_id=${b1.id}&limit=500`)).data).toEqual(everything.filter((e) => owners.get(e.stream_id)?.device === b1.id));
  });

  it('type takes a comma list; an unknown type (or an empty list) answers 400', async () => {
    const page = await api.get<EventPage>('/api/events?type=device.registered,%20command.queued&limit=500', { token: alice.token });
    expect(page.status).toBe(200);
    const mine = streamsOf(alice.id);
    expect(page.body.data).toEqual(everything.filter((e) => mine.has(e.stream_id) && (e.type === 'device.registered' || e.type === 'command.queued')));
    expectValidation(await api.get('/api/events?type=device.exploded', { token: alice.token }), 'type');
    expectValidation(await api.get('/api/events?type=device.registered,nope', { token: alice.token }), 'type');
    expectValidation(await api.get('/api/events?type=', { token: alice.token }), 'type');
    expectValidation(await api.get('/api/events?limit=0', { token: alice.token }), 'limit');
    expectValidation(await api.get('/api/events?after_position=-1', { token: alice.token }), 'after_position');
  });

  it('any combination of filters, for any caller, answers the oracle: scope ∩ filters, in position order', async () => {
    const head = everything.length;
    const streamChoices = [...owners.keys(), 'device-nope', `device-${NOWHERE}`];
    const deviceChoices = [a1.id, a2.id, b1.id, NOWHERE];
    const typeChoices = ['user.registered', 'session.started', 'device.registered', 'device.updated', 'device.decommissioned', 'readings.recorded', 'command.queued', 'command.executed', 'alert.raised', 'group.created'];
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            who: fc.constantFrom('alice', 'bob', 'admin'),
            after: fc.integer({ min: 0, max: head + 1 }),
            limit: fc.integer({ min: 1, max: 40 }),
            offset: fc.integer({ min: 0, max: 30 }),
            stream: fc.option(fc.constantFrom(...streamChoices), { nil: undefined }),
            device: fc.option(fc.constantFrom(...deviceChoices), { nil: undefined }),
            types: fc.option(fc.subarray(typeChoices, { minLength: 1 }), { nil: undefined }),
          },
          { requiredKeys: ['who', 'after', 'limit', 'offset'] },
        ),
        async ({ who, after, limit, offset, stream, device, types }) => {
          const account = who === 'alice' ? alice : who === 'bob' ? bob : admin;
          const scope = who === 'admin' ? null : streamsOf(account.id);
          const matching = everything.filter(
            (e) =>
              (scope === null || scope.has(e.stream_id)) &&
              e.position > after &&
              (stream === undefined || e.stream_id === stream) &&
              (device === undefined || owners.get(e.stream_id)?.device === device) &&
              (types === undefined || types.includes(e.type)),
          );
          const filters = `${stream !== undefined ? `&stream_id=${stream}` : ''}${device !== undefined ? `&device_id=${device}` : ''}${types !== undefined ? `&type=${types.join(',')}` : ''}`;
          const page = await api.get<EventPage>(`/api/events?after_position=${after}&limit=${limit}&offset=${offset}${filters}`, { token: account.token });
          expect(page.status).toBe(200);
          const expected = matching.slice(offset, offset + limit);
          expect(page.body.meta.offset).toBe(offset);
          expect(page.body.data.map((e) => e.position)).toEqual(expected.map((e) => e.position));
          expect(page.body.data).toEqual(expected);
          expect(page.body.meta.total).toBe(matching.length);
          expect(page.body.meta.next_position).toBe(expected.length > 0 ? expected[expected.length - 1]!.position : after);

          const { answer, lines } = await exportLines(account.token, `&after_position=${after}${filters}`);
          expect(answer.status).toBe(200);
          expect(lines.map((l) => (JSON.parse(l) as StoredEvent).position)).toEqual(matching.map((e) => e.position));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('meta.next_position pages through the whole log without gaps or repeats, for admins and users', async () => {
    const head = await headPosition(api);
    const walk = async (token: string, limit: number): Promise<number[]> => {
      const positions: number[] = [];
      for (let after = 0, pages = 0; ; pages++) {
        expect(pages).toBeLessThan(1000);
        const page = await api.get<EventPage>(`/api/events?limit=${limit}&after_position=${after}`, { token });
        expect(page.status).toBe(200);
        expect(page.body.data.length).toBeLessThanOrEqual(limit);
        if (page.body.data.length === 0) {
          expect(page.body.meta.next_position).toBe(after);
          return positions;
        }
        expect(page.body.meta.next_position).toBe(page.body.data[page.body.data.length - 1]!.position);
        positions.push(...page.body.data.map((e) => e.position));
        after = page.body.meta.next_position;
      }
    };
    expect(await walk(admin.token, 7)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    expect(await walk(admin.token, 1)).toHaveLength(head);
    const mine = streamsOf(alice.id);
    expect(await walk(alice.token, 3)).toEqual(everything.filter((e) => mine.has(e.stream_id)).map((e) => e.position));
  });

  it('the export: NDJSON, scoped like /api/events, verifiable offline (a full chain for admins, event by event for users)', async () => {
    const full = await exportLines(admin.token);
    expect(full.answer.status).toBe(200);
    expect(full.answer.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    expect(full.lines.map((l) => (JSON.parse(l) as StoredEvent).position)).toEqual(everything.map((e) => e.position));
    const verdict = verifyExport(full.lines);
    const head = await api.get<Data<Verified>>('/api/events/verify', { token: admin.token });
    expect(verdict).toEqual({ ok: true, checked: everything.length, head_hash: head.body.data.head_hash, complete_chain: true, first_gap_after: null, redacted: 0 });

    for (const who of [alice, bob]) {
      const mine = await exportLines(who.token);
      expect(mine.answer.status).toBe(200);
      const scope = streamsOf(who.id);
      const events = mine.lines.map((l) => JSON.parse(l) as StoredEvent & { previous_hash: string });
      expect(events.map((e) => e.position)).toEqual(everything.filter((e) => scope.has(e.stream_id)).map((e) => e.position));
      for (const e of events) expect(scope.has(e.stream_id)).toBe(true);
      const own = verifyExport(mine.lines);
      expect(own).toMatchObject({ ok: true, checked: events.length, complete_chain: false });
    }
    const aliceText = (await exportLines(alice.token)).lines.join('\n');
    expect(aliceText).not.toContain(bob.id);
    expect(aliceText).not.toContain(b1.id);
    expectError(await api.get('/api/events/export?format=csv', { token: admin.token }), 400, 'validation_failed');
    expectError(await api.get('/api/events/export'), 401, 'unauthenticated');
  });

  it('no event data holds a plain password, API key, session token or device token (hashes only)', async () => {
    const secrets = [PASSWORD, alice.apiKey, bob.apiKey, admin.apiKey, alice.token, aliceLogin, bob.token, admin.token, customToken, a2.credentials.auth_token, b1.credentials.auth_token];
    const texts = [JSON.stringify(everything), (await exportLines(admin.token)).lines.join('\n')];
    for (const text of texts) for (const secret of secrets) expect(text.includes(secret), `a secret (${secret.slice(0, 6)}…) appears in the log`).toBe(false);
    const forbiddenKeys = new Set(['password', 'api_key', 'token', 'auth_token', 'device_token', 'session_token']);
    const visit = (value: unknown): void => {
      if (value === null || typeof value !== 'object') return;
      for (const [key, child] of Object.entries(value)) {
        expect(forbiddenKeys.has(key), `key ${key} in event data`).toBe(false);
        visit(child);
      }
    };
    for (const e of everything) visit(e.data);
    const registered = everything.find((e) => e.type === 'user.registered' && (e.data as { user_id: string }).user_id === alice.id)!;
    expect(registered.data).toHaveProperty('password_hash');
    expect(everything.some((e) => e.type === 'api_key.created' && (e.data as { user_id: string }).user_id === alice.id)).toBe(true);
  });

  it('GET /api/events/verify: admins only (users and devices 403); ok with the count and the head hash', async () => {
    expectError(await api.get('/api/events/verify', { token: alice.token }), 403, 'forbidden');
    expectError(await api.get('/api/events/verify', { token: alice.apiKey, headers: {} }), 403, 'forbidden');
    expectError(await api.get('/api/events/verify', { token: customToken }), 403, 'forbidden');
    expectError(await api.get('/api/events/verify'), 401, 'unauthenticated');
    expectError(await api.get('/api/events', { token: customToken }), 403, 'forbidden');
    const answer = await api.get<Data<Verified>>('/api/events/verify', { token: admin.token });
    expect(answer.status).toBe(200);
    expect(answer.body.data).toEqual({ ok: true, checked: everything.length, head_hash: everything[everything.length - 1]!.hash });
  });

  it('as_of a deleted device: its owner and admins see it as it was; others 404; after the deletion 404', async () => {
    const events = everything.filter((e) => e.stream_id === `device-${a2.id}`);
    expect(events.map((e) => e.type)).toEqual(['device.registered', 'device.updated', 'device.decommissioned']);
    const [registered, renamed, deleted] = events as [StoredEvent, StoredEvent, StoredEvent];
    const asOf = (token: string, at: string) => api.get<Data<Device>>(`/api/devices/${a2.id}?as_of=${encodeURIComponent(at)}`, { token });
    const before = (iso: string) => new Date(Date.parse(iso) - 1).toISOString();

    const first = await asOf(alice.token, registered.recorded_at);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.data).toMatchObject({ id: a2.id, user_id: alice.id, name: a2.name, configuration: { interval: 60 }, version: 1, status: 'offline', created_at: registered.recorded_at });
    const second = await asOf(alice.token, before(deleted.recorded_at));
    expect(second.status).toBe(200);
    expect(second.body.data).toMatchObject({ name: 'Renamed', version: 2, updated_at: renamed.recorded_at });
    expect((await asOf(admin.token, renamed.recorded_at)).body.data).toMatchObject({ name: 'Renamed', version: 2 });

    expectError(await asOf(bob.token, renamed.recorded_at), 404, 'not_found');
    expectError(await asOf(alice.token, deleted.recorded_at), 404, 'not_found');
    expectError(await asOf(alice.token, before(registered.recorded_at)), 404, 'not_found');
    expectError(await api.get(`/api/devices/${a2.id}`, { token: alice.token }), 404, 'not_found');
    expectValidation(await api.get(`/api/devices/${a1.id}?as_of=yesterday`, { token: alice.token }), 'as_of');
    // A date alone is midnight UTC: the next day shows the living device as renamed, the day before it was registered 404.
    const day = (offsetDays: number) => new Date(Date.parse(renamed.recorded_at) + offsetDays * 86_400_000).toISOString().slice(0, 10);
    expect((await api.get<Data<Device>>(`/api/devices/${a1.id}?as_of=${day(1)}`, { token: alice.token })).body.data).toMatchObject({ id: a1.id, name: 'Kitchen' });
    expectError(await api.get(`/api/devices/${a1.id}?as_of=${day(-1)}`, { token: alice.token }), 404, 'not_found');
    // A zone offset names the same instant.
    const offset = new Date(Date.parse(renamed.recorded_at)).toISOString().replace('Z', '+00:00');
    expect((await asOf(alice.token, offset)).body.data).toMatchObject({ name: 'Renamed' });
  });

  it('GET /api/devices/:id/status?as_of answers the status as it was then; deleted devices to their owner only', async () => {
    type Status = { device_id: string; status: string; connectivity: { online: boolean; last_seen: string | null; seconds_since_last_seen: number | null } };
    const statusAt = (id: string, token: string, t: string) => api.get<Data<Status>>(`/api/devices/${id}/status?as_of=${encodeURIComponent(t)}`, { token });
    const a1Events = everything.filter((e) => e.stream_id === `device-${a1.id}` || e.stream_id === `telemetry-${a1.id}`);
    /** The oracle: the last connectivity change and the last telemetry event recorded by t (events of one instant all count). */
    const expectedAt = (t: string) => {
      const change = a1Events.filter((e) => e.recorded_at <= t && (e.type === 'device.came_online' || e.type === 'device.went_offline')).pop();
      const heard = a1Events.filter((e) => e.recorded_at <= t && e.stream_id.startsWith('telemetry-')).pop();
      return { status: change?.type === 'device.came_online' ? 'online' : 'offline', last_seen: heard?.recorded_at ?? null };
    };
    const registered = a1Events[0]!;
    const later = new Date(Date.parse(a1Events[a1Events.length - 1]!.recorded_at) + 3_000).toISOString();
    for (const t of [registered.recorded_at, later]) {
      const answer = await statusAt(a1.id, alice.token, t);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      const expected = expectedAt(t);
      expect(answer.body.data).toMatchObject({ device_id: a1.id, status: expected.status, connectivity: { online: expected.status === 'online', last_seen: expected.last_seen } });
      if (expected.last_seen) expect(answer.body.data.connectivity.seconds_since_last_seen).toBe(Math.round((Date.parse(t) - Date.parse(expected.last_seen)) / 1000));
    }
    expect(expectedAt(later).status).toBe('online');
    expectError(await statusAt(a1.id, alice.token, new Date(Date.parse(registered.recorded_at) - 1).toISOString()), 404, 'not_found');
    expectError(await statusAt(a1.id, bob.token, later), 404, 'not_found');

    const [a2registered, , a2deleted] = everything.filter((e) => e.stream_id === `device-${a2.id}`) as [StoredEvent, StoredEvent, StoredEvent];
    expect((await statusAt(a2.id, alice.token, a2registered.recorded_at)).body.data).toMatchObject({ device_id: a2.id, status: 'offline', connectivity: { last_seen: null } });
    expectError(await statusAt(a2.id, bob.token, a2registered.recorded_at), 404, 'not_found');
    expectError(await statusAt(a2.id, alice.token, a2deleted.recorded_at), 404, 'not_found');
  });

  it('as_of answers last_seen as it was then (the last time the device was heard from by that moment)', async () => {
    const reading = everything.find((e) => e.type === 'readings.recorded' && e.stream_id === `telemetry-${a1.id}`)!;
    const answer = await api.get<Data<Device>>(`/api/devices/${a1.id}?as_of=${encodeURIComponent(reading.recorded_at)}`, { token: alice.token });
    expect(answer.status).toBe(200);
    expect(answer.body.data.status).toBe('online');
    // The heartbeat of the same instant counts too: last_seen is the last telemetry event recorded by then.
    const heard = everything.filter((e) => e.stream_id === `telemetry-${a1.id}` && e.recorded_at <= reading.recorded_at).pop()!;
    expect(answer.body.data.last_seen).toBe(heard.recorded_at);
    expect(answer.body.data).not.toHaveProperty('reported_status');
  });

  describe('tampering with the stored log', () => {
    type Tamper = { kind: 'edit'; position: number; field: 'data' | 'type' | 'stream_id' | 'version' | 'metadata' | 'recorded_at' | 'hash' } | { kind: 'delete'; position: number } | { kind: 'reorder'; position: number; other: number };

    const row = (position: number): StoredRow => server.server.db.prepare<[number], StoredRow>('SELECT * FROM events WHERE position = ?').get(position)!;

    /** Applies a tamper to the live database and returns how to undo it. */
    function apply(t: Tamper): () => void {
      const db = server.server.db;
      if (t.kind === 'delete') {
        const original = row(t.position);
        db.prepare('DELETE FROM events WHERE position = ?').run(t.position);
        return () =>
          db
            .prepare('INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
            .run(original.position, original.stream_id, original.version, original.type, original.data, original.metadata, original.recorded_at, original.hash);
      }
      if (t.kind === 'reorder') {
        const swap = db.transaction(() => {
          db.prepare('UPDATE events SET position = -1 WHERE position = ?').run(t.position);
          db.prepare('UPDATE events SET position = ? WHERE position = ?').run(t.position, t.other);
          db.prepare('UPDATE events SET position = ? WHERE position = -1').run(t.other);
        });
        swap();
        return () => swap();
      }
      const original = row(t.position);
      const changed: Record<typeof t.field, string | number> = {
        data: JSON.stringify({ ...(JSON.parse(original.data) as object), tampered: true }),
        type: original.type === 'group.created' ? 'group.deleted' : 'group.created',
        stream_id: `${original.stream_id}x`,
        version: original.version + 1000,
        metadata: JSON.stringify({ ...(JSON.parse(original.metadata) as object), actor_id: 'someone-else' }),
        recorded_at: new Date(Date.parse(original.recorded_at) + 1).toISOString(),
        hash: (original.hash[0] === 'a' ? 'b' : 'a') + original.hash.slice(1),
      };
      db.prepare(`UPDATE events SET ${t.field} = ? WHERE position = ?`).run(changed[t.field], t.position);
      return () => db.prepare(`UPDATE events SET ${t.field} = ? WHERE position = ?`).run(original[t.field], t.position);
    }

    it('editing, deleting or reordering any stored event is caught by GET /api/events/verify and by the offline verifier of the export', async () => {
      await settle();
      const head = await headPosition(api);
      const clean = await api.get<Data<Verified>>('/api/events/verify', { token: admin.token });
      expect(clean.body.data.ok).toBe(true);
      const headHash = clean.body.data.head_hash!;
      const position = fc.integer({ min: 1, max: head });
      const tamper: fc.Arbitrary<Tamper> = fc.oneof(
        fc.record({ kind: fc.constant('edit' as const), position, field: fc.constantFrom('data' as const, 'type' as const, 'stream_id' as const, 'version' as const, 'metadata' as const, 'recorded_at' as const, 'hash' as const) }),
        fc.record({ kind: fc.constant('delete' as const), position }),
        fc
          .tuple(position, position)
          .filter(([a, b]) => a !== b)
          .map(([a, b]): Tamper => ({ kind: 'reorder', position: Math.min(a, b), other: Math.max(a, b) })),
      );
      await fc.assert(
        fc.asyncProperty(tamper, async (t) => {
          const undo = apply(t);
          try {
            const verified = await api.get<Data<Verified>>('/api/events/verify', { token: admin.token });
            expect(verified.status).toBe(200);
            expect(verified.body.data.ok).toBe(false);
            expect(verified.body.data.first_bad_position).toBe(t.position);
            expect(verified.body.data.checked).toBe(t.position - 1);

            const { lines } = await exportLines(admin.token);
            const verdict = verifyExport(lines);
            if (t.kind === 'delete' && t.position === head) {
              // A cut at the very end chains fine offline; it shows as a head hash that no longer matches.
              expect(verdict.ok && verdict.head_hash).not.toBe(headHash);
            } else {
              expect(verdict.ok).toBe(false);
              if (!verdict.ok) expect(verdict.position).toBe(t.kind === 'delete' ? t.position + 1 : t.position);
            }
          } finally {
            undo();
          }
        }),
        { numRuns: 40 },
      );
      const restored = await api.get<Data<Verified>>('/api/events/verify', { token: admin.token });
      expect(restored.body.data).toEqual({ ok: true, checked: head, head_hash: headHash });
    });
  });
});

describe('as_of after a group deletion', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it("given a device in a group, when the group is deleted, then as_of from that moment answers the device ungrouped, as the live read does; before it, in the group", async () => {
    const api = client(() => server.url);
    const owner = await registerUser(api, uniqueName('grouper'));
    const group = await createGroup(api, owner.token);
    const device = await createDevice(api, owner.token, { group_id: group.id });
    server.clock.advance(1_000);
    expect((await api.del(`/api/groups/${group.id}`, { token: owner.token })).status).toBe(200);
    const events = await api.get<List<StoredEvent>>('/api/events?type=group.deleted', { token: owner.token });
    const deletedAt = events.body.data[0]!.recorded_at;
    const groupOf = async (query: string) => (await api.get<Data<Device>>(`/api/devices/${device.id}${query}`, { token: owner.token })).body.data.group_id;

    expect(await groupOf('')).toBeNull();
    expect(await groupOf(`?as_of=${encodeURIComponent(deletedAt)}`)).toBeNull();
    expect(await groupOf(`?as_of=${encodeURIComponent(new Date(Date.parse(deletedAt) - 1).toISOString())}`)).toBe(group.id);
  });
});
