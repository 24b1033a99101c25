import { fold } from '../domain/decider.js';
import { deviceDecider, type DeviceChanges, type DeviceCommand } from '../domain/device.js';
import { DomainError, invalid, notFound } from '../domain/errors.js';
import { displayedStatus } from '../domain/device-status.js';
import { streams, type DeviceAttributes, type MemberRole, type RecordedEvent } from '../domain/events.js';
import { countUserDevices, findDevice, findDeviceByCertificate, findDeviceByMac, findDeviceByTokenHash, type DeviceRow } from '../projections/devices.js';
import { findGroup, memberRole, roleAtLeast } from '../projections/groups.js';
import { findUserById, findUserByLogin } from '../projections/users.js';
import { credentialDigests, generateDeviceToken, sealedDigest } from './credentials.js';
import { DEFAULT_TIMEOUT_SECONDS, type DeviceCommands } from './device-commands.js';
import { handle, type IfMatch } from './handle.js';
import { KeyedLock } from './keyed-lock.js';
import { isAdmin, mayAccess, readModelsCaughtUp, type Principal, type RequestContext, type Services } from './services.js';

export interface RegisterDeviceInput extends Omit<DeviceAttributes, 'group_id'> {
  group_id: string | null;
  auth_token: string | null;
  /** A client certificate bound from the start (normalized SHA-256). */
  certificate_fingerprint?: string | null;
}

/** What a call does with a device: a member's role on its group must reach it; `own` only the owner (or an admin). */
export type DeviceNeed = MemberRole | 'own';

/**
 * A device as its owner, an admin, the device itself, or a member of a group it is in (with a
 * role reaching `need`) may use it. A user with no right on it gets 404 (no existence leak); a
 * member whose role falls short, or a device token on another device, gets 403.
 */
export function visibleDevice(services: Services, principal: Principal, deviceId: string, need: DeviceNeed = 'own'): DeviceRow {
  if (principal.kind === 'device' && principal.deviceId !== deviceId) throw new DomainError('forbidden', 'a device token speaks only for its own device');
  const device = findDevice(services.sql, deviceId);
  if (!device) throw notFound('device');
  if (principal.kind === 'device' || mayAccess(principal, device.user_id)) return device;
  const role = device.group_id === null ? null : memberRole(services.sql, principal.userId, device.group_id);
  if (role === null) throw notFound('device');
  if (need === 'own' || !roleAtLeast(role, need)) throw new DomainError('forbidden', `your role on this device's group (${role}) does not allow this`);
  return device;
}

export class Devices {
  private readonly lock = new KeyedLock();

  constructor(
    readonly services: Services,
    private readonly commands: DeviceCommands,
  ) {}

  async register(input: RegisterDeviceInput, context: RequestContext): Promise<{ device: DeviceRow; token: string }> {
    const ownerId = requireUser(context.principal);
    // One key for the whole registry: MACs and tokens are unique across users, quotas per user.
    return this.lock.run('registry', async () => {
      await readModelsCaughtUp(this.services);
      if (input.mac_address && findDeviceByMac(this.services.sql, input.mac_address)) {
        throw new DomainError('already_exists', 'a device with this MAC address exists', [{ path: 'mac_address', message: 'already registered' }]);
      }
      return this.registerNow(input, ownerId, context);
    });
  }

  /** Registers under the registry lock, after the caller's own uniqueness checks. */
  private async registerNow(input: RegisterDeviceInput, ownerId: string, context: RequestContext): Promise<{ device: DeviceRow; token: string }> {
    const { sql, newId } = this.services;
    const token = input.auth_token ?? generateDeviceToken();
    this.checkQuota(ownerId);
    if (findDeviceByTokenHash(sql, credentialDigests(this.services.secrets, token))) throw invalid('auth_token', 'choose another auth_token');
    this.checkGroup(input.group_id, ownerId);
    const { auth_token: _token, certificate_fingerprint = null, ...attributes } = input;
    this.checkCertificateFree(certificate_fingerprint, null, 'certificate_fingerprint');
    const deviceId = newId();
    await handle(
      this.services,
      deviceDecider,
      streams.device(deviceId),
      { type: 'register_device', data: { ...attributes, device_id: deviceId, user_id: ownerId, token_hash: sealedDigest(this.services.secrets, token, 'token_hash') }, certificate_fingerprint },
      context,
    );
    return { device: findDevice(sql, deviceId)!, token };
  }

