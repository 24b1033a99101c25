import { describe, expect, it } from 'vitest';
import { fold } from '../../src/domain/decider.js';
import { deviceDecider } from '../../src/domain/device.js';
import type { DomainEvent, EventOfType } from '../../src/domain/events.js';
import { spec } from '../helpers/decider-spec.js';

const device = spec(deviceDecider);

const registration: EventOfType<'device.registered'>['data'] = {
  device_id: 'd1',
  user_id: 'u1',
  token_hash: 'token-hash',
  name: 'Thermostat',
  device_type: 'sensor',
  description: null,
  ip_address: '10.0.0.5',
  mac_address: 'AA:BB:CC:DD:EE:FF',
  group_id: null,
  configuration: { interval: 60, unit: 'C' },
  firmware_version: '1.0.0',
};
const registered: EventOfType<'device.registered'> = { type: 'device.registered', data: registration };
const decommissioned: EventOfType<'device.decommissioned'> = { type: 'device.decommissioned', data: { device_id: 'd1', user_id: 'u1' } };
const updated = (changes: EventOfType<'device.updated'>['data']['changes']): EventOfType<'device.updated'> => ({
  type: 'device.updated',
  data: { device_id: 'd1', changes },
});
const foreign: DomainEvent[] = [
  { type: 'session.started', data: { session_id: 's1', user_id: 'u1', expires_at: '2026-03-08T12:00:00.000Z' } },
  { type: 'group.deleted', data: { group_id: 'g1', user_id: 'u1' } },
];

describe('device decider: register_device', () => {
  it('registers a new device', () => {
    device.given([]).when({ type: 'register_device', data: registration }).then([registered]);
  });

  it('refuses to register over an active device', () => {
    device.given([registered]).when({ type: 'register_device', data: registration }).thenThrows('already_exists');
  });

  it('refuses to register over a decommissioned device (ids are never reused)', () => {
    device.given([registered, decommissioned]).when({ type: 'register_device', data: registration }).thenThrows('already_exists');
  });
});

describe('device decider: update_device', () => {
  it('records only the fields that change', () => {
    device
      .given([registered])
      .when({ type: 'update_device', data: { changes: { name: 'Kitchen', device_type: 'sensor', firmware_version: '1.0.1' } } })
      .then([updated({ name: 'Kitchen', firmware_version: '1.0.1' })]);
  });

  it('records a change from null to a value and from a value to null', () => {
    device
      .given([registered])
      .when({ type: 'update_device', data: { changes: { description: 'on the wall', ip_address: null } } })
      .then([updated({ description: 'on the wall', ip_address: null })]);
  });

  it('compares configuration by value, not by reference', () => {
    device.given([registered]).when({ type: 'update_device', data: { changes: { configuration: { interval: 60, unit: 'C' } } } }).thenNothing();
    device
      .given([registered])
      .when({ type: 'update_device', data: { changes: { configuration: { interval: 30, unit: 'C' } } } })
      .then([updated({ configuration: { interval: 30, unit: 'C' } })]);
  });

  it('decides nothing when every field already has that value', () => {
    device.given([registered]).when({ type: 'update_device', data: { changes: { name: 'Thermostat', group_id: null, ip_address: '10.0.0.5' } } }).thenNothing();
  });

  it('decides nothing for an empty change set or undefined values', () => {
    device.given([registered]).when({ type: 'update_device', data: { changes: {} } }).thenNothing();
    device.given([registered]).when({ type: 'update_device', data: { changes: { name: undefined } } }).thenNothing();
  });

  it('compares against the state after earlier updates', () => {
    device.given([registered, updated({ name: 'Kitchen' })]).when({ type: 'update_device', data: { changes: { name: 'Kitchen' } } }).thenNothing();
    device
      .given([registered, updated({ name: 'Kitchen' })])
      .when({ type: 'update_device', data: { changes: { name: 'Thermostat' } } })
      .then([updated({ name: 'Thermostat' })]);
  });

  it('refuses to update an unknown device', () => {
    device.given([]).when({ type: 'update_device', data: { changes: { name: 'x' } } }).thenThrows('not_found');
  });

  it('refuses to update a decommissioned device', () => {
    device.given([registered, decommissioned]).when({ type: 'update_device', data: { changes: { name: 'x' } } }).thenThrows('not_found');
  });

  it('skips events of other types in the stream', () => {
    device.given([foreign[0]!, registered, foreign[1]!]).when({ type: 'update_device', data: { changes: { name: 'Hall' } } }).then([updated({ name: 'Hall' })]);
  });
});

describe('device decider: decommission_device', () => {
  it('decommissions an active device, naming its owner', () => {
    device.given([registered]).when({ type: 'decommission_device' }).then([decommissioned]);
  });

  it('refuses an unknown device', () => {
    device.given([]).when({ type: 'decommission_device' }).thenThrows('not_found');
  });

  it('refuses a device decommissioned already', () => {
    device.given([registered, decommissioned]).when({ type: 'decommission_device' }).thenThrows('not_found');
  });

  it('refuses when the stream holds only events of other types', () => {
    device.given(foreign).when({ type: 'decommission_device' }).thenThrows('not_found');
  });
});

