import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createProjections } from '../../src/projections/index.js';
import { rebuildAndCompare } from '../../src/projections/rebuild.js';
import { client, type Answer, type CallOptions } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * A reference to something created earlier in the run, by index: among the caller's own live
 * resources (mostly), among everything ever created (others', deleted), or an id that names nothing.
 */
type Ref = { mine: number } | { any: number } | { bogus: string };
/** Who calls: one of the live sessions, a logged-out session, or nobody. */
type Actor = { live: number } | 'logged_out' | 'anonymous';

type Action =
  | { kind: 'register'; username: string; email: string; password: string }
  | { kind: 'login'; account: number; wrongPassword: boolean; byEmail: boolean }
  | { kind: 'logout'; actor: Actor }
  | { kind: 'createDevice'; actor: Actor; body: Record<string, unknown>; group: Ref | null | undefined }
  | { kind: 'updateDevice'; actor: Actor; device: Ref; body: Record<string, unknown>; group: Ref | null | undefined; ifMatch: number | undefined }
  | { kind: 'deleteDevice'; actor: Actor; device: Ref }
  | { kind: 'createGroup'; actor: Actor; name: string; description: string | null | undefined; parent: Ref | null | undefined }
  | { kind: 'updateGroup'; actor: Actor; group: Ref; name: string | undefined; parent: Ref | null | undefined; ifMatch: number | undefined }
  | { kind: 'deleteGroup'; actor: Actor; group: Ref }
  | { kind: 'advance'; ms: number };

/** Mostly valid values, sometimes invalid ones: most commands should get through and change state. */
const mostly = <T>(valid: readonly T[], invalid: readonly T[], weight = 6): fc.Arbitrary<T> =>
  fc.oneof({ weight, arbitrary: fc.constantFrom(...valid) }, { weight: 1, arbitrary: fc.constantFrom(...invalid) });
/** Absent one time in `freq`. */
const optional = <T>(arbitrary: fc.Arbitrary<T>, freq = 3) => fc.option(arbitrary, { nil: undefined, freq });

const ref: fc.Arbitrary<Ref> = fc.oneof(
  { weight: 8, arbitrary: fc.nat({ max: 20 }).map((mine): Ref => ({ mine })) },
  { weight: 2, arbitrary: fc.nat({ max: 20 }).map((n): Ref => ({ any: n })) },
  { weight: 1, arbitrary: fc.oneof(fc.uuid(), fc.constantFrom('nope', '0', 'x y', '%', 'ünïcode')).map((bogus): Ref => ({ bogus })) },
);
const maybeRef = fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant(null) }, { weight: 3, arbitrary: ref });
const actor: fc.Arbitrary<Actor> = fc.oneof(
  { weight: 12, arbitrary: fc.nat({ max: 10 }).map((live): Actor => ({ live })) },
  { weight: 1, arbitrary: fc.constantFrom<Actor>('logged_out', 'anonymous') },
);
const ifMatch = fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat({ max: 4 }) });
const name = mostly(['Sensor', 'Kitchen', 'kitchen', 'Lab', 'Hall', 'Café ✓', 'Ünïcödé', 'ünïcödé'], ['', '   ', 'x'.repeat(101)]);