  /**
   * Provisioning by hardware id: the first call registers the device; a later one hands out a
   * fresh token only with the device's current token or its owner's approval (the owner signed
   * in, not a provisioning key alone), or anyone holding the key could evict a device. One
   * registry lock, so concurrent calls make one device.
   */
  async provision(input: RegisterDeviceInput & { mac_address: string; current_token: string | null }, context: RequestContext): Promise<{ device: DeviceRow; token: string; created: boolean }> {
    const ownerId = requireUser(context.principal);
    const { current_token: currentToken, ...registration } = input;
    return this.lock.run('registry', async () => {
      await readModelsCaughtUp(this.services);
      const existing = findDeviceByMac(this.services.sql, input.mac_address);
      if (!existing) return { ...(await this.registerNow(registration, ownerId, context)), created: true };
      if (existing.user_id !== ownerId) {
        throw new DomainError('already_exists', 'a device with this MAC address exists', [{ path: 'mac_address', message: 'already registered' }]);
      }
      const holdsToken = currentToken !== null && findDeviceByTokenHash(this.services.sql, credentialDigests(this.services.secrets, currentToken))?.id === existing.id;
      const ownerApproves = context.principal.kind === 'user' && context.principal.sessionId !== null;
      if (!holdsToken && !ownerApproves) {
        const message = currentToken === null
          ? "this MAC address is already registered; provisioning it again replaces the device's token, which needs its current token (current_token) or its owner signed in"
          : "current_token is not this device's token; provisioning it again needs its current token or its owner signed in";
        throw new DomainError('already_exists', message, [{ path: currentToken === null ? 'mac_address' : 'current_token', message: 'already registered' }]);
      }
      const token = generateDeviceToken();
      await handle(this.services, deviceDecider, streams.device(existing.id), { type: 'rotate_token', data: { token_hash: sealedDigest(this.services.secrets, token, 'token_hash') } }, context);
      return { device: findDevice(this.services.sql, existing.id)!, token, created: false };
    });
  }

  /** By its owner, an admin, or a manager of a group it is in (who may move it only among the owner's groups). */
  async update(deviceId: string, changes: DeviceChanges, context: RequestContext, ifMatch?: IfMatch): Promise<DeviceRow> {
    const device = visibleDevice(this.services, context.principal, deviceId, 'manager');
    const apply = () =>
      this.services.locks.devices.run(deviceId, async () => {
        if (changes.group_id) this.checkGroup(changes.group_id, device.user_id);
        const handled = await handle(this.services, deviceDecider, streams.device(deviceId), { type: 'update_device', data: { changes } }, context, {
          ...(ifMatch !== undefined ? { ifMatch } : {}),
        });
        return handled.events;
      });
    // Joining a group holds the owner's group lock, so the group cannot be deleted in between.
    const events = await (changes.group_id ? this.services.locks.owners.run(groupLockKey(device.user_id), apply) : apply());
    const pushed = events.find((e) => e.type === 'device.updated' && e.data.changes.configuration !== undefined);
    if (pushed?.type === 'device.updated') await this.pushConfiguration(device, pushed.data.changes.configuration!, context);
    return findDevice(this.services.sql, deviceId) ?? device;
  }

  /** The owner (or an admin) offers the device to another user, named by id or username. */
  async offerTransfer(deviceId: string, to: { user_id?: string | undefined; username?: string | undefined }, context: RequestContext): Promise<string> {
    visibleDevice(this.services, context.principal, deviceId);
    const receiver = to.user_id !== undefined ? findUserById(this.services.sql, to.user_id) : findUserByLogin(this.services.sql, to.username ?? '');
    if (!receiver || receiver.erased) throw invalid(to.user_id !== undefined ? 'user_id' : 'username', 'no such user');
    await this.services.locks.devices.run(deviceId, () => handle(this.services, deviceDecider, streams.device(deviceId), { type: 'offer_transfer', data: { to_user_id: receiver.id } }, context));
    return receiver.id;
  }

  /** The receiver takes the device, within their quota; to anyone else it does not exist. */
  async acceptTransfer(deviceId: string, context: RequestContext): Promise<DeviceRow> {
    const receiverId = requireUser(context.principal);
    const state = fold(deviceDecider, await this.services.log.readStream(streams.device(deviceId)));
    // Checked before the quota: nobody else may learn from a quota error that the device exists.
    if (state.status !== 'active' || state.offered_to !== receiverId) throw notFound('device');
    return this.lock.run('registry', async () => {
      await readModelsCaughtUp(this.services);
      this.checkQuota(receiverId);
      await this.services.locks.devices.run(deviceId, () => handle(this.services, deviceDecider, streams.device(deviceId), { type: 'accept_transfer', data: { user_id: receiverId } }, context));
      return findDevice(this.services.sql, deviceId)!;
    });
  }

