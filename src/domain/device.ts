import { changedFields, type Decider } from './decider.js';
import { DomainError, invalid, notFound } from './errors.js';
import type { DeviceAttributes, EventOfType } from './events.js';

export type DeviceEvent = EventOfType<'device.registered' | 'device.updated' | 'device.decommissioned' | 'device.token_rotated' | 'device.certificate_bound' | 'device.certificate_unbound' | 'device.transfer_offered' | 'device.transferred'>;
export type DeviceChanges = EventOfType<'device.updated'>['data']['changes'];

export type DeviceCommand =
  | { type: 'register_device'; data: EventOfType<'device.registered'>['data']; certificate_fingerprint?: string | null }
  | { type: 'update_device'; data: { changes: DeviceChanges } }
  | { type: 'decommission_device' }
  | { type: 'rotate_token'; data: { token_hash: string } }
  | { type: 'bind_certificate'; data: { fingerprint: string } }
  | { type: 'unbind_certificate' }
  | { type: 'offer_transfer'; data: { to_user_id: string } }
  | { type: 'accept_transfer'; data: { user_id: string } };

export type DeviceState =
  | { status: 'none' }
  | { status: 'active' | 'decommissioned'; device_id: string; user_id: string; attributes: DeviceAttributes; certificate: string | null; offered_to?: string | null };

export const deviceDecider: Decider<DeviceCommand, DeviceState, DeviceEvent> = {
  eventTypes: new Set(['device.registered', 'device.updated', 'device.decommissioned', 'device.token_rotated', 'device.certificate_bound', 'device.certificate_unbound', 'device.transfer_offered', 'device.transferred']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'device.registered': {
        const { device_id, user_id, token_hash: _secret, ...attributes } = event.data;
        return { status: 'active', device_id, user_id, attributes, certificate: null };
      }
      case 'device.updated':
        if (state.status === 'none') return state;
        return { ...state, attributes: { ...state.attributes, ...event.data.changes } };
      case 'device.decommissioned':
        if (state.status === 'none') return state;
        return { ...state, status: 'decommissioned' };
      case 'device.token_rotated':
        return state;
      case 'device.certificate_bound':
        return state.status === 'none' ? state : { ...state, certificate: event.data.fingerprint };
      case 'device.certificate_unbound':
        return state.status === 'none' ? state : { ...state, certificate: null };
      case 'device.transfer_offered':
        if (state.status === 'none') return state;
        return { ...state, offered_to: event.data.to_user_id };
      case 'device.transferred':
        if (state.status === 'none') return state;
        return { ...state, user_id: event.data.to_user_id, offered_to: null, attributes: { ...state.attributes, group_id: null } };
    }
  },

  decide(command, state) {
    if (command.type === 'register_device') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'device already exists');
      const fingerprint = command.certificate_fingerprint;
      return [{ type: 'device.registered', data: command.data }, ...(fingerprint ? [bound(command.data.device_id, fingerprint)] : [])];
    }
    if (state.status !== 'active') throw notFound('device');
    switch (command.type) {
      case 'update_device': {
        const changes: DeviceChanges = changedFields(state.attributes, command.data.changes);
        if (Object.keys(changes).length === 0) return [];
        return [{ type: 'device.updated', data: { device_id: state.device_id, changes } }];
      }
      case 'decommission_device':
        return [{ type: 'device.decommissioned', data: { device_id: state.device_id, user_id: state.user_id } }];
      case 'rotate_token':
        return [{ type: 'device.token_rotated', data: { device_id: state.device_id, token_hash: command.data.token_hash } }];
      case 'bind_certificate':
        if (state.certificate === command.data.fingerprint) return [];
        // One certificate per device: binding a renewed one retires the old one (and its connections).
        return [...unbound(state), bound(state.device_id, command.data.fingerprint)];
      case 'unbind_certificate':
        if (state.certificate === null) throw notFound('certificate');
        return unbound(state);
      case 'offer_transfer':
        if (command.data.to_user_id === state.user_id) throw invalid('user_id', 'the device already belongs to this user');
        if (state.offered_to === command.data.to_user_id) return [];
        return [{ type: 'device.transfer_offered', data: { device_id: state.device_id, from_user_id: state.user_id, to_user_id: command.data.to_user_id } }];
      case 'accept_transfer':
        // Anyone but the user it was offered to: as if there were no such device.
        if (state.offered_to !== command.data.user_id) throw notFound('device');
        return [{ type: 'device.transferred', data: { device_id: state.device_id, from_user_id: state.user_id, to_user_id: command.data.user_id } }];
    }
  },
};

const bound = (device_id: string, fingerprint: string): DeviceEvent => ({ type: 'device.certificate_bound', data: { device_id, fingerprint } });

function unbound(state: Exclude<DeviceState, { status: 'none' }>): DeviceEvent[] {
  return state.certificate === null ? [] : [{ type: 'device.certificate_unbound', data: { device_id: state.device_id, fingerprint: state.certificate } }];
}
