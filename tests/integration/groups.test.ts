import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, expectError, expectValidation, uniqueName, type Data, type Device, type Group, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Account = Awaited<ReturnType<typeof registerUser>>;

const GROUP_KEYS = ['created_at', 'description', 'device_count', 'id', 'name', 'parent_id', 'statistics', 'total_device_count', 'updated_at', 'user_id', 'version'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MISSING = '00000000-0000-4000-8000-000000000000';

describe('groups', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Account;
  let gina: Account;
  let hank: Account;

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('gadmin'));
    gina = await registerUser(api, uniqueName('gina'));
    hank = await registerUser(api, uniqueName('hank'));
  });
  afterAll(() => server.close());

  const get = (id: string, token: string) => api.get<Data<Group>>(`/api/groups/${id}`, { token });
  const put = (id: string, body: unknown, token: string, headers: Record<string, string> = {}) => api.put<Data<Group>>(`/api/groups/${id}`, body, { token, headers });

  describe('create', () => {
    it('answers 201 with the group, zero counts and an ETag', async () => {
      const answer = await api.post<Data<Group>>('/api/groups', { name: 'Living room', description: 'downstairs' }, { token: gina.token });
      expect(answer.status, JSON.stringify(answer.body)).toBe(201);
      expect(Object.keys(answer.body.data).sort()).toEqual(GROUP_KEYS);
      expect(answer.body.data).toMatchObject({
        user_id: gina.id,
        name: 'Living room',
        description: 'downstairs',
        parent_id: null,
        device_count: 0,
        total_device_count: 0,
        statistics: { online: 0, offline: 0 },
        version: 1,
      });
      expect(answer.body.data.id).toMatch(UUID);
      expect(answer.headers.get('etag')).toBe('"1"');
    });

    it('accepts parent_group and parent_id for the parent', async () => {
      const parent = await createGroup(api, gina.token);
      const viaGroup = await api.post<Data<Group>>('/api/groups', { name: uniqueName('child'), parent_group: parent.id }, { token: gina.token });
      expect(viaGroup.status).toBe(201);
      expect(viaGroup.body.data.parent_id).toBe(parent.id);
      const viaId = await api.post<Data<Group>>('/api/groups', { name: uniqueName('child'), parent_id: parent.id }, { token: gina.token });
      expect(viaId.status).toBe(201);
      expect(viaId.body.data.parent_id).toBe(parent.id);
      const explicitRoot = await api.post<Data<Group>>('/api/groups', { name: uniqueName('root'), parent_id: null }, { token: gina.token });
      expect(explicitRoot.status).toBe(201);
      expect(explicitRoot.body.data.parent_id).toBeNull();
      const both = await api.post<Data<Group>>('/api/groups', { name: uniqueName('child'), parent_group: parent.id, parent_id: parent.id }, { token: gina.token });
      expect(both.status).toBe(201);
      expect(both.body.data.parent_id).toBe(parent.id);
    });

    it('refuses parent_group and parent_id naming different groups, on create and update', async () => {
      const left = await createGroup(api, gina.token);
      const right = await createGroup(api, gina.token);
      expectValidation(await api.post('/api/groups', { name: uniqueName('torn'), parent_group: left.id, parent_id: right.id }, { token: gina.token }), 'parent_group');
      expectValidation(await api.post('/api/groups', { name: uniqueName('torn'), parent_group: left.id, parent_id: null }, { token: gina.token }), 'parent_group');
      const child = await createGroup(api, gina.token, { parent_id: left.id });
      expectValidation(await api.put(`/api/groups/${child.id}`, { parent_group: right.id, parent_id: left.id }, { token: gina.token }), 'parent_group');
    });

    it('refuses a duplicate name of the same user (case-insensitive) with 409; another user may reuse it', async () => {
      const name = uniqueName('Shared');
      await createGroup(api, gina.token, { name });
      expectError(await api.post('/api/groups', { name }, { token: gina.token }), 409, 'already_exists');
      expectError(await api.post('/api/groups', { name: name.toLowerCase() }, { token: gina.token }), 409, 'already_exists');
      const other = await api.post<Data<Group>>('/api/groups', { name }, { token: hank.token });
      expect(other.status).toBe(201);
      expect(other.body.data.user_id).toBe(hank.id);
    });

    it('refuses an unknown, foreign or malformed parent with 400', async () => {
      const foreign = await createGroup(api, hank.token);
      expectValidation(await api.post('/api/groups', { name: uniqueName('orphan'), parent_id: MISSING }, { token: gina.token }), 'parent_id');
      expectValidation(await api.post('/api/groups', { name: uniqueName('orphan'), parent_group: MISSING }, { token: gina.token }), 'parent_id');
      expectValidation(await api.post('/api/groups', { name: uniqueName('orphan'), parent_id: foreign.id }, { token: gina.token }), 'parent_id');
      expectValidation(await api.post('/api/groups', { name: uniqueName('orphan'), parent_id: 'parent' }, { token: gina.token }), 'parent_id');
    });

    it('refuses a missing, blank, too long or non-string name', async () => {
      expectValidation(await api.post('/api/groups', {}, { token: gina.token }), 'name');
      expectValidation(await api.post('/api/groups', { name: '  ' }, { token: gina.token }), 'name');
      expectValidation(await api.post('/api/groups', { name: 'x'.repeat(101) }, { token: gina.token }), 'name');
      expectValidation(await api.post('/api/groups', { name: ['a'] }, { token: gina.token }), 'name');
      expectValidation(await api.post('/api/groups', { name: 'ok', description: 5 }, { token: gina.token }), 'description');
    });

    it('needs a user', async () => {
      expectError(await api.post('/api/groups', { name: 'anon' }), 401, 'unauthenticated');
      expectError(await api.get('/api/groups'), 401, 'unauthenticated');
    });
  });

  describe('hierarchy, counts and listing', () => {
    let ivy: Account;
    let house: Group;
    let floor: Group;
    let room: Group;
    let shed: Group;

    beforeAll(async () => {
      ivy = await registerUser(api, uniqueName('ivy'));
      house = await createGroup(api, ivy.token, { name: 'House' });
      floor = await createGroup(api, ivy.token, { name: 'Floor', parent_id: house.id });
      room = await createGroup(api, ivy.token, { name: 'Room', parent_group: floor.id });
      shed = await createGroup(api, ivy.token, { name: 'Shed' });
      await createDevice(api, ivy.token, { group_id: house.id });
      await createDevice(api, ivy.token, { group_id: floor.id });
      await createDevice(api, ivy.token, { group_id: floor.id });
      await createDevice(api, ivy.token, { group_id: room.id });
      await createDevice(api, ivy.token);
    });

    const byId = (groups: Group[]) => new Map(groups.map((g) => [g.id, g]));

    it('counts direct and total devices, with statistics', async () => {
      const expected: Array<[Group, number, number]> = [
        [house, 1, 4],
        [floor, 2, 3],
        [room, 1, 1],
        [shed, 0, 0],
      ];
      for (const [group, direct, total] of expected) {
        const answer = await get(group.id, ivy.token);
        expect(answer.status).toBe(200);
        expect(answer.body.data).toMatchObject({ id: group.id, device_count: direct, total_device_count: total, statistics: { online: 0, offline: total } });
        expect(answer.headers.get('etag')).toBe(`"${answer.body.data.version}"`);
      }
    });

    it('lists flat, each with parent_id and without children', async () => {
      const answer = await api.get<List<Group>>('/api/groups', { token: ivy.token });
      expect(answer.status).toBe(200);
      expect(answer.body.meta).toEqual({ total: 4, limit: 50, offset: 0 });
      const groups = byId(answer.body.data);
      expect([...groups.keys()].sort()).toEqual([house.id, floor.id, room.id, shed.id].sort());
      expect(groups.get(floor.id)!.parent_id).toBe(house.id);
      expect(groups.get(room.id)!.parent_id).toBe(floor.id);
      expect(groups.get(house.id)!.parent_id).toBeNull();
      for (const group of answer.body.data) {
        expect(group).not.toHaveProperty('children');
        expect(group.user_id).toBe(ivy.id);
      }
      expect(groups.get(house.id)).toMatchObject({ device_count: 1, total_device_count: 4 });
    });

    it('nests children with ?tree=true', async () => {
      const answer = await api.get<List<Group>>('/api/groups?tree=true', { token: ivy.token });
      expect(answer.status).toBe(200);
      const roots = answer.body.data;
      expect(roots.map((g) => g.name).sort()).toEqual(['House', 'Shed']);
      expect(answer.body.meta.total).toBe(2);
      const h = roots.find((g) => g.id === house.id)!;
      expect(h.children!.map((g) => g.id)).toEqual([floor.id]);
      expect(h.children![0]!.children!.map((g) => g.id)).toEqual([room.id]);
      expect(h.children![0]!.children![0]!.children).toEqual([]);
      expect(h.children![0]).toMatchObject({ device_count: 2, total_device_count: 3 });
      expect(roots.find((g) => g.id === shed.id)!.children).toEqual([]);
      const flat = await api.get<List<Group>>('/api/groups?tree=false', { token: ivy.token });
      expect(flat.body.data).toHaveLength(4);
    });

    it('pages the list', async () => {
      const page = await api.get<List<Group>>('/api/groups?limit=2&offset=1', { token: ivy.token });
      expect(page.body.meta).toEqual({ total: 4, limit: 2, offset: 1 });
      expect(page.body.data).toHaveLength(2);
    });

    it.each(['?tree=yes', '?limit=501', '?offset=-3'])('refuses %s with 400', async (query) => {
      expectError(await api.get(`/api/groups${query}`, { token: ivy.token }), 400, 'validation_failed');
    });

    it('updates counts when devices join, leave or are deleted', async () => {
      const device = await createDevice(api, ivy.token, { group_id: shed.id });
      expect((await get(shed.id, ivy.token)).body.data).toMatchObject({ device_count: 1, total_device_count: 1 });
      expect((await api.put(`/api/devices/${device.id}`, { group_id: room.id }, { token: ivy.token })).status).toBe(200);
      expect((await get(shed.id, ivy.token)).body.data.device_count).toBe(0);
      expect((await get(house.id, ivy.token)).body.data.total_device_count).toBe(5);
      expect((await api.del(`/api/devices/${device.id}`, { token: ivy.token })).status).toBe(200);
      expect((await get(room.id, ivy.token)).body.data.device_count).toBe(1);
      expect((await get(house.id, ivy.token)).body.data).toMatchObject({ total_device_count: 4, statistics: { online: 0, offline: 4 } });
    });

    it('lets an admin see other users’ groups; a user sees only their own', async () => {
      const all = await api.get<List<Group>>('/api/groups?limit=500', { token: admin.token });
      expect(all.body.data.map((g) => g.id)).toEqual(expect.arrayContaining([house.id, room.id]));
      expect((await get(room.id, admin.token)).status).toBe(200);
      const hanks = await api.get<List<Group>>('/api/groups?limit=500', { token: hank.token });
      expect(hanks.body.data.every((g) => g.user_id === hank.id)).toBe(true);
    });
  });

  describe('update', () => {
    let jack: Account;

    beforeAll(async () => {
      jack = await registerUser(api, uniqueName('jack'));
    });

    it('renames and describes, bumping the version', async () => {
      const group = await createGroup(api, jack.token, { name: 'Old name' });
      const answer = await put(group.id, { name: 'New name', description: 'described' }, jack.token);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.data).toMatchObject({ id: group.id, name: 'New name', description: 'described', version: 2 });
      expect(answer.headers.get('etag')).toBe('"2"');
      expect((await get(group.id, jack.token)).body.data.name).toBe('New name');
      // The old name is free again.
      await createGroup(api, jack.token, { name: 'Old name' });
    });

    it('allows a change of case of its own name but refuses another group’s name with 409', async () => {
      const a = await createGroup(api, jack.token, { name: 'Alpha' });
      await createGroup(api, jack.token, { name: 'Beta' });
      expect((await put(a.id, { name: 'ALPHA' }, jack.token)).status).toBe(200);
      expectError(await put(a.id, { name: 'beta' }, jack.token), 409, 'already_exists');
    });

    it('moves a group, updating both parents’ totals, and back to the root with null', async () => {
      const left = await createGroup(api, jack.token);
      const right = await createGroup(api, jack.token);
      const child = await createGroup(api, jack.token, { parent_id: left.id });
      await createDevice(api, jack.token, { group_id: child.id });
      expect((await get(left.id, jack.token)).body.data.total_device_count).toBe(1);

      const moved = await put(child.id, { parent_group: right.id }, jack.token);
      expect(moved.status).toBe(200);
      expect(moved.body.data.parent_id).toBe(right.id);
      expect((await get(left.id, jack.token)).body.data.total_device_count).toBe(0);
      expect((await get(right.id, jack.token)).body.data.total_device_count).toBe(1);

      const rooted = await put(child.id, { parent_id: null }, jack.token);
      expect(rooted.status).toBe(200);
      expect(rooted.body.data.parent_id).toBeNull();
      expect((await get(right.id, jack.token)).body.data.total_device_count).toBe(0);
    });

    it('refuses moves that would make a cycle with 400, and changes nothing', async () => {
      const a = await createGroup(api, jack.token);
      const b = await createGroup(api, jack.token, { parent_id: a.id });
      const c = await createGroup(api, jack.token, { parent_id: b.id });
      expectValidation(await put(a.id, { parent_id: c.id }, jack.token), 'parent_id');
      expectValidation(await put(a.id, { parent_id: b.id }, jack.token), 'parent_id');
      expectValidation(await put(a.id, { parent_id: a.id }, jack.token), 'parent_id');
      expectValidation(await put(b.id, { parent_group: c.id }, jack.token), 'parent_id');
      const after = await get(a.id, jack.token);
      expect(after.body.data).toMatchObject({ parent_id: null, version: 1 });
      const tree = await api.get<List<Group>>('/api/groups?tree=true&limit=500', { token: jack.token });
      const root = tree.body.data.find((g) => g.id === a.id)!;
      expect(root.children!.map((g) => g.id)).toEqual([b.id]);
    });

    it('refuses an unknown or foreign parent with 400', async () => {
      const group = await createGroup(api, jack.token);
      const foreign = await createGroup(api, hank.token);
      expectValidation(await put(group.id, { parent_id: MISSING }, jack.token), 'parent_id');
      expectValidation(await put(group.id, { parent_id: foreign.id }, jack.token), 'parent_id');
    });

    it('honours If-Match: stale 412, current 200', async () => {
      const group = await createGroup(api, jack.token);
      const first = await put(group.id, { description: 'v2' }, jack.token);
      expect(first.body.data.version).toBe(2);
      expectError(await put(group.id, { description: 'stale' }, jack.token, { 'if-match': '"1"' }), 412, 'precondition_failed');
      expect((await get(group.id, jack.token)).body.data.description).toBe('v2');
      const current = await put(group.id, { description: 'v3' }, jack.token, { 'if-match': first.headers.get('etag')! });
      expect(current.status).toBe(200);
      expect(current.body.data).toMatchObject({ description: 'v3', version: 3 });
    });

    it('honours If-Match on DELETE: stale 412 and the group stays, current deletes', async () => {
      const group = await createGroup(api, jack.token);
      const renamed = await put(group.id, { description: 'v2' }, jack.token);
      expectError(await api.del(`/api/groups/${group.id}`, { token: jack.token, headers: { 'if-match': '"1"' } }), 412, 'precondition_failed');
      expect((await get(group.id, jack.token)).status).toBe(200);
      expect((await api.del(`/api/groups/${group.id}`, { token: jack.token, headers: { 'if-match': renamed.headers.get('etag')! } })).status).toBe(200);
      expectError(await get(group.id, jack.token), 404, 'not_found');
    });

    it('refuses an invalid update with 400', async () => {
      const group = await createGroup(api, jack.token);
      expectValidation(await put(group.id, { name: '' }, jack.token), 'name');
      expectValidation(await put(group.id, { parent_id: 42 }, jack.token), 'parent_id');
    });
  });

  describe('delete', () => {
    let kate: Account;

    beforeAll(async () => {
      kate = await registerUser(api, uniqueName('kate'));
    });

    it('refuses to delete a group with subgroups with 409, then deletes it once empty', async () => {
      const parent = await createGroup(api, kate.token);
      const child = await createGroup(api, kate.token, { parent_id: parent.id });
      expectError(await api.del(`/api/groups/${parent.id}`, { token: kate.token }), 409, 'conflict');
      expect((await get(parent.id, kate.token)).status).toBe(200);

      const childGone = await api.del(`/api/groups/${child.id}`, { token: kate.token });
      expect(childGone.status).toBe(200);
      expect(childGone.body).toEqual({ data: { id: child.id, deleted: true } });
      const parentGone = await api.del(`/api/groups/${parent.id}`, { token: kate.token });
      expect(parentGone.status).toBe(200);
      expect(parentGone.body).toEqual({ data: { id: parent.id, deleted: true } });
      expectError(await get(parent.id, kate.token), 404, 'not_found');
      expectError(await api.del(`/api/groups/${parent.id}`, { token: kate.token }), 404, 'not_found');
      expectError(await put(parent.id, { name: 'revived' }, kate.token), 404, 'not_found');
    });

    it('ungroups the devices of a deleted group and updates the parent’s totals', async () => {
      const parent = await createGroup(api, kate.token);
      const group = await createGroup(api, kate.token, { parent_id: parent.id });
      const a = await createDevice(api, kate.token, { group_id: group.id });
      const b = await createDevice(api, kate.token, { group_id: group.id });
      expect((await get(parent.id, kate.token)).body.data.total_device_count).toBe(2);

      expect((await api.del(`/api/groups/${group.id}`, { token: kate.token })).status).toBe(200);
      for (const device of [a, b]) {
        const detail = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: kate.token });
        expect(detail.status).toBe(200);
        expect(detail.body.data.group_id).toBeNull();
      }
      const filtered = await api.get<List<Device>>(`/api/devices?group_id=${group.id}`, { token: kate.token });
      expect(filtered.body.meta.total).toBe(0);
      expect((await get(parent.id, kate.token)).body.data).toMatchObject({ device_count: 0, total_device_count: 0 });
      const list = await api.get<List<Group>>('/api/groups', { token: kate.token });
      expect(list.body.data.map((g) => g.id)).toEqual([parent.id]);
      // The devices cannot be put back into the deleted group.
      expectValidation(await api.put(`/api/devices/${a.id}`, { group_id: group.id }, { token: kate.token }), 'group_id');
      // The name is free again.
      await createGroup(api, kate.token, { name: group.name });
    });
  });

  describe('concurrency', () => {
    let liz: Account;

    beforeAll(async () => {
      liz = await registerUser(api, uniqueName('liz'));
    });

    it('creates only one of several simultaneous groups with the same name', async () => {
      const name = uniqueName('Race');
      const answers = await Promise.all([1, 2, 3, 4].map(() => api.post('/api/groups', { name }, { token: liz.token })));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409]);
      const list = await api.get<List<Group>>('/api/groups?limit=500', { token: liz.token });
      expect(list.body.data.filter((g) => g.name === name)).toHaveLength(1);
    });

    it('never lets two simultaneous moves make a cycle', async () => {
      const a = await createGroup(api, liz.token);
      const b = await createGroup(api, liz.token);
      const [ab, ba] = await Promise.all([put(a.id, { parent_id: b.id }, liz.token), put(b.id, { parent_id: a.id }, liz.token)]);
      expect([ab.status, ba.status].sort()).toEqual([200, 400]);
      const ga = (await get(a.id, liz.token)).body.data;
      const gb = (await get(b.id, liz.token)).body.data;
      expect(ga.parent_id === b.id && gb.parent_id === a.id).toBe(false);
      expect([ga.parent_id, gb.parent_id].filter((p) => p !== null)).toHaveLength(1);
    });

    it('never deletes a group while a subgroup is being created under it (no orphans)', async () => {
      for (let round = 0; round < 10; round++) {
        const parent = await createGroup(api, liz.token);
        const [child, deleted] = await Promise.all([api.post<Data<Group>>('/api/groups', { name: uniqueName('Orphan'), parent_id: parent.id }, { token: liz.token }), api.del(`/api/groups/${parent.id}`, { token: liz.token })]);
        if (child.status === 201) {
          // The child exists: its parent must too, so the delete must have been refused.
          expect(deleted.status).toBe(409);
          expect((await get(parent.id, liz.token)).status).toBe(200);
        } else {
          expect(deleted.status).toBe(200);
        }
      }
    });

    it('answers one 200 and otherwise 412 for simultaneous updates with the same If-Match', async () => {
      const group = await createGroup(api, liz.token);
      const answers = await Promise.all([1, 2, 3].map((i) => put(group.id, { description: `d${i}` }, liz.token, { 'if-match': '"1"' })));
      expect(answers.map((a) => a.status).sort()).toEqual([200, 412, 412]);
      expect((await get(group.id, liz.token)).body.data.version).toBe(2);
    });

    it('does not leave a device in a group deleted at the same time', async () => {
      const device = await createDevice(api, liz.token);
      for (let round = 0; round < 5; round++) {
        const group = await createGroup(api, liz.token);
        const [moved, deleted] = await Promise.all([
          api.put(`/api/devices/${device.id}`, { group_id: group.id }, { token: liz.token }),
          api.del(`/api/groups/${group.id}`, { token: liz.token }),
        ]);
        expect(deleted.status).toBe(200);
        expect([200, 400]).toContain(moved.status);
        const detail = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: liz.token });
        expect(detail.body.data.group_id, `round ${round}`).toBeNull();
      }
    });
  });

  describe('foreign groups', () => {
    it('answers 404 for another user’s group on GET, PUT and DELETE, and changes nothing', async () => {
      const group = await createGroup(api, hank.token, { name: uniqueName('private') });
      expectError(await get(group.id, gina.token), 404, 'not_found');
      expectError(await put(group.id, { name: 'taken over' }, gina.token), 404, 'not_found');
      expectError(await api.del(`/api/groups/${group.id}`, { token: gina.token }), 404, 'not_found');
      expectError(await get(MISSING, gina.token), 404, 'not_found');
      const list = await api.get<List<Group>>('/api/groups?limit=500', { token: gina.token });
      expect(list.body.data.map((g) => g.id)).not.toContain(group.id);
      const own = await get(group.id, hank.token);
      expect(own.body.data).toMatchObject({ name: group.name, version: 1 });
    });

    it('does not let a user file devices under another user’s group', async () => {
      const group = await createGroup(api, hank.token);
      expectValidation(await api.post('/api/devices', { name: 'intruder', type: 'sensor', group_id: group.id }, { token: gina.token }), 'group_id');
      expect((await get(group.id, hank.token)).body.data.device_count).toBe(0);
    });
  });
});
