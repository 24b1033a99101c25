import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser, type Client } from '../helpers/client.js';
import { uniqueName, type List, type StoredEvent } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, submitOk, type Owner } from '../helpers/telemetry-fixtures.js';
import { connect, wsUrl, type Message } from '../helpers/ws-client.js';

/**
 * Catch-up plus live under concurrent appends: whatever the interleaving of the writers
 * and the moment of the subscription, a subscriber with from_position receives exactly
 * the matching events of the log after it, strictly increasing, none twice, none missed.
 */

type Action = { kind: 'reading'; device: number; value: number } | { kind: 'describe'; device: number; text: string } | { kind: 'configure'; device: number; rate: number };

interface Scenario {
  actions: Action[];
  writers: number;
  /** The share (percent) of the actions completed when the subscriber subscribes. */
  subscribeAt: number;
  /** from_position: the head at that moment minus this (at least 0), or 0. */
  back: number | 'origin';
  filter: 'none' | 'types' | 'device' | 'both';
  asAdmin: boolean;
}

const DEVICES = 2;
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('reading' as const), device: fc.nat(DEVICES - 1), value: fc.integer({ min: -100, max: 100 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('describe' as const), device: fc.nat(DEVICES - 1), text: fc.string({ maxLength: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('configure' as const), device: fc.nat(DEVICES - 1), rate: fc.integer({ min: 1, max: 1000 }) }) },
);
const scenario: fc.Arbitrary<Scenario> = fc.record({
  actions: fc.array(action, { minLength: 4, maxLength: 30 }),
  writers: fc.integer({ min: 1, max: 3 }),
  subscribeAt: fc.integer({ min: 0, max: 100 }),
  back: fc.oneof({ weight: 3, arbitrary: fc.nat(60) }, { weight: 1, arbitrary: fc.constant('origin' as const) }),
  filter: fc.constantFrom('none' as const, 'types' as const, 'device' as const, 'both' as const),
  asAdmin: fc.boolean(),
});

const TYPES = ['readings.recorded', 'device.updated', 'command.queued'];

describe('live stream: catch-up plus live under concurrent appends', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Owner;

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('padmin'));
    // Enough history that catching up from the origin takes more than one page (500).
    const seedOwner = await registerUser(api, uniqueName('seed'));
    const seed = await deviceOf(api, seedOwner);
    for (let i = 0; i < 26; i++) await Promise.all(Array.from({ length: 25 }, (_, j) => submitOk(api, seed.id, seed.token, { sensor_readings: { temperature: i * 25 + j } })));
  });
  afterAll(() => server.close());

  it('receives exactly the matching events of the log after from_position, strictly increasing', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const user = await registerUser(api, uniqueName('prop'));
        const devices = await Promise.all(Array.from({ length: DEVICES }, () => deviceOf(api, user)));
        const viewer = s.asAdmin ? admin : user;
        const target = devices[0]!;

        const { log, runner } = server.server.services;
        const ws = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(viewer.token)}`));
        let subscribedFrom = -1;
        let subscription: Promise<Message> | undefined;
        const subscribe = (): void => {
          if (subscription) return;
          subscribedFrom = s.back === 'origin' ? 0 : Math.max(0, log.headPosition() - s.back);
          ws.send({
            type: 'subscribe',
            from_position: subscribedFrom,
            ...(s.filter === 'types' || s.filter === 'both' ? { event_types: TYPES } : {}),
            ...(s.filter === 'device' || s.filter === 'both' ? { device_ids: [target.id] } : {}),
          });
          subscription = ws.next((m) => m.type === 'subscribed');
        };

        // The writers share the actions; the subscription goes out while they run.
        const subscribeAfter = Math.floor((s.actions.length * s.subscribeAt) / 100);
        let done = 0;
        const perform = async (a: Action): Promise<void> => {
          const device = devices[a.device]!;
          if (a.kind === 'reading') await submitOk(api, device.id, device.token, { sensor_readings: { temperature: a.value } });
          else {
            const body = a.kind === 'describe' ? { description: a.text } : { configuration: { rate: a.rate } };
            const answer = await api.put(`/api/devices/${device.id}`, body, { token: user.token });
            expect(answer.status, JSON.stringify(answer.body)).toBe(200);
          }
          done += 1;
          if (done >= subscribeAfter) subscribe();
        };
        if (subscribeAfter === 0) subscribe();
        await Promise.all(
          Array.from({ length: s.writers }, async (_, w) => {
            for (let i = w; i < s.actions.length; i += s.writers) await perform(s.actions[i]!);
          }),
        );
        subscribe();
        await subscription;

        // The log, as the same viewer reads it through GET /api/events.
        await runner.waitFor(log.headPosition());
        const query = [
          ...(s.filter === 'types' || s.filter === 'both' ? [`type=${TYPES.join(',')}`] : []),
          ...(s.filter === 'device' || s.filter === 'both' ? [`device_id=${target.id}`] : []),
        ].join('&');
        const expected = await logEvents(api, viewer.token, subscribedFrom, query);
        const last = expected[expected.length - 1]?.position;
        if (last !== undefined) await ws.until((received) => received.some((m) => m.type === 'event' && m.position === last), 10_000);
        ws.send({ type: 'ping' });
        await ws.next((m) => m.type === 'pong');

        const events = ws.received.filter((m) => m.type === 'event');
        const positions = events.map((m) => m.position as number);
        for (let i = 1; i < positions.length; i++) expect(positions[i]!).toBeGreaterThan(positions[i - 1]!);
        expect(positions).toEqual(expected.map((e) => e.position));
        expect(events.map((m) => [m.event_type, m.stream_id])).toEqual(expected.map((e) => [e.type, e.stream_id]));
        await ws.close();
      }),
      { numRuns: 10 },
    );
  });
});

/** Every event after `after` the caller may read, through GET /api/events (every page). */
async function logEvents(api: Client, token: string, after: number, query: string): Promise<StoredEvent[]> {
  const all: StoredEvent[] = [];
  for (let cursor = after; ; ) {
    const answer = await api.get<List<StoredEvent> & { meta: { next_position: number } }>(`/api/events?after_position=${cursor}&limit=500${query ? `&${query}` : ''}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    all.push(...answer.body.data);
    if (answer.body.data.length < 500) return all;
    cursor = answer.body.meta.next_position;
  }
}
