import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { client, registerUser } from '../helpers/client.js';
import { expectError, expectValidation, setCookie, uniqueName, type Data, type User } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { LOGIN_FAILURE_LIMITS } from '../../src/commands/login-throttle.js';

interface SessionAnswer {
  user: User;
  token: string;
  expires_at: string;
  api_key?: string;
  permissions?: string[];
}

type CurrentUser = User & { device_count: number; permissions: string[] };

const PASSWORD = 'correct horse';
const USER_KEYS = ['created_at', 'device_quota', 'email', 'id', 'role', 'username'];
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FIFTEEN_MINUTES = 15 * 60 * 1000;

describe('accounts', () => {
  let server: TestServer;
  const api = client(() => server.url);
  /** The first user of the system: the admin. */
  let admin: { token: string; apiKey: string; id: string; username: string };

  const register = (body: unknown) => api.post<Data<SessionAnswer>>('/api/auth/register', body);
  const login = (body: unknown) => api.post<Data<SessionAnswer>>('/api/auth/login', body);

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  describe('register', () => {
    it('makes the first user admin and answers 201 with a session, an expiry and an API key', async () => {
      const username = uniqueName('first');
      const answer = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      expect(answer.status).toBe(201);
      const { user, token, expires_at, api_key } = answer.body.data;
      expect(Object.keys(user).sort()).toEqual(USER_KEYS);
      expect(user).toMatchObject({ username, email: `${username}@example.com`, role: 'admin' });
      expect(user.id).toMatch(UUID);
      expect(user.created_at).toMatch(ISO_MS);
      expect(typeof user.device_quota).toBe('number');
      expect(token).toMatch(/^eyJ/);
      expect(expires_at).toMatch(ISO_MS);
      expect(new Date(expires_at).getTime()).toBeGreaterThan(server.clock.now().getTime());
      expect(typeof api_key).toBe('string');
      expect(api_key!.length).toBeGreaterThanOrEqual(16);
      expect(api_key).not.toBe(token);
      // Secrets never leak in the answer.
      const text = JSON.stringify(answer.body);
      expect(text).not.toMatch(/hash|password/i);
      expect(text).not.toContain(PASSWORD);
      admin = { token, apiKey: api_key!, id: user.id, username };
    });

    it('makes every later user a plain user', async () => {
      const username = uniqueName('second');
      const answer = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      expect(answer.status).toBe(201);
      expect(answer.body.data.user.role).toBe('user');
      expect(Object.keys(answer.body.data.user).sort()).toEqual(USER_KEYS);
      expect(answer.body.data.api_key).toBeTruthy();
      expect(answer.body.data.api_key).not.toBe(admin.apiKey);
    });

    it('accepts the full username alphabet and the length bounds', async () => {
      for (const username of ['a.b', `x-_.${Date.now() % 10000}`, `${'Z'.repeat(26)}${String(Date.now()).slice(-6)}`]) {
        const answer = await register({ username, email: `${username.toLowerCase()}@example.com`, password: '12345678' });
        expect(answer.status, JSON.stringify(answer.body)).toBe(201);
      }
    });

    const good = () => {
      const username = uniqueName('valid');
      return { username, email: `${username}@example.com`, password: PASSWORD };
    };

    it.each([
      ['a too short username', { username: 'ab' }, 'username'],
      ['a too long username', { username: 'a'.repeat(33) }, 'username'],
      ['a username with a space', { username: 'bad name' }, 'username'],
      ['a username with a slash', { username: 'bad/name' }, 'username'],
      ['a username with non-ASCII', { username: 'bädname' }, 'username'],
      ['an email without @', { email: 'not-an-email' }, 'email'],
      ['an email without domain', { email: 'someone@' }, 'email'],
      ['a 7-character password', { password: '1234567' }, 'password'],
      ['a numeric username', { username: 12345 }, 'username'],
      ['a numeric password', { password: 12345678 }, 'password'],
      ['an email as an array', { email: ['a@example.com'] }, 'email'],
      ['a null username', { username: null }, 'username'],
      ['an object password', { password: { length: 10 } }, 'password'],
      // bcrypt ignores what follows 72 bytes: such a password would accept any tail.
      ['a 73-character password', { password: 'p'.repeat(73) }, 'password'],
      ['a password of 25 three-byte characters (75 bytes)', { password: '€'.repeat(25) }, 'password'],
    ])('refuses %s with 400 validation_failed naming the field', async (_label, override, path) => {
      const answer = await register({ ...good(), ...override });
      expectValidation(answer, path);
    });

    it('accepts a password of exactly 72 bytes, and only that password logs in', async () => {
      const body = { ...good(), password: `${'€'.repeat(23)}abc` };
      expect((await register(body)).status).toBe(201);
      expect((await login({ username: body.username, password: body.password })).status).toBe(200);
      expectError(await login({ username: body.username, password: `${'€'.repeat(23)}abd` }), 401, 'invalid_credentials');
    });

    it.each([['username'], ['email'], ['password']])('refuses a missing %s', async (field) => {
      const body: Record<string, unknown> = good();
      delete body[field];
      expectValidation(await register(body), field);
    });

    it('names every bad field at once', async () => {
      const error = expectError(await register({ username: 'x', email: 'nope', password: 'short' }), 400, 'validation_failed');
      const paths = error.details.map((d) => d.path);
      expect(paths).toEqual(expect.arrayContaining(['username', 'email', 'password']));
    });

    it('refuses an empty body', async () => {
      expectError(await register({}), 400, 'validation_failed');
    });

    it('refuses a taken username, case-insensitively, with 409 already_exists', async () => {
      const first = good();
      expect((await register(first)).status).toBe(201);
      const same = await register({ username: first.username, email: `other_${first.email}`, password: PASSWORD });
      expectError(same, 409, 'already_exists');
      const upper = await register({ username: first.username.toUpperCase(), email: `other2_${first.email}`, password: PASSWORD });
      expectError(upper, 409, 'already_exists');
    });

    it('registers only one of several simultaneous sign-ups for the same username', async () => {
      const username = uniqueName('race');
      const answers = await Promise.all([1, 2, 3, 4].map((i) => register({ username, email: `${username}_${i}@example.com`, password: PASSWORD })));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409]);
      expect(answers.filter((a) => a.status === 201).map((a) => a.body.data.user.role)).toEqual(['user']);
    });

    it('refuses a taken email, case-insensitively, with 409 already_exists', async () => {
      const first = good();
      expect((await register(first)).status).toBe(201);
      const same = await register({ username: uniqueName('other'), email: first.email, password: PASSWORD });
      expectError(same, 409, 'already_exists');
      const upper = await register({ username: uniqueName('other'), email: first.email.toUpperCase(), password: PASSWORD });
      expectError(upper, 409, 'already_exists');
    });
  });

  describe('login', () => {
    let user: { username: string; email: string; id: string };

    beforeAll(async () => {
      const username = uniqueName('login');
      const answer = await register({ username, email: `${username}@Example.com`, password: PASSWORD });
      expect(answer.status).toBe(201);
      user = { username, email: `${username}@Example.com`, id: answer.body.data.user.id };
    });

    const expectSession = (answer: Awaited<ReturnType<typeof login>>) => {
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      const data = answer.body.data;
      expect(data.user.id).toBe(user.id);
      expect(Object.keys(data.user).sort()).toEqual(USER_KEYS);
      expect(data.token).toMatch(/^eyJ/);
      expect(data.expires_at).toMatch(ISO_MS);
      expect(data.permissions).toEqual(expect.arrayContaining(['devices:read', 'devices:write']));
      expect(data.permissions).not.toContain('admin');
      expect(JSON.stringify(answer.body)).not.toMatch(/hash|api_key/i);
      return data;
    };

    it('logs in by username', async () => {
      const data = expectSession(await login({ username: user.username, password: PASSWORD }));
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { token: data.token });
      expect(me.status).toBe(200);
      expect(me.body.data.id).toBe(user.id);
    });

    it('logs in by username in another case', async () => {
      expectSession(await login({ username: user.username.toUpperCase(), password: PASSWORD }));
    });

    it('logs in by email', async () => {
      expectSession(await login({ email: user.email, password: PASSWORD }));
      expectSession(await login({ email: user.email.toLowerCase(), password: PASSWORD }));
    });

    it('logs in with an email in the username field', async () => {
      expectSession(await login({ username: user.email, password: PASSWORD }));
    });

    it('gives each login its own token', async () => {
      const a = expectSession(await login({ username: user.username, password: PASSWORD }));
      server.clock.advance(1000);
      const b = expectSession(await login({ username: user.username, password: PASSWORD }));
      expect(a.token).not.toBe(b.token);
    });

    it('answers a wrong password and an unknown user with the same 401 invalid_credentials', async () => {
      const wrong = expectError(await login({ username: user.username, password: 'wrong password' }), 401, 'invalid_credentials');
      const unknown = expectError(await login({ username: uniqueName('nobody'), password: PASSWORD }), 401, 'invalid_credentials');
      const unknownEmail = expectError(await login({ email: 'nobody@example.com', password: PASSWORD }), 401, 'invalid_credentials');
      expect(unknown.message).toBe(wrong.message);
      expect(unknownEmail.message).toBe(wrong.message);
      // Failures stop counting after the throttle window.
      server.clock.advance(FIFTEEN_MINUTES + 1000);
    });

    it('refuses a login body without username or email, or without password', async () => {
      expectError(await login({ password: PASSWORD }), 400, 'validation_failed');
      expectValidation(await login({ username: user.username }), 'password');
      expectValidation(await login({ username: 42, password: PASSWORD }), 'username');
    });

    it('answers 429 rate_limited with Retry-After after 5 failures, even for the right password, until the window passes', async () => {
      server.clock.advance(FIFTEEN_MINUTES + 1000);
      const target = uniqueName('throttled');
      expect((await register({ username: target, email: `${target}@example.com`, password: PASSWORD })).status).toBe(201);
      for (let i = 0; i < 5; i++) {
        expectError(await login({ username: target, password: `wrong password ${i}` }), 401, 'invalid_credentials');
      }
      const limited = await login({ username: target, password: 'wrong again' });
      expectError(limited, 429, 'rate_limited');
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(15 * 60);
      // The right password does not get through while throttled.
      expectError(await login({ username: target, password: PASSWORD }), 429, 'rate_limited');
      // Nor does the email of the same account.
      expectError(await login({ email: `${target}@example.com`, password: PASSWORD }), 429, 'rate_limited');

      server.clock.advance(retryAfter * 1000 + 1000);
      const again = await login({ username: target, password: PASSWORD });
      expect(again.status, JSON.stringify(again.body)).toBe(200);
    });
  });

  describe('login throttle per address', () => {
    it('does not lock other accounts out when one account is throttled', async () => {
      server.clock.advance(FIFTEEN_MINUTES + 1000);
      const [locked, bystander] = [uniqueName('locked'), uniqueName('bystander')];
      for (const name of [locked, bystander]) expect((await register({ username: name, email: `${name}@example.com`, password: PASSWORD })).status).toBe(201);
      for (let i = 0; i < LOGIN_FAILURE_LIMITS.account; i++) expectError(await login({ username: locked, password: 'nope nope' }), 401, 'invalid_credentials');
      expectError(await login({ username: locked, password: PASSWORD }), 429, 'rate_limited');
      expect((await login({ username: bystander, password: PASSWORD })).status).toBe(200);
    });

    it('answers 429 after many failures from one address, even for other accounts', async () => {
      server.clock.advance(FIFTEEN_MINUTES + 1000);
      const target = uniqueName('victim');
      expect((await register({ username: target, email: `${target}@example.com`, password: PASSWORD })).status).toBe(201);
      for (let i = 0; i < LOGIN_FAILURE_LIMITS.address; i++) {
        expectError(await login({ username: uniqueName('ghost'), password: PASSWORD }), 401, 'invalid_credentials');
      }
      const limited = await login({ username: target, password: PASSWORD });
      expectError(limited, 429, 'rate_limited');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      server.clock.advance(FIFTEEN_MINUTES + 1000);
      expect((await login({ username: target, password: PASSWORD })).status).toBe(200);
    });
  });

  describe('credentials', () => {
    let session: SessionAnswer;
    let cookie: string;
    let apiKey: string;

    beforeAll(async () => {
      server.clock.advance(FIFTEEN_MINUTES + 1000);
      const username = uniqueName('creds');
      const answer = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      expect(answer.status).toBe(201);
      session = answer.body.data;
      apiKey = answer.body.data.api_key!;
      const loggedIn = await login({ username, password: PASSWORD });
      expect(loggedIn.status).toBe(200);
      const set = setCookie(loggedIn, 'session');
      expect(set).toBeDefined();
      cookie = set!.value;
    });

    it('sets an HttpOnly, SameSite=Lax session cookie on register and on login', async () => {
      const username = uniqueName('cookie');
      const registered = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      for (const answer of [registered, await login({ username, password: PASSWORD })]) {
        const set = setCookie(answer, 'session');
        expect(set, JSON.stringify(answer.headers.getSetCookie())).toBeDefined();
        const attributes = set!.attributes.map((a) => a.toLowerCase());
        expect(attributes).toContain('httponly');
        expect(attributes).toContain('samesite=lax');
        expect(decodeURIComponent(set!.value)).toBe(answer.body.data.token);
      }
    });

    it('accepts the session cookie as authentication', async () => {
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { headers: { cookie: `other=1; session=${cookie}` } });
      expect(me.status, JSON.stringify(me.body)).toBe(200);
      expect(me.body.data.id).toBe(session.user.id);
    });

    it('accepts the X-API-Key header as authentication', async () => {
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { headers: { 'x-api-key': apiKey } });
      expect(me.status).toBe(200);
      expect(me.body.data.id).toBe(session.user.id);
    });

    it('tells the credential kinds apart by prefix', () => {
      expect(session.token.slice(0, 3)).toBe('eyJ');
      expect(apiKey.startsWith('eyJ')).toBe(false);
    });

    it('answers GET /api/auth/user with the user, device_count and permissions', async () => {
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { token: session.token });
      expect(me.status).toBe(200);
      expect(Object.keys(me.body.data).sort()).toEqual([...USER_KEYS, 'device_count', 'group_permissions', 'permissions'].sort());
      expect(me.body.data).toMatchObject({ id: session.user.id, username: session.user.username, role: 'user', device_count: 0 });
      expect(me.body.data.permissions).toEqual(expect.arrayContaining(['devices:read']));
      expect(me.body.data.permissions).not.toContain('admin');

      const created = await api.post('/api/devices', { name: 'counted', type: 'sensor' }, { token: session.token });
      expect(created.status).toBe(201);
      const after = await api.get<Data<CurrentUser>>('/api/auth/user', { token: session.token });
      expect(after.body.data.device_count).toBe(1);
    });

    it('gives the admin admin permissions', async () => {
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { token: admin.token });
      expect(me.status).toBe(200);
      expect(me.body.data.role).toBe('admin');
      expect(me.body.data.permissions).toContain('admin');
    });

    it('answers 401 unauthenticated without credentials', async () => {
      expectError(await api.get('/api/auth/user'), 401, 'unauthenticated');
    });

    it.each([
      ['garbage', 'garbage-token'],
      ['a JWT-looking garbage', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'],
      ['an unknown API key', 'iotk_not-a-real-key-at-all-000000000000'],
    ])('answers 401 unauthenticated for %s', async (_label, token) => {
      expectError(await api.get('/api/auth/user', { token }), 401, 'unauthenticated');
      expectError(await api.get('/api/auth/user', { headers: { 'x-api-key': token } }), 401, 'unauthenticated');
      expectError(await api.get('/api/auth/user', { headers: { cookie: `session=${token}` } }), 401, 'unauthenticated');
    });

    it('answers 401 for a JWT forged with another secret', async () => {
      const [, payload] = session.token.split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode('not-the-server-secret-at-all-0123456789'));
      expectError(await api.get('/api/auth/user', { token: forged }), 401, 'unauthenticated');
    });

    it('answers 401 for a tampered JWT (changed subject) and an unsigned one (alg none)', async () => {
      const [header, payload, signature] = session.token.split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
      const tampered = Buffer.from(JSON.stringify({ ...claims, sub: admin.id })).toString('base64url');
      expectError(await api.get('/api/auth/user', { token: `${header}.${tampered}.${signature}` }), 401, 'unauthenticated');
      const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      expectError(await api.get('/api/auth/user', { token: `${none}.${payload}.` }), 401, 'unauthenticated');
    });

    it('answers 401 for an expired session', async () => {
      const username = uniqueName('expiry');
      const answer = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      const { token, expires_at } = answer.body.data;
      expect((await api.get('/api/auth/user', { token })).status).toBe(200);
      const saved = server.clock.now();
      server.clock.set(new Date(new Date(expires_at).getTime() + 1000));
      try {
        expectError(await api.get('/api/auth/user', { token }), 401, 'unauthenticated');
      } finally {
        server.clock.set(saved);
      }
      expect((await api.get('/api/auth/user', { token })).status).toBe(200);
    });

    it('logs out: 200 {logged_out:true}, then the token is refused everywhere while others still work', async () => {
      const username = uniqueName('logout');
      const registered = await register({ username, email: `${username}@example.com`, password: PASSWORD });
      const first = registered.body.data.token;
      const key = registered.body.data.api_key!;
      const second = (await login({ username, password: PASSWORD })).body.data.token;

      const out = await api.post('/api/auth/logout', undefined, { token: first });
      expect(out.status, JSON.stringify(out.body)).toBe(200);
      expect(out.body).toEqual({ data: { logged_out: true } });
      // The cookie is cleared.
      const cleared = setCookie(out, 'session');
      expect(cleared).toBeDefined();
      expect(cleared!.value).toBe('');

      expectError(await api.get('/api/auth/user', { token: first }), 401, 'unauthenticated');
      expectError(await api.get('/api/auth/user', { headers: { cookie: `session=${first}` } }), 401, 'unauthenticated');
      expectError(await api.get('/api/devices', { token: first }), 401, 'unauthenticated');
      expectError(await api.post('/api/auth/logout', undefined, { token: first }), 401, 'unauthenticated');
      // Another session of the same user and its API key still work.
      expect((await api.get('/api/auth/user', { token: second })).status).toBe(200);
      expect((await api.get('/api/auth/user', { headers: { 'x-api-key': key } })).status).toBe(200);
    });

    it('refuses logout without credentials', async () => {
      expectError(await api.post('/api/auth/logout'), 401, 'unauthenticated');
    });
  });

  describe('first-user rule', () => {
    it('keeps exactly one admin: the first registered user', async () => {
      const me = await api.get<Data<CurrentUser>>('/api/auth/user', { token: admin.token });
      expect(me.body.data.role).toBe('admin');
      const later = await registerUser(api, uniqueName('later'));
      const laterMe = await api.get<Data<CurrentUser>>('/api/auth/user', { token: later.token });
      expect(laterMe.body.data.role).toBe('user');
    });
  });
});