const deviceBody = fc.record(
  {
    name,
    type: mostly(['sensor', 'actuator'], ['', 'x'.repeat(65), undefined], 20),
    description: optional(mostly<unknown>([null, 'on the wall'], [42], 20)),
    ip_address: optional(mostly([null, '10.0.0.1', '::1'], ['999.1.1.1', 'localhost'], 20)),
    mac_address: optional(mostly([null, 'AA:BB:CC:DD:EE:01', 'aa-bb-cc-dd-ee-01', 'AA:BB:CC:DD:EE:02'], ['zz'], 20)),
    configuration: optional(mostly<unknown>([{ interval: 60 }, { interval: 30, unit: 'C' }, {}], ['not an object'], 20)),
    firmware_version: optional(mostly([null, '1.0.0', '2.0.0'], [''], 20)),
    auth_token: optional(mostly(['token-aaaaaaaaaaaaaaaa', 'token-bbbbbbbbbbbbbbbb'], ['short', 'with space xxxxxxxxx'], 20), 2),
  },
  { requiredKeys: ['name', 'type'] },
);
const deviceChanges = fc.record(
  {
    name: optional(name),
    description: optional(mostly<unknown>([null, 'moved'], [7], 20)),
    ip_address: optional(mostly([null, '10.0.0.2'], ['nope'], 20)),
    settings: optional(mostly([{ interval: 10 }], [[]], 20), 6),
    configuration: optional(fc.constantFrom({ interval: 60 }, { interval: 5 })),
    firmware_version: optional(fc.constantFrom('1.0.0', '3.1.4', null)),
    device_type: optional(fc.constantFrom('sensor', 'gateway')),
  },
  { requiredKeys: [] },
);

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc
      .record({
        username: mostly(['alice', 'bob', 'carol', 'Alice'], ['x', 'bad name!']),
        email: mostly(['alice@example.com', 'bob@example.com', 'carol@example.com', 'ALICE@example.com'], ['not-an-email']),
        password: mostly(['correct horse'], ['short']),
      })
      .map((r): Action => ({ kind: 'register', ...r })),
  },
  { weight: 2, arbitrary: fc.record({ account: fc.nat({ max: 5 }), wrongPassword: mostly([false], [true], 3), byEmail: fc.boolean() }).map((r): Action => ({ kind: 'login', ...r })) },
  { weight: 1, arbitrary: actor.map((a): Action => ({ kind: 'logout', actor: a })) },
  { weight: 5, arbitrary: fc.record({ actor, body: deviceBody, group: maybeRef }).map((r): Action => ({ kind: 'createDevice', ...r })) },
  {
    weight: 4,
    arbitrary: fc.record({ actor, device: ref, body: deviceChanges, group: maybeRef, ifMatch }).map((r): Action => ({ kind: 'updateDevice', ...r })),
  },
  { weight: 2, arbitrary: fc.record({ actor, device: ref }).map((r): Action => ({ kind: 'deleteDevice', ...r })) },
  {
    weight: 5,
    arbitrary: fc
      .record({ actor, name, description: optional(mostly([null, 'first floor'], ['x'.repeat(2001)])), parent: maybeRef })
      .map((r): Action => ({ kind: 'createGroup', ...r })),
  },
  {
    weight: 4,
    arbitrary: fc.record({ actor, group: ref, name: optional(name), parent: maybeRef, ifMatch }).map((r): Action => ({ kind: 'updateGroup', ...r })),
  },
  { weight: 2, arbitrary: fc.record({ actor, group: ref }).map((r): Action => ({ kind: 'deleteGroup', ...r })) },
  { weight: 1, arbitrary: fc.nat({ max: 3_600_000 }).map((ms): Action => ({ kind: 'advance', ms })) },
);

interface Created {
  data?: { id?: string; token?: string; user?: { id?: string } };
}

interface Resource {
  id: string;
  owner: string;
  gone: boolean;
}

const NOWHERE = '00000000-0000-4000-8000-000000000000';

