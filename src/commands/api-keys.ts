import { notFound } from '../domain/errors.js';
import { streams, type ApiKeyScope } from '../domain/events.js';
import { userDecider } from '../domain/user.js';
import { findApiKey, findApiKeyByHash, findUserById, listApiKeys, type ApiKeyRow } from '../projections/users.js';
import { credentialDigests, generateApiKey, sealedDigest } from './credentials.js';
import { handle } from './handle.js';
import type { Principal, RequestContext, Services } from './services.js';

/** How often a key's last use is written: each use would be a write on every request. */
const USAGE_RESOLUTION_MS = 60_000;

export interface NewApiKey {
  name: string;
  scope: ApiKeyScope;
  /** Seconds from now; null: it never expires. */
  expires_in: number | null;
}

export type ApiKeyStatus = 'active' | 'expired' | 'revoked';
export type ApiKeyView = ApiKeyRow & { last_used_at: string | null; status: ApiKeyStatus };

/**
 * A user's API keys: made, listed, rotated and revoked as events of the user's stream. When a
 * key was last used is not a fact worth an event per request: it is kept beside the read models
 * (api_key_usage), written at most once a minute per key.
 */
export class ApiKeys {
  private readonly lastWritten = new Map<string, number>();

  constructor(private readonly services: Services) {
    services.sql.db.exec('CREATE TABLE IF NOT EXISTS api_key_usage (key_id TEXT PRIMARY KEY, last_used_at TEXT NOT NULL)');
  }

  async create(input: NewApiKey, context: RequestContext): Promise<{ key: ApiKeyView; secret: string }> {
    const userId = context.principal.userId;
    const { command, secret, keyId } = this.newKey(input);
    await handle(this.services, userDecider, streams.user(userId), { type: 'create_api_key', data: command }, context);
    return { key: this.view(keyId), secret };
  }

  /** A new key with the old one's name and scope; the old one works until the grace ends. */
  async rotate(keyId: string, input: { grace_seconds: number; expires_in: number | null }, context: RequestContext): Promise<{ key: ApiKeyView; secret: string }> {
    const old = this.ownKey(keyId, context.principal);
    const now = this.services.clock.now();
    const { command, secret, keyId: newId } = this.newKey({ name: old.name, scope: old.scope, expires_in: input.expires_in });
    const validUntil = new Date(now.getTime() + input.grace_seconds * 1000).toISOString();
    await handle(this.services, userDecider, streams.user(old.user_id), { type: 'rotate_api_key', data: { key_id: keyId, replacement: command, valid_until: validUntil, now: now.toISOString() } }, context);
    return { key: this.view(newId), secret };
  }

  async revoke(keyId: string, context: RequestContext): Promise<void> {
    const key = this.ownKey(keyId, context.principal);
    await handle(this.services, userDecider, streams.user(key.user_id), { type: 'revoke_api_key', data: { key_id: keyId } }, context);
  }

  list(userId: string): ApiKeyView[] {
    return listApiKeys(this.services.sql, userId).map((row) => this.withUsage(row));
  }

  /** The key a credential is, if it is valid now; its use is noted. */
  resolve(credential: string): ApiKeyRow | null {
    const key = findApiKeyByHash(this.services.sql, credentialDigests(this.services.secrets, credential));
    if (!key || this.statusOf(key) !== 'active') return null;
    const user = findUserById(this.services.sql, key.user_id);
    if (!user || user.disabled) return null;
    this.noteUse(key.id);
    return key;
  }

  private newKey(input: NewApiKey) {
    const secret = generateApiKey();
    const keyId = this.services.newId();
    const expiresAt = input.expires_in === null ? null : new Date(this.services.clock.now().getTime() + input.expires_in * 1000).toISOString();
    const command = { key_id: keyId, name: input.name, scope: input.scope, key_hash: sealedDigest(this.services.secrets, secret, 'key_hash'), expires_at: expiresAt };
    return { command, secret, keyId };
  }

  /** Another user's key does not exist, for anyone but the user (admins included: keys are personal). */
  private ownKey(keyId: string, principal: Principal): ApiKeyRow {
    const key = findApiKey(this.services.sql, keyId);
    if (!key || key.user_id !== principal.userId) throw notFound('API key');
    return key;
  }

  private view(keyId: string): ApiKeyView {
    const key = findApiKey(this.services.sql, keyId);
    if (!key) throw notFound('API key');
    return this.withUsage(key);
  }

  private withUsage(key: ApiKeyRow): ApiKeyView {
    const usage = this.services.sql.db.prepare<[string], { last_used_at: string }>('SELECT last_used_at FROM api_key_usage WHERE key_id = ?').get(key.id);
    return { ...key, last_used_at: usage?.last_used_at ?? null, status: this.statusOf(key) };
  }

  private statusOf(key: ApiKeyRow): ApiKeyStatus {
    if (key.revoked_at !== null) return 'revoked';
    return key.expires_at !== null && key.expires_at <= this.services.clock.now().toISOString() ? 'expired' : 'active';
  }

  private noteUse(keyId: string): void {
    const now = this.services.clock.now();
    const last = this.lastWritten.get(keyId);
    if (last !== undefined && now.getTime() - last < USAGE_RESOLUTION_MS) return;
    this.lastWritten.set(keyId, now.getTime());
    this.services.sql.db
      .prepare('INSERT INTO api_key_usage (key_id, last_used_at) VALUES (?, ?) ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at')
      .run(keyId, now.toISOString());
  }
}
