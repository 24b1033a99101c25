import bcrypt from 'bcryptjs';
import { DomainError, notFound } from '../domain/errors.js';
import { streams, type MemberRole } from '../domain/events.js';
import { userDecider, type UserCommand } from '../domain/user.js';
import { findDeviceByCertificate, findDeviceByTokenHash } from '../projections/devices.js';
import { nameKey } from '../projections/groups.js';
import { countUsers, findSession, findUserById, findUserByLogin, isUsernameOrEmailTaken, type UserRow } from '../projections/users.js';
import { ApiKeys } from './api-keys.js';
import { SessionTokens, credentialDigests, credentialKind, generateApiKey, sealedDigest, type ClientCertificate, type CredentialRefusal } from './credentials.js';
import { handle } from './handle.js';
import { KeyedLock } from './keyed-lock.js';
import { LOGIN_FAILURE_LIMITS, LoginThrottle } from './login-throttle.js';
import { readModelsCaughtUp, type Principal, type RequestContext, type Services } from './services.js';

export interface Session {
  user: UserRow;
  token: string;
  expires_at: string;
}

/** What a device is told of a certificate the handshake did not verify (OpenSSL's codes); any other: not our CA's. */
const HANDSHAKE_REFUSALS: Record<string, string> = { CERT_HAS_EXPIRED: 'it has expired', CERT_NOT_YET_VALID: 'it is not valid yet' };

/** Registration, login, logout and resolving a credential to who is calling. */
export class Accounts {
  private readonly lock = new KeyedLock();
  private readonly throttle: LoginThrottle;
  readonly tokens: SessionTokens;
  readonly keys: ApiKeys;
  /** Compared against when the user is unknown, so both failures take the same time. */
  private readonly decoyHash: Promise<string>;

  constructor(private readonly services: Services) {
    this.throttle = new LoginThrottle(services.clock);
    this.tokens = new SessionTokens(services.config.jwtSecret);
    this.keys = new ApiKeys(services);
    this.decoyHash = bcrypt.hash('decoy-password', services.config.bcryptRounds);
  }

  async register(input: { username: string; email: string; password: string }, requestId: string): Promise<Session & { api_key: string }> {
    const passwordHash = await bcrypt.hash(input.password, this.services.config.bcryptRounds);
    return this.lock.run('registry', async () => {
      const { sql, newId, config } = this.services;
      await readModelsCaughtUp(this.services);
      const taken = isUsernameOrEmailTaken(sql, input.username, input.email);
      if (taken) {
        const field = nameKey(taken.username) === nameKey(input.username) ? 'username' : 'email';
        throw new DomainError('already_exists', `${field} is already taken`, [{ path: field, message: 'already taken' }]);
      }
      const userId = newId();
      const apiKey = generateApiKey();
      // Personal data goes into the log sealed under the user's own key, so erasure can make it unreadable.
      this.services.personal.create(userId);
      const register: UserCommand = {
        type: 'register_user',
        data: {
          user_id: userId,
          username: this.services.personal.seal(userId, input.username, 'username'),
          email: this.services.personal.seal(userId, input.email, 'email'),
          role: countUsers(sql) === 0 ? 'admin' : 'user',
          password_hash: this.services.secrets.seal(passwordHash, 'password_hash'),
          device_quota: config.defaultDeviceQuota,
        },
      };
      // The key handed out at registration is the user's first API key, managed like any other.
      const firstKey: UserCommand = {
        type: 'create_api_key',
        data: { key_id: newId(), name: 'default', scope: 'write', key_hash: sealedDigest(this.services.secrets, apiKey, 'key_hash'), expires_at: null },
      };
      const session = this.newSession(userId);
      const context: RequestContext = { principal: { kind: 'user', userId, role: register.data.role, sessionId: session.command.data.session_id }, requestId };
      await handle(this.services, userDecider, streams.user(userId), [register, firstKey, session.command], context);
      return { ...(await this.sessionAnswer(userId, session.command.data.session_id, session.expiresAt)), api_key: apiKey };
    });
  }

  async login(input: { login: string; password: string; clientAddress: string }, requestId: string): Promise<Session> {
    const user = findUserByLogin(this.services.sql, input.login);
    // One account, whether named by username or email; an unknown name counts on its own.
    const throttleKeys = passwordThrottleKeys(user?.id ?? nameKey(input.login), input.clientAddress);
    this.throttle.check(throttleKeys);
    const stored = user ? this.services.secrets.openIfSealed(user.password_hash, 'password_hash') : await this.decoyHash;
    const matches = await bcrypt.compare(input.password, stored);
    if (!user || !matches || user.disabled) {
      this.throttle.fail(throttleKeys);
      throw new DomainError('invalid_credentials', 'invalid username or password');
    }
    this.throttle.succeed(throttleKeys[0]!.key);
    const session = this.newSession(user.id);
    const context: RequestContext = { principal: { kind: 'user', userId: user.id, role: user.role, sessionId: session.command.data.session_id }, requestId };
    await handle(this.services, userDecider, streams.user(user.id), session.command, context);
    return this.sessionAnswer(user.id, session.command.data.session_id, session.expiresAt);
  }

  /** The caller's own password, checked as a login is (throttled): a stolen session alone cannot erase an account. */
  async confirmPassword(userId: string, password: string, clientAddress: string): Promise<void> {
    const user = findUserById(this.services.sql, userId);
    const throttleKeys = passwordThrottleKeys(userId, clientAddress);
    this.throttle.check(throttleKeys);
    if (!user || !(await bcrypt.compare(password, this.services.secrets.openIfSealed(user.password_hash, 'password_hash')))) {
      this.throttle.fail(throttleKeys);
      throw new DomainError('invalid_credentials', 'the password is wrong');
    }
  }