  /** Holds the device's lock as queueing does, then cancels what was queued before it took it. */
  async decommission(deviceId: string, context: RequestContext, ifMatch?: IfMatch): Promise<void> {
    visibleDevice(this.services, context.principal, deviceId);
    await this.onDevice(deviceId, { type: 'decommission_device' }, context, ifMatch);
    await this.commands.cancelAllOf(deviceId, context);
  }

  /**
   * Lets a client certificate (by fingerprint) speak for the device under mutual TLS; one bound
   * before is retired. Under the registry lock, as a certificate speaks for one device only.
   */
  async bindCertificate(deviceId: string, fingerprint: string, context: RequestContext, ifMatch?: IfMatch): Promise<DeviceRow> {
    visibleDevice(this.services, context.principal, deviceId);
    await this.lock.run('registry', async () => {
      await readModelsCaughtUp(this.services);
      this.checkCertificateFree(fingerprint, deviceId, 'fingerprint');
      await this.onDevice(deviceId, { type: 'bind_certificate', data: { fingerprint } }, context, ifMatch);
    });
    return visibleDevice(this.services, context.principal, deviceId);
  }

  /** The device's certificate stops working at once; its open connections are cut (see DeviceChannel). */
  async unbindCertificate(deviceId: string, context: RequestContext, ifMatch?: IfMatch): Promise<DeviceRow> {
    visibleDevice(this.services, context.principal, deviceId);
    await this.onDevice(deviceId, { type: 'unbind_certificate' }, context, ifMatch);
    return visibleDevice(this.services, context.principal, deviceId);
  }

  private onDevice(deviceId: string, command: DeviceCommand, context: RequestContext, ifMatch: IfMatch | undefined) {
    return this.services.locks.devices.run(deviceId, () =>
      handle(this.services, deviceDecider, streams.device(deviceId), command, context, { ...(ifMatch !== undefined ? { ifMatch } : {}) }),
    );
  }

  private checkCertificateFree(fingerprint: string | null, deviceId: string | null, path: string): void {
    const holder = fingerprint === null ? undefined : findDeviceByCertificate(this.services.sql, fingerprint);
    if (holder && holder.id !== deviceId) throw new DomainError('already_exists', 'this certificate is bound to another device', [{ path, message: 'already bound' }]);
  }

  /** A changed configuration goes to the device as a queued update_configuration command. */
  private async pushConfiguration(device: DeviceRow, configuration: Record<string, unknown>, context: RequestContext): Promise<void> {
    await this.commands.queueFor(device.id, device.user_id, { command_type: 'update_configuration', parameters: { configuration }, priority: 'high', expires_in: null, timeout_seconds: DEFAULT_TIMEOUT_SECONDS, retries: 0, batch_id: null }, context);
  }

  private checkQuota(userId: string): void {
    const user = findUserById(this.services.sql, userId);
    if (!user) throw notFound('user');
    const owned = countUserDevices(this.services.sql, userId);
    if (owned >= user.device_quota) {
      throw new DomainError('quota_exceeded', `device quota of ${user.device_quota} reached`);
    }
  }

  private checkGroup(groupId: string | null | undefined, ownerId: string): void {
    if (!groupId) return;
    const group = findGroup(this.services.sql, groupId);
    if (!group || group.user_id !== ownerId) throw invalid('group_id', 'no such group');
  }
}

export const groupLockKey = (userId: string): string => `groups:${userId}`;

export function requireUser(principal: Principal): string {
  if (principal.kind !== 'user') throw new DomainError('forbidden', 'a device token cannot do this');
  return principal.userId;
}

/** Heard from last: its last reading or heartbeat, or its coming online (a connect alone is one). */
const lastHeard = (...times: Array<string | undefined>): string | null => times.filter((t): t is string => t !== undefined).sort().pop() ?? null;

/** The firmware an event sets, as the devices read model applies it (undefined: it sets none). */
function firmwareSetBy(event: RecordedEvent): string | null | undefined {
  switch (event.type) {
    case 'device.registered':
      return event.data.firmware_version;
    case 'device.updated':
      return event.data.changes.firmware_version;
    case 'device.heartbeat':
      return event.data.firmware_version ?? undefined;
    case 'device.firmware_progress':
      return event.data.status === 'done' ? event.data.version : undefined;
    default:
      return undefined;
  }
}

