import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyExport } from '../../src/eventlog/export-verifier.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, uniqueName, type Data, type RegisteredDevice, type StoredEvent } from '../helpers/fixtures.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
type Account = Awaited<ReturnType<typeof registerUser>>;
interface EventPage {
  data: StoredEvent[];
  meta: { total: number; next_position: number };
}

/**
 * Given a server with LOG_ARCHIVE_AFTER_DAYS=1 and a device's day of readings, when the clock
 * passes the day and the archive job runs, then every reader of history answers as before the
 * cut: the event list and its totals, the export (which verifies offline as one chain), the
 * chain check, as_of, a rule's dry run and a replay.
 */
describe('the log archived after LOG_ARCHIVE_AFTER_DAYS', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Account;
  let owner: Account;
  let device: RegisteredDevice;
  let midday: string;
  let before: { events: StoredEvent[]; total: number; deviceThen: unknown; dryRun: unknown };

  const allEvents = async (query = ''): Promise<StoredEvent[]> => {
    const out: StoredEvent[] = [];
    for (let after = 0; ; ) {
      const page = await api.get<EventPage>(`/api/events?limit=500&after_position=${after}${query}`, { token: admin.token });
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      if (page.body.data.length === 0) return out;
      out.push(...page.body.data);
      after = page.body.meta.next_position;
    }
  };
  const total = async (query: string) => (await api.get<EventPage>(`/api/events?limit=1${query}`, { token: owner.token })).body.meta.total;
  const deviceAsOf = async () => (await api.get<Data<unknown>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(midday)}`, { token: owner.token })).body.data;
  const dryRun = async () => {
    const rule = { name: uniqueName('hot'), trigger_conditions: { type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 25 }, actions: [{ type: 'alert', severity: 'info', message: 'hot' }] };
    const answer = await api.post<Data<unknown>>('/api/automation/rules/test', { rule, start_date: '2026-03-01T00:00:00.000Z', end_date: '2026-03-02T00:00:00.000Z' }, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const exportLines = async () => (await api.get<string>('/api/events/export', { token: admin.token })).body.split('\n').filter((line) => line !== '');
  const archiveDir = () => join(server.dataDir, 'archive');

  beforeAll(async () => {
    server = await startTestServer({ LOG_ARCHIVE_AFTER_DAYS: '1' });
    server.server.timers.stop();
    admin = await registerUser(api, uniqueName('archadm'));
    owner = await registerUser(api, uniqueName('archown'));
    device = await createDevice(api, owner.token);
    const token = device.credentials.auth_token;
    for (let i = 0; i < 40; i++) {
      server.clock.advance(10 * MINUTE);
      if (i === 20) midday = server.clock.now().toISOString();
      const body = i % 10 === 9 ? { firmware_version: `1.${i}`, device_status: { battery: 90 - i } } : { sensor_readings: { temperature: 20 + (i % 8), humidity: 40 } };
      const answer = await api.post(`/api/devices/${device.id}/${i % 10 === 9 ? 'heartbeat' : 'data'}`, body, { token });
      expect(answer.status, JSON.stringify(answer.body)).toBeLessThan(300);
    }
    before = { events: await allEvents(), total: await total(`&device_id=${device.id}`), deviceThen: await deviceAsOf(), dryRun: await dryRun() };
    server.clock.advance(2 * DAY);
    await server.server.timers.runAll();
  });
  afterAll(() => server.close());

  it('moves the readings and heartbeats into a sealed segment, recorded by an anchor event', async () => {
    expect(readdirSync(archiveDir()).filter((file) => file.endsWith('.seg'))).toHaveLength(1);
    const anchors = await allEvents('&type=log.archived');
    expect(anchors).toHaveLength(1);
    expect(anchors[0]!.data).toMatchObject({ events: 40, segment: readdirSync(archiveDir())[0] });
    const live = server.server.db.prepare(`SELECT count(*) AS n FROM events WHERE type IN ('readings.recorded', 'device.heartbeat')`).get() as { n: number };
    expect(live.n).toBe(0);
  });

  it('lists the same events and totals through /api/events, the anchor after them, and hides the anchor from users', async () => {
    const after = await allEvents();
    // After them: the anchor, and the device going offline as the clock passed the day.
    expect(after.slice(0, before.events.length)).toEqual(before.events);
    expect(after.slice(before.events.length).map((event) => event.type).sort()).toEqual(['device.went_offline', 'log.archived']);
    expect(await total(`&device_id=${device.id}`)).toBe(before.total + 1);
    expect(await total('&type=log.archived')).toBe(0);
  });

  it('exports a log spanning the archive and the live database that verifies offline as one chain', async () => {
    const verdict = verifyExport(await exportLines());
    expect(verdict).toMatchObject({ ok: true, complete_chain: true, first_gap_after: null });
    expect((await api.get<Data<unknown>>('/api/events/verify', { token: admin.token })).body.data).toEqual({ ok: true, checked: server.server.services.log.headPosition(), head_hash: expect.any(String) });
  });

  it('answers as_of and a rule dry run over the archived day as before the cut', async () => {
    expect(await deviceAsOf()).toEqual(before.deviceThen);
    expect(await dryRun()).toEqual(before.dryRun);
  });

  it('rebuilds the same read models from segment and live log (npm run replay)', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });

  it('moved to cold storage: 503 naming the segment where it is needed, the chain check says it is missing; brought back, all as before', async () => {
    const [file] = readdirSync(archiveDir());
    renameSync(join(archiveDir(), file!), join(server.dataDir, file!));
    const [anchor] = await allEvents('&type=log.archived');
    const { first_position: first, last_position: last } = anchor!.data as { first_position: number; last_position: number };
    const refused = expectError(await api.get(`/api/events?limit=5&after_position=${first - 1}`, { token: admin.token }), 503, 'service_unavailable');
    expect(refused.message).toContain(file);
    // What does not need it still answers.
    expect((await api.get(`/api/events?limit=5&after_position=${last}`, { token: admin.token })).status).toBe(200);
    expect((await api.get<Data<unknown>>('/api/events/verify', { token: admin.token })).body.data).toMatchObject({ ok: true, missing_segments: [{ segment: file, deleted: false }] });
    renameSync(join(server.dataDir, file!), join(archiveDir(), file!));
    expect((await allEvents()).slice(0, before.events.length)).toEqual(before.events);
  });

  it('reads across the cut after a restart too', async () => {
    await server.restart();
    expect((await allEvents()).slice(0, before.events.length)).toEqual(before.events);
    expect(verifyExport(await exportLines())).toMatchObject({ ok: true, complete_chain: true });
  });
});
