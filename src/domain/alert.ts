import type { Decider } from './decider.js';
import { conflict, notFound } from './errors.js';
import type { EventOfType } from './events.js';

export type AlertEvent = EventOfType<'alert.raised' | 'alert.repeated' | 'alert.acknowledged' | 'alert.cleared'>;
export type AlertCommand = { type: 'acknowledge_alert' } | { type: 'clear_alert' };
export type AlertState = { status: 'none' } | { status: 'active' | 'acknowledged' | 'cleared'; alert_id: string };

/** Raising happens at ingestion (see thresholds.ts); people acknowledge and clear. */
export const alertDecider: Decider<AlertCommand, AlertState, AlertEvent> = {
  eventTypes: new Set(['alert.raised', 'alert.repeated', 'alert.acknowledged', 'alert.cleared']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'alert.raised':
        return state.status === 'acknowledged' ? state : { status: 'active', alert_id: event.data.alert_id };
      case 'alert.repeated':
        return state;
      case 'alert.acknowledged':
        return state.status === 'none' ? state : { ...state, status: 'acknowledged' };
      case 'alert.cleared':
        return state.status === 'none' ? state : { ...state, status: 'cleared' };
    }
  },

  decide(command, state) {
    if (state.status === 'none') throw notFound('alert');
    switch (command.type) {
      case 'acknowledge_alert':
        if (state.status !== 'active') throw conflict(`the alert is already ${state.status}; only active alerts can be acknowledged`);
        return [{ type: 'alert.acknowledged', data: { alert_id: state.alert_id } }];
      case 'clear_alert':
        if (state.status === 'cleared') throw conflict('the alert is already cleared');
        return [{ type: 'alert.cleared', data: { alert_id: state.alert_id, reason: 'manual' } }];
    }
  },
};
