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

/** Only the fields whose value differs from the current one, so an update that changes nothing records nothing. */
export function changedFields<T extends object>(current: T, changes: Partial<T>): Partial<T> {
  return Object.fromEntries(
    Object.entries(changes).filter(([key, value]) => value !== undefined && JSON.stringify(current[key as keyof T]) !== JSON.stringify(value)),
  ) as Partial<T>;
}
