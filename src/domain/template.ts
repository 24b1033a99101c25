import { changedFields, type Decider } from './decider.js';
import { DomainError, notFound } from './errors.js';
import type { EventOfType } from './events.js';

export type TemplateEvent = EventOfType<'template.created' | 'template.updated' | 'template.deleted'>;
export type TemplateChanges = EventOfType<'template.updated'>['data']['changes'];

export type TemplateCommand =
  | { type: 'create_template'; data: EventOfType<'template.created'>['data'] }
  | { type: 'update_template'; data: { changes: TemplateChanges } }
  | { type: 'delete_template' };

export type TemplateState =
  | { status: 'none' }
  | { status: 'active' | 'deleted'; template_id: string; user_id: string; fields: Required<TemplateChanges> };

/** A device template: a type with default configuration and thresholds for new devices. */
export const templateDecider: Decider<TemplateCommand, TemplateState, TemplateEvent> = {
  eventTypes: new Set(['template.created', 'template.updated', 'template.deleted']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'template.created': {
        const { template_id, user_id, ...fields } = event.data;
        return { status: 'active', template_id, user_id, fields };
      }
      case 'template.updated':
        return state.status === 'none' ? state : { ...state, fields: { ...state.fields, ...event.data.changes } };
      case 'template.deleted':
        return state.status === 'none' ? state : { ...state, status: 'deleted' };
    }
  },

  decide(command, state) {
    if (command.type === 'create_template') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'template already exists');
      return [{ type: 'template.created', data: command.data }];
    }
    if (state.status !== 'active') throw notFound('template');
    switch (command.type) {
      case 'update_template': {
        const changes: TemplateChanges = changedFields(state.fields, command.data.changes);
        return Object.keys(changes).length === 0 ? [] : [{ type: 'template.updated', data: { template_id: state.template_id, changes } }];
      }
      case 'delete_template':
        return [{ type: 'template.deleted', data: { template_id: state.template_id, user_id: state.user_id } }];
    }
  },
};