/** Plays the actions against a live server, remembering what was created so later actions can name it. */
async function play(server: TestServer, actions: readonly Action[]): Promise<number[]> {
  const api = client(() => server.url);
  const accounts: Array<{ username: string; email: string; password: string }> = [];
  const sessions: Array<{ token: string; userId: string }> = [];
  const loggedOut: string[] = [];
  const devices: Resource[] = [];
  const groups: Resource[] = [];
  const statuses: number[] = [];

  const pick = <T>(list: readonly T[], index: number): T | undefined => (list.length === 0 ? undefined : list[index % list.length]);
  const sessionOf = (who: Actor) => (typeof who === 'object' ? pick(sessions, who.live) : undefined);
  const resolve = (list: readonly Resource[], r: Ref, who: Actor): string => {
    if ('bogus' in r) return r.bogus;
    if ('any' in r) return pick(list, r.any)?.id ?? NOWHERE;
    const owner = sessionOf(who)?.userId;
    return pick(list.filter((x) => !x.gone && x.owner === owner), r.mine)?.id ?? NOWHERE;
  };
  const resolveOptional = (list: readonly Resource[], r: Ref | null | undefined, who: Actor): string | null | undefined =>
    r === undefined || r === null ? r : resolve(list, r, who);
  const created = (list: Resource[], answer: Answer<Created>, who: Actor): void => {
    const id = answer.body.data?.id;
    const owner = sessionOf(who)?.userId;
    if (answer.status === 201 && id !== undefined && owner !== undefined) list.push({ id, owner, gone: false });
  };
  const removed = (list: Resource[], id: string, status: number): void => {
    if (status === 200) for (const x of list) if (x.id === id) x.gone = true;
  };
  const signedIn = (answer: Answer<Created>): void => {
    const token = answer.body.data?.token;
    const userId = answer.body.data?.user?.id;
    if (answer.status < 300 && token !== undefined && userId !== undefined) sessions.push({ token, userId });
  };
  const tokenOf = (who: Actor): string | undefined =>
    who === 'anonymous' ? undefined : who === 'logged_out' ? (loggedOut[0] ?? 'not-a-token') : sessionOf(who)?.token;
  const as = (who: Actor, extra: CallOptions = {}): CallOptions => {
    const token = tokenOf(who);
    return token === undefined ? extra : { ...extra, token };
  };
  const withIfMatch = (who: Actor, version: number | undefined): CallOptions =>
    as(who, version === undefined ? {} : { headers: { 'if-match': `"${version}"` } });
  const path = (base: string, id: string): string => `${base}/${encodeURIComponent(id)}`;
  const record = <T>(answer: Answer<T>): Answer<T> => {
    statuses.push(answer.status);
    return answer;
  };

  for (const a of actions) {
    switch (a.kind) {
      case 'register': {
        const answer = record(await api.post<Created>('/api/auth/register', { username: a.username, email: a.email, password: a.password }));
        if (answer.status === 201) accounts.push({ username: a.username, email: a.email, password: a.password });
        signedIn(answer);
        break;
      }
      case 'login': {
        const account = pick(accounts, a.account);
        const login = account ? (a.byEmail ? { email: account.email } : { username: account.username }) : { username: 'nobody' };
        const answer = record(await api.post<Created>('/api/auth/login', { ...login, password: a.wrongPassword || !account ? 'wrong password' : account.password }));
        signedIn(answer);
        break;
      }
      case 'logout': {
        const token = tokenOf(a.actor);
        const answer = record(await api.post<unknown>('/api/auth/logout', undefined, as(a.actor)));
        if (answer.status === 200 && token !== undefined) {
          sessions.splice(sessions.findIndex((x) => x.token === token), 1);
          loggedOut.push(token);
        }
        break;
      }
      case 'createDevice': {
        const group = resolveOptional(groups, a.group, a.actor);
        const answer = record(await api.post<Created>('/api/devices', { ...a.body, ...(group !== undefined ? { group_id: group } : {}) }, as(a.actor)));
        created(devices, answer, a.actor);
        break;
      }
      case 'updateDevice': {
        const group = resolveOptional(groups, a.group, a.actor);
        record(
          await api.put<unknown>(path('/api/devices', resolve(devices, a.device, a.actor)), { ...a.body, ...(group !== undefined ? { group_id: group } : {}) }, withIfMatch(a.actor, a.ifMatch)),
        );
        break;
      }
      case 'deleteDevice': {
        const id = resolve(devices, a.device, a.actor);
        removed(devices, id, record(await api.del<unknown>(path('/api/devices', id), as(a.actor))).status);
        break;
      }
      case 'createGroup': {
        const parent = resolveOptional(groups, a.parent, a.actor);
        const body = { name: a.name, ...(a.description !== undefined ? { description: a.description } : {}), ...(parent !== undefined ? { parent_id: parent } : {}) };
        const answer = record(await api.post<Created>('/api/groups', body, as(a.actor)));
        created(groups, answer, a.actor);
        break;
      }
      case 'updateGroup': {
        const parent = resolveOptional(groups, a.parent, a.actor);
        const body = { ...(a.name !== undefined ? { name: a.name } : {}), ...(parent !== undefined ? { parent_id: parent } : {}) };
        record(await api.put<unknown>(path('/api/groups', resolve(groups, a.group, a.actor)), body, withIfMatch(a.actor, a.ifMatch)));
        break;
      }
      case 'deleteGroup': {
        const id = resolve(groups, a.group, a.actor);
        removed(groups, id, record(await api.del<unknown>(path('/api/groups', id), as(a.actor))).status);
        break;
      }
      case 'advance':
        server.clock.advance(a.ms);
        statuses.push(0);
        break;
    }
  }
  return statuses;
}

