import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERASED } from '../../src/eventlog/index.js';
import { verifyExport } from '../../src/eventlog/export-verifier.js';
import { client } from '../helpers/client.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer } from '../helpers/server.js';

interface Person {
  username: string;
  email: string;
  devices: number;
  erased: 'no' | 'self' | 'admin';
}

/** A '.' or '@' never occurs in base64url: a name holding one cannot show up inside a sealed value by chance. */
const part = fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/);
const person: fc.Arbitrary<Person> = fc.record({
  username: fc.tuple(part, part).map(([a, b]) => `${a}.${b}`.slice(0, 32).padEnd(3, 'x')),
  email: fc.tuple(part, part).map(([a, b]) => `${a}.${b}@mail.example`),
  devices: fc.nat({ max: 2 }),
  erased: fc.constantFrom('no', 'self', 'admin'),
});
const people = fc.uniqueArray(person, { minLength: 1, maxLength: 4, selector: (p) => [p.username.toLowerCase(), p.email.toLowerCase()].join(' ') }).filter((list) => {
  const names = list.flatMap((p) => [p.username.toLowerCase(), p.email.toLowerCase()]);
  return new Set(names).size === names.length;
});

describe('erasure (property)', () => {
  it('an export of a log holding erased users verifies, and none of their personal data can be read from it, even with the server keys', async () => {
    await fc.assert(
      fc.asyncProperty(people, async (list) => {
        const server = await startTestServer();
        const api = client(() => server.url);
        try {
          const root = await api.post('/api/auth/register', { username: 'root.admin', email: 'root@admin.example', password: 'correct horse' });
          const rootToken = root.body.data.token as string;
          const sessions = [];
          for (const p of list) {
            const answer = await api.post('/api/auth/register', { username: p.username, email: p.email, password: 'correct horse' });
            expect(answer.status).toBe(201);
            const token = answer.body.data.token as string;
            for (let d = 0; d < p.devices; d++) {
              const device = await api.post('/api/devices', { name: `d${d}`, type: 'sensor' }, { token });
              await api.post(`/api/devices/${device.body.data.id}/data`, { sensor_readings: { t: d } }, { token: device.body.data.credentials.auth_token });
            }
            sessions.push({ person: p, token, id: answer.body.data.user.id as string });
          }
          for (const { person: p, token, id } of sessions) {
            if (p.erased === 'self') expect((await api.call('DELETE', '/api/auth/user', { password: 'correct horse' }, { token })).status).toBe(200);
            if (p.erased === 'admin') expect((await api.del(`/api/users/${id}`, { token: rootToken })).status).toBe(200);
          }
          const exported = await (await fetch(`${server.url}/api/events/export`, { headers: { authorization: `Bearer ${rootToken}` } })).text();
          const lines = exported.split('\n');
          expect(verifyExport(lines)).toMatchObject({ ok: true, complete_chain: true });

          // Opened with every key the server still holds: the kept users read, the erased ones do not.
          const { personal } = server.server.services;
          const registrations = lines.filter(Boolean).map((line) => JSON.parse(line) as { type: string; data: Record<string, string> }).filter((e) => e.type === 'user.registered');
          const opened = registrations.map((e) => [personal.open(e.data.user_id!, e.data.username!, 'username'), personal.open(e.data.user_id!, e.data.email!, 'email')]).flat();
          const served = JSON.stringify([(await api.get('/api/users?limit=500', { token: rootToken })).body, (await api.get('/api/events?limit=500', { token: rootToken })).body]);
          for (const { person: p } of sessions) {
            for (const value of [p.username, p.email]) {
              expect(exported.includes(value)).toBe(false);
              expect(opened.includes(value)).toBe(p.erased === 'no');
              expect(served.includes(value)).toBe(p.erased === 'no');
            }
          }
          expect(opened.filter((value) => value === ERASED)).toHaveLength(2 * sessions.filter((s) => s.person.erased !== 'no').length);
          expect(await replayDiffers(server)).toEqual([]);
        } finally {
          await server.close();
        }
      }),
      { numRuns: 12 },
    );
  }, 120_000);
});