describe('device decider: fold', () => {
  it('keeps the attributes without the token hash and applies updates in order', () => {
    const state = fold(deviceDecider, [...foreign, registered, updated({ name: 'A' }), updated({ name: 'B', group_id: 'g2' })]);
    expect(state).toEqual({
      status: 'active',
      device_id: 'd1',
      user_id: 'u1',
      attributes: {
        name: 'B',
        device_type: 'sensor',
        description: null,
        ip_address: '10.0.0.5',
        mac_address: 'AA:BB:CC:DD:EE:FF',
        group_id: 'g2',
        configuration: { interval: 60, unit: 'C' },
        firmware_version: '1.0.0',
      },
      certificate: null,
    });
  });

  it('ignores updates and decommissions before registration', () => {
    expect(fold(deviceDecider, [updated({ name: 'A' }), decommissioned])).toEqual({ status: 'none' });
  });

  it('marks the device decommissioned', () => {
    expect(fold(deviceDecider, [registered, decommissioned]).status).toBe('decommissioned');
  });
});

const FP_A = 'a'.repeat(64);
const FP_B = 'b'.repeat(64);
const bound = (fingerprint: string): EventOfType<'device.certificate_bound'> => ({ type: 'device.certificate_bound', data: { device_id: 'd1', fingerprint } });
const unbound = (fingerprint: string): EventOfType<'device.certificate_unbound'> => ({ type: 'device.certificate_unbound', data: { device_id: 'd1', fingerprint } });

describe('device decider: client certificates', () => {
  it('binds a certificate at registration', () => {
    device.given([]).when({ type: 'register_device', data: registration, certificate_fingerprint: FP_A }).then([registered, bound(FP_A)]);
  });

  it('binds a certificate to a registered device', () => {
    device.given([registered]).when({ type: 'bind_certificate', data: { fingerprint: FP_A } }).then([bound(FP_A)]);
  });

  it('does nothing when the same certificate is bound again', () => {
    device.given([registered, bound(FP_A)]).when({ type: 'bind_certificate', data: { fingerprint: FP_A } }).then([]);
  });

  it('retires the old certificate when another is bound (one per device)', () => {
    device.given([registered, bound(FP_A)]).when({ type: 'bind_certificate', data: { fingerprint: FP_B } }).then([unbound(FP_A), bound(FP_B)]);
  });

  it('unbinds the bound certificate', () => {
    device.given([registered, bound(FP_A)]).when({ type: 'unbind_certificate' }).then([unbound(FP_A)]);
  });

  it('refuses to unbind when none is bound, also after an unbind', () => {
    device.given([registered]).when({ type: 'unbind_certificate' }).thenThrows('not_found');
    device.given([registered, bound(FP_A), unbound(FP_A)]).when({ type: 'unbind_certificate' }).thenThrows('not_found');
  });

  it('refuses both on a decommissioned device', () => {
    device.given([registered, decommissioned]).when({ type: 'bind_certificate', data: { fingerprint: FP_A } }).thenThrows('not_found');
    device.given([registered, bound(FP_A), decommissioned]).when({ type: 'unbind_certificate' }).thenThrows('not_found');
  });
});

describe('device decider: transfer', () => {
  const registeredDevice: DomainEvent = {
    type: 'device.registered',
    data: { device_id: 'd1', user_id: 'u1', token_hash: 'sealed:v1:x', name: 'n', device_type: 't', description: null, ip_address: null, mac_address: null, group_id: 'g1', configuration: {}, firmware_version: null },
  };
  const offered: DomainEvent = { type: 'device.transfer_offered', data: { device_id: 'd1', from_user_id: 'u1', to_user_id: 'u2' } };
  const decider = spec(deviceDecider);

  it('offers once, and moves the device only to the user it was offered to', () => {
    decider.given([registeredDevice]).when({ type: 'offer_transfer', data: { to_user_id: 'u2' } }).then([offered as EventOfType<'device.transfer_offered'>]);
    decider.given([registeredDevice, offered]).when({ type: 'offer_transfer', data: { to_user_id: 'u2' } }).then([]);
    decider.given([registeredDevice]).when({ type: 'offer_transfer', data: { to_user_id: 'u1' } }).thenThrows('validation_failed');
    decider.given([registeredDevice, offered]).when({ type: 'accept_transfer', data: { user_id: 'u3' } }).thenThrows('not_found');
    decider.given([registeredDevice]).when({ type: 'accept_transfer', data: { user_id: 'u2' } }).thenThrows('not_found');
    decider
      .given([registeredDevice, offered])
      .when({ type: 'accept_transfer', data: { user_id: 'u2' } })
      .then([{ type: 'device.transferred', data: { device_id: 'd1', from_user_id: 'u1', to_user_id: 'u2' } }]);
  });

  it('after a transfer the receiver owns it, ungrouped, and the offer is spent', () => {
    const transferred: DomainEvent = { type: 'device.transferred', data: { device_id: 'd1', from_user_id: 'u1', to_user_id: 'u2' } };
    expect(fold(deviceDecider, [registeredDevice, offered, transferred])).toMatchObject({ user_id: 'u2', offered_to: null, attributes: { group_id: null } });
    decider.given([registeredDevice, offered, transferred]).when({ type: 'accept_transfer', data: { user_id: 'u2' } }).thenThrows('not_found');
  });
});