/** The firmware a device ran at `until`: whichever of its registration, an update, a heartbeat or a finished install set it last. */
async function firmwareAsOf(services: Services, telemetry: string, until: string, deviceEvents: readonly RecordedEvent[]): Promise<string | null | undefined> {
  const setters = [
    deviceEvents.filter((e) => firmwareSetBy(e) !== undefined).pop(),
    await services.log.lastInStream(telemetry, until, { types: ['device.heartbeat'], field: 'firmware_version' }),
    await services.log.lastInStream(telemetry, until, { types: ['device.firmware_progress'], field: 'status', equals: 'done' }),
  ].filter((event): event is RecordedEvent => event !== undefined && event !== null);
  const last = setters.sort((a, b) => a.position - b.position).pop();
  return last ? firmwareSetBy(last) : undefined;
}

/**
 * What the device reported of its configuration and firmware update as of a moment, as the
 * read model held them then: the last configuration report and firmware progress before it.
 */
export async function reportedStateAsOf(services: Services, deviceId: string, asOf: Date) {
  const until = asOf.toISOString();
  const telemetry = streams.telemetry(deviceId);
  const configured = await services.log.lastInStream(telemetry, until, { types: ['device.configuration_reported'], field: 'configuration' });
  const progress = await services.log.lastInStream(telemetry, until, { types: ['device.firmware_progress'], field: 'status' });
  return {
    reported_configuration: configured?.type === 'device.configuration_reported' ? configured.data.configuration : null,
    firmware:
      progress?.type === 'device.firmware_progress'
        ? { target_version: progress.data.version, status: progress.data.status, detail: progress.data.detail ?? null, updated_at: progress.recorded_at }
        : null,
  };
}

/** A deleted group ungroups its devices without an event of theirs: the group's stream says when. */
async function groupAsOf(services: Services, groupId: string | null, until: string): Promise<string | null> {
  if (groupId === null) return null;
  const last = await services.log.lastInStream(streams.group(groupId), until);
  return last?.type === 'group.deleted' ? null : groupId;
}

/**
 * The device as it was at `asOf`, folded from its own events (last_seen from its last
 * reading or heartbeat then); also for a device deleted since, to its owner and admins.
 */
export async function deviceAsOf(services: Services, principal: Principal, deviceId: string, asOf: Date) {
  const until = asOf.toISOString();
  const events = await services.log.readStream(streams.device(deviceId), { until });
  const state = fold(deviceDecider, events);
  if (principal.kind === 'device' && principal.deviceId !== deviceId) throw new DomainError('forbidden', 'a device token speaks only for its own device');
  const visible = state.status !== 'none' && (principal.kind === 'device' || isAdmin(principal) || state.user_id === principal.userId);
  if (!visible || state.status === 'decommissioned') throw notFound('device');
  const first = events[0]!;
  const last = events[events.length - 1]!;
  const connectivity = events.filter((e) => e.type === 'device.came_online' || e.type === 'device.went_offline').pop();
  const telemetry = streams.telemetry(deviceId);
  const heard = await services.log.lastInStream(telemetry, until);
  // As the read models keep them: the last status reported, and the firmware last set in either stream.
  const statusReport = await services.log.lastInStream(telemetry, until, { types: ['readings.recorded', 'device.heartbeat'], field: 'device_status' });
  const reported = statusReport?.type === 'readings.recorded' || statusReport?.type === 'device.heartbeat' ? statusReport.data.device_status : null;
  const firmware = await firmwareAsOf(services, telemetry, until, events);
  const online = connectivity?.type === 'device.came_online' ? 'online' : 'offline';
  const stated = events.filter((e) => e.type === 'device.state_reported').pop();
  return {
    id: state.device_id,
    user_id: state.user_id,
    ...state.attributes,
    group_id: await groupAsOf(services, state.attributes.group_id, until),
    firmware_version: firmware ?? state.attributes.firmware_version,
    status: displayedStatus(online, stated?.type === 'device.state_reported' ? stated.data.state : null),
    connectivity: online,
    last_seen: lastHeard(heard?.recorded_at, events.filter((e) => e.type === 'device.came_online').pop()?.recorded_at),
    certificate_fingerprint: state.certificate,
    created_at: first.recorded_at,
    updated_at: last.recorded_at,
    version: last.version,
    reported_status: reported,
  };
}
