import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser, type CallOptions } from '../helpers/client.js';
import { createDevice, expectError, uniqueName } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { UpgradeRefused, connect, wsUrl } from '../helpers/ws-client.js';

const TTL_SECONDS = 3600;

describe('401 answers say what was wrong with the credential', () => {
  let server: TestServer;
  const api = client(() => server.url);

  beforeAll(async () => {
    server = await startTestServer({ SESSION_TTL_SECONDS: String(TTL_SECONDS) });
  });
  afterAll(() => server?.close());

  /** The 401 GET /api/devices answers with these credentials, and the reason its details give. */
  async function refusal(options: CallOptions): Promise<{ message: string; reason: string | undefined }> {
    const error = expectError(await api.get('/api/devices', options), 401, 'unauthenticated');
    return { message: error.message, reason: error.details.find((d) => d.path === 'credential')?.message };
  }

  it('missing: no credential at all', async () => {
    const { message, reason } = await refusal({});
    expect(reason).toBe('missing');
    expect(message).toMatch(/^authentication required/);
  });

  it('malformed: an Authorization header that is not Bearer, a garbled session token, one too long to be a credential', async () => {
    for (const headers of [{ authorization: 'Basic dXNlcjpwYXNz' }, { authorization: 'Bearer eyJhbGciOi.not-base64!.x' }, { authorization: `Bearer ${'a'.repeat(5000)}` }]) {
      const { message, reason } = await refusal({ headers });
      expect(reason, JSON.stringify(headers).slice(0, 60)).toBe('malformed');
      expect(message).toMatch(/malformed/);
    }
  });

  it('expired: a session token past its lifetime', async () => {
    const { token } = await registerUser(api, uniqueName('expiring'));
    expect((await api.get('/api/devices', { token })).status).toBe(200);
    server.clock.advance((TTL_SECONDS + 1) * 1000);
    const { message, reason } = await refusal({ token });
    expect(reason).toBe('expired');
    expect(message).toBe('the session has expired: log in again');
  });

  it('revoked: a session token after logout', async () => {
    const { token } = await registerUser(api, uniqueName('leaving'));
    expect((await api.post('/api/auth/logout', undefined, { token })).status).toBe(200);
    const { message, reason } = await refusal({ token });
    expect(reason).toBe('revoked');
    expect(message).toMatch(/ended/);
  });

  it('a wrong token and an unknown one read the same: a forged session, a wrong API key, a made-up device token, a deleted device', async () => {
    const owner = await registerUser(api, uniqueName('owner'));
    const device = await createDevice(api, owner.token);
    expect((await api.del(`/api/devices/${device.id}`, { token: owner.token })).status).toBe(200);
    const [header, payload] = owner.token.split('.');
    const forged = `${header}.${payload}.${'A'.repeat(43)}`;
    const answers = await Promise.all(
      [forged, `${owner.apiKey.slice(0, -2)}xx`, 'iotd_made-up-token-of-some-length', device.credentials.auth_token].map((token) => refusal({ token })),
    );
    expect(new Set(answers.map((a) => JSON.stringify(a)))).toEqual(new Set([JSON.stringify({ message: 'the credential is not valid', reason: 'invalid' })]));
  });

  it('a WebSocket upgrade refused with 401 says the same: missing, expired, revoked, not valid', async () => {
    const refusedWith = async (path: string) => {
      const error = await connect(wsUrl(server.url, path)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UpgradeRefused);
      const refusal = error as UpgradeRefused;
      expect(refusal.status).toBe(401);
      return JSON.parse(refusal.body) as { error: { message: string } };
    };
    expect((await refusedWith('/ws')).error.message).toMatch(/^authentication required/);
    expect((await refusedWith('/ws?token=iotk_made-up-key')).error.message).toBe('the credential is not valid');
    const leaving = await registerUser(api, uniqueName('wsleaving'));
    expect((await api.post('/api/auth/logout', undefined, { token: leaving.token })).status).toBe(200);
    expect((await refusedWith(`/ws?token=${encodeURIComponent(leaving.token)}`)).error.message).toMatch(/ended/);
    const expiring = await registerUser(api, uniqueName('wsexpiring'));
    server.clock.advance((TTL_SECONDS + 1) * 1000);
    expect((await refusedWith(`/ws?token=${encodeURIComponent(expiring.token)}`)).error.message).toBe('the session has expired: log in again');
    // A user's token on the device socket is not a device's credential.
    const other = await registerUser(api, uniqueName('wsuser'));
    expect((await refusedWith(`/ws/device?token=${encodeURIComponent(other.token)}`)).error.message).toBe('the credential is not valid');
  });
});