/** Every run starts with a user who owns a group and a device in it, so updates and deletes have targets. */
const prologue: Action[] = [
  { kind: 'register', username: 'owner', email: 'owner@example.com', password: 'correct horse' },
  { kind: 'createGroup', actor: { live: 0 }, name: 'Home', description: null, parent: null },
  { kind: 'createDevice', actor: { live: 0 }, body: { name: 'Thermostat', type: 'sensor', configuration: { interval: 60 } }, group: { mine: 0 } },
];

describe('replay reproduces the live read models', () => {
  it('rebuilding every projection from the log after any mix of valid and invalid commands gives equal digests', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 10, maxLength: 30 }), async (actions) => {
        const server = await startTestServer();
        try {
          const statuses = await play(server, [...prologue, ...actions]);
          expect(statuses.slice(0, prologue.length)).toEqual([201, 201, 201]);
          expect(statuses.filter((status) => status >= 500)).toEqual([]);
          const { db, services } = server.server;
          await services.runner.waitFor(services.log.headPosition());
          expect((await services.log.verify()).ok).toBe(true);
          // Fresh projection instances for the rebuild, as npm run replay makes them.
          const projections = createProjections(services.config);
          const result = await rebuildAndCompare({ db, log: services.log }, join(server.dataDir, 'replay.db'), projections, pino({ level: 'silent' }));
          expect(result.differing).toEqual([]);
          expect(Object.keys(result.live)).toEqual(services.runner.projections.map((p) => p.name));
        } finally {
          await closeQuietly(server);
        }
      }),
      { numRuns: 15 },
    );
  });

  it('refuses a repeated non-ASCII group name with 409 and keeps serving', async () => {
    const server = await startTestServer();
    try {
      const api = client(() => server.url);
      const token = (await api.post<Created>('/api/auth/register', { username: 'owner', email: 'owner@example.com', password: 'correct horse' })).body.data?.token ?? '';
      expect((await api.post<unknown>('/api/groups', { name: 'Ünïcödé' }, { token })).status).toBe(201);
      expect((await api.post<unknown>('/api/groups', { name: 'Ünïcödé' }, { token })).status).toBe(409);
      expect((await api.post<unknown>('/api/groups', { name: 'Other' }, { token })).status).toBe(201);
      await server.restart();
      expect((await api.get<unknown>('/api/health')).status).toBe(200);
    } finally {
      await closeQuietly(server);
    }
  });
});

/** Closes the server; when a failed read model makes close() reject, still frees the database and the files. */
async function closeQuietly(server: TestServer): Promise<void> {
  try {
    await server.close();
  } catch {
    if (server.server.db.open) server.server.db.close();
    rmSync(server.dataDir, { recursive: true, force: true });
  }
}