  async logout(context: RequestContext): Promise<void> {
    const principal = context.principal;
    if (principal.kind !== 'user' || principal.sessionId === null) {
      throw new DomainError('validation_failed', 'only a session can log out; API keys stay valid', [{ path: 'authorization', message: 'not a session token' }]);
    }
    await handle(this.services, userDecider, streams.user(principal.userId), { type: 'end_session', data: { session_id: principal.sessionId } }, context);
  }

  /** Resolves any credential to its principal, or null when it is unknown, expired or revoked. */
  async authenticate(token: string): Promise<Principal | null> {
    const identified = await this.identify(token);
    return 'principal' in identified ? identified.principal : null;
  }

  /** Who a credential speaks for, or why it speaks for no one. */
  async identify(token: string): Promise<{ principal: Principal } | { refused: CredentialRefusal }> {
    const { sql, clock } = this.services;
    switch (credentialKind(token)) {
      case 'session': {
        const verified = await this.tokens.verify(token, clock.now());
        if ('refused' in verified) return verified;
        const { claims } = verified;
        // Signed by this server, so the session existed: ended, or its user gone, it was revoked.
        const session = findSession(sql, claims.sessionId);
        const user = session && !session.ended_at && session.user_id === claims.userId ? findUserById(sql, claims.userId) : undefined;
        return user && !user.disabled ? { principal: { kind: 'user', userId: user.id, role: user.role, sessionId: claims.sessionId } } : { refused: 'revoked' };
      }
      case 'api_key': {
        const key = this.keys.resolve(token);
        const user = key && findUserById(sql, key.user_id);
        if (key && user) return { principal: { kind: 'user', userId: user.id, role: user.role, sessionId: null, apiKey: { id: key.id, scope: key.scope } } };
        return this.deviceFor(token);
      }
      case 'device_token':
        return this.deviceFor(token);
    }
  }

  /**
   * A device by the client certificate of its connection (mutual TLS): only a certificate that
   * chains to TLS_CLIENT_CA, is within its validity, and is bound to a device speaks for it.
   */
  authenticateCertificate(certificate: ClientCertificate): { principal: Principal } | { refused: string } {
    if (!certificate.authorized) return { refused: HANDSHAKE_REFUSALS[certificate.problem ?? ''] ?? 'it is not signed by the trusted CA' };
    // The handshake checked the validity when the connection opened; a kept-alive one may outlive it.
    if (certificate.validTo <= this.services.clock.now().toISOString()) return { refused: HANDSHAKE_REFUSALS.CERT_HAS_EXPIRED! };
    const device = findDeviceByCertificate(this.services.sql, certificate.fingerprint);
    if (!device) return { refused: 'it is bound to no device' };
    return { principal: { kind: 'device', deviceId: device.id, userId: device.user_id, certificate: { fingerprint: certificate.fingerprint, expiresAt: certificate.validTo } } };
  }

  me(principal: Principal): UserRow {
    const user = findUserById(this.services.sql, principal.userId);
    if (!user) throw notFound('user');
    return user;
  }

  private deviceFor(token: string): { principal: Principal } | { refused: CredentialRefusal } {
    const device = findDeviceByTokenHash(this.services.sql, credentialDigests(this.services.secrets, token));
    return device ? { principal: { kind: 'device', deviceId: device.id, userId: device.user_id } } : { refused: 'invalid' };
  }

  private newSession(userId: string) {
    const now = this.services.clock.now();
    const expiresAt = new Date(now.getTime() + this.services.config.sessionTtlSeconds * 1000);
    const command = {
      type: 'start_session',
      data: { session_id: this.services.newId(), user_id: userId, expires_at: expiresAt.toISOString() },
    } as const satisfies UserCommand;
    return { command, expiresAt };
  }

  private async sessionAnswer(userId: string, sessionId: string, expiresAt: Date): Promise<Session> {
    const user = findUserById(this.services.sql, userId);
    if (!user) throw notFound('user');
    const token = await this.tokens.sign({ sessionId, userId }, this.services.clock.now(), expiresAt);
    return { user, token, expires_at: expiresAt.toISOString() };
  }
}

/** Failed password checks count per account and per client address. */
const passwordThrottleKeys = (account: string, clientAddress: string) => [
  { key: `account:${account}`, limit: LOGIN_FAILURE_LIMITS.account },
  { key: `address:${clientAddress}`, limit: LOGIN_FAILURE_LIMITS.address },
];

export const permissionsFor = (role: 'admin' | 'user'): string[] => {
  const base = ['devices:read', 'devices:write', 'telemetry:read', 'telemetry:write', 'commands:write', 'groups:write', 'rules:write', 'events:read'];
  return role === 'admin' ? [...base, 'admin', 'users:read', 'events:verify', 'devices:read:all'] : base;
};

/** What a member's role on a group lets them do there (and in its subgroups); rules are not shared yet. */
export const memberPermissions = (role: MemberRole): string[] => {
  const viewer = ['devices:read', 'telemetry:read', 'groups:read', 'members:read'];
  const operator = [...viewer, 'commands:write'];
  return role === 'viewer' ? viewer : role === 'operator' ? operator : [...operator, 'devices:write', 'groups:write'];
};
