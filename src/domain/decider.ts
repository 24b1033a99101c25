import type { DomainEvent, EventType } from './events.js';

/** A pure aggregate: everything it needs, time and ids included, comes in with the command. */
export interface Decider<Command, State, Event extends DomainEvent> {
  /** The event types this aggregate folds; others in its stream (added later) are skipped. */
  eventTypes: ReadonlySet<EventType>;
  initialState: () => State;
  evolve: (state: State, event: Event) => State;
  decide: (command: Command, state: State) => Event[];
}

export function fold<State, Event extends DomainEvent>(
  decider: Pick<Decider<unknown, State, Event>, 'eventTypes' | 'initialState' | 'evolve'>,
  events: readonly DomainEvent[],
): State {
  let state = decider.initialState();
  for (const event of events) {
    if (decider.eventTypes.has(event.type)) state = decider.evolve(state, event as Event);
  }
  return state;
}
