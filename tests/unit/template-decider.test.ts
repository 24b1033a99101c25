import { describe, expect, it } from 'vitest';
import { fold } from '../../src/domain/decider.js';
import type { DomainEvent, EventOfType } from '../../src/domain/events.js';
import { templateDecider } from '../../src/domain/template.js';
import { spec } from '../helpers/decider-spec.js';

const template = spec(templateDecider);

const creation: EventOfType<'template.created'>['data'] = {
  template_id: 't1',
  user_id: 'u1',
  name: 'Thermo',
  device_type: 'thermostat',
  description: null,
  configuration: { interval: 60, unit: 'C' },
  thresholds: { temperature: { min: 0, max: 30 } },
};
const created: EventOfType<'template.created'> = { type: 'template.created', data: creation };
const deleted: EventOfType<'template.deleted'> = { type: 'template.deleted', data: { template_id: 't1', user_id: 'u1' } };
const updated = (changes: EventOfType<'template.updated'>['data']['changes']): EventOfType<'template.updated'> => ({ type: 'template.updated', data: { template_id: 't1', changes } });
const update = (changes: EventOfType<'template.updated'>['data']['changes']) => ({ type: 'update_template', data: { changes } }) as const;
const foreign: DomainEvent[] = [
  { type: 'group.deleted', data: { group_id: 'g1', user_id: 'u1' } },
  { type: 'device.decommissioned', data: { device_id: 'd1', user_id: 'u1' } },
];

describe('template decider: create_template', () => {
  it('creates a template with its fields', () => {
    template.given([]).when({ type: 'create_template', data: creation }).then([created]);
  });

  it('creates one with empty defaults', () => {
    const bare = { ...creation, configuration: {}, thresholds: {} };
    template.given([]).when({ type: 'create_template', data: bare }).then([{ type: 'template.created', data: bare }]);
  });

  it('refuses to create it twice', () => {
    template.given([created]).when({ type: 'create_template', data: creation }).thenThrows('already_exists');
  });

  it('refuses to create over a deleted template (ids are never reused)', () => {
    template.given([created, deleted]).when({ type: 'create_template', data: creation }).thenThrows('already_exists');
  });

  it('skips events of other aggregates in its history', () => {
    template.given(foreign).when({ type: 'create_template', data: creation }).then([created]);
    template.given([...foreign, created, ...foreign]).when({ type: 'create_template', data: creation }).thenThrows('already_exists');
  });
});

describe('template decider: update_template', () => {
  it('records only the fields that change', () => {
    template
      .given([created])
      .when(update({ name: 'Thermo v2', device_type: 'thermostat', configuration: { interval: 60, unit: 'C' }, thresholds: { temperature: { min: 5, max: 30 } } }))
      .then([updated({ name: 'Thermo v2', thresholds: { temperature: { min: 5, max: 30 } } })]);
  });

  it('changes the description from null and back', () => {
    template.given([created]).when(update({ description: 'lab' })).then([updated({ description: 'lab' })]);
    template.given([created, updated({ description: 'lab' })]).when(update({ description: null })).then([updated({ description: null })]);
  });

  it('decides nothing when nothing changes, or when changes are empty or undefined', () => {
    template.given([created]).when(update({})).thenNothing();
    template.given([created]).when(update({ name: 'Thermo', device_type: 'thermostat', description: null })).thenNothing();
    template.given([created]).when(update({ configuration: { interval: 60, unit: 'C' }, thresholds: { temperature: { min: 0, max: 30 } } })).thenNothing();
    template.given([created]).when(update({ name: undefined, configuration: undefined })).thenNothing();
  });

  it('compares with the state after earlier updates', () => {
    const history = [created, updated({ name: 'Renamed', configuration: { interval: 10 } })];
    template.given(history).when(update({ name: 'Renamed', configuration: { interval: 10 } })).thenNothing();
    template.given(history).when(update({ name: 'Thermo' })).then([updated({ name: 'Thermo' })]);
    template.given(history).when(update({ configuration: { interval: 60, unit: 'C' } })).then([updated({ configuration: { interval: 60, unit: 'C' } })]);
  });

  it('replaces the configuration as a whole (a nested change is recorded with the full object)', () => {
    template
      .given([created])
      .when(update({ configuration: { interval: 60, unit: 'F' } }))
      .then([updated({ configuration: { interval: 60, unit: 'F' } })]);
  });

  it('refuses to update a template that does not exist', () => {
    template.given([]).when(update({ name: 'x' })).thenThrows('not_found');
    template.given(foreign).when(update({ name: 'x' })).thenThrows('not_found');
  });

  it('refuses to update a deleted template, even with no real change', () => {
    template.given([created, deleted]).when(update({ name: 'x' })).thenThrows('not_found');
    template.given([created, deleted]).when(update({})).thenThrows('not_found');
  });
});

describe('template decider: delete_template', () => {
  it('deletes an active template, naming its owner', () => {
    template.given([created]).when({ type: 'delete_template' }).then([deleted]);
    template.given([created, updated({ name: 'Renamed' })]).when({ type: 'delete_template' }).then([deleted]);
  });

  it('refuses to delete twice, or a template that never existed', () => {
    template.given([created, deleted]).when({ type: 'delete_template' }).thenThrows('not_found');
    template.given([]).when({ type: 'delete_template' }).thenThrows('not_found');
  });
});

describe('template decider: evolve', () => {
  it('folds created, updated and deleted into the state', () => {
    expect(fold(templateDecider, [])).toEqual({ status: 'none' });
    const { template_id: _t, user_id: _u, ...fields } = creation;
    expect(fold(templateDecider, [created])).toEqual({ status: 'active', template_id: 't1', user_id: 'u1', fields });
    expect(fold(templateDecider, [created, ...foreign, updated({ name: 'B', thresholds: {} })])).toEqual({
      status: 'active',
      template_id: 't1',
      user_id: 'u1',
      fields: { ...fields, name: 'B', thresholds: {} },
    });
    expect(fold(templateDecider, [created, deleted])).toMatchObject({ status: 'deleted', template_id: 't1' });
  });

  it('ignores an update or delete with no creation before it', () => {
    expect(fold(templateDecider, [updated({ name: 'x' })])).toEqual({ status: 'none' });
    expect(fold(templateDecider, [deleted])).toEqual({ status: 'none' });
  });
});
