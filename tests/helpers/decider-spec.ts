import { expect } from 'vitest';
import { fold, type Decider } from '../../src/domain/decider.js';
import { DomainError, type DomainErrorCode } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';

/** The outcome side of a decider test: the events decided, a refusal, or nothing. */
export interface DeciderThen<Event extends DomainEvent> {
  then(expected: readonly Event[]): void;
  /** Asserts a DomainError with this code; returns it for further checks (details, message). */
  thenThrows(code: DomainErrorCode): DomainError;
  thenNothing(): void;
}

export interface DeciderWhen<Command, Event extends DomainEvent> {
  when(command: Command): DeciderThen<Event>;
}

export interface DeciderSpec<Command, Event extends DomainEvent> {
  given(events: readonly DomainEvent[]): DeciderWhen<Command, Event>;
}

/**
 * given(events) / when(command) / then(events | error | nothing), after emmett's
 * DeciderSpecification. `given` folds through fold(), so events of other types are skipped
 * exactly as the command handler skips them.
 *
 * @example
 * spec(deviceDecider).given([registered]).when({ type: 'decommission_device' }).then([decommissioned]);
 */
export function spec<Command, State, Event extends DomainEvent>(decider: Decider<Command, State, Event>): DeciderSpec<Command, Event> {
  return {
    given: (history) => ({
      when: (command) => {
        const run = (): Event[] => decider.decide(command, fold(decider, history));
        return {
          then(expected) {
            const decided = run();
            expect(decided).toEqual(expected);
            // What was decided must fold cleanly on top of the history it was decided from.
            expect(() => fold(decider, [...history, ...decided])).not.toThrow();
          },
          thenThrows(code) {
            let decided: Event[] | undefined;
            try {
              decided = run();
            } catch (error) {
              expect(error).toBeInstanceOf(DomainError);
              const domainError = error as DomainError;
              expect(domainError.code).toBe(code);
              return domainError;
            }
            throw new Error(`expected DomainError ${code}, but the decider returned ${JSON.stringify(decided)}`);
          },
          thenNothing() {
            expect(run()).toEqual([]);
          },
        };
      },
    }),
  };
}
