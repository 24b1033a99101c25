import type { Decider } from '../domain/decider.js';
import { fold } from '../domain/decider.js';
import type { DomainEvent, EventMetadata } from '../domain/events.js';
import { DomainError } from '../domain/errors.js';
import { ConcurrencyError, type AppendResult } from '../eventlog/index.js';
import { storeEvents, type RequestContext, type Services } from './services.js';

const MAX_ATTEMPTS = 5;

export interface Handled<State> {
  state: State;
  events: DomainEvent[];
  /** The stream version after the command (unchanged when it decided nothing). */
  version: number;
  position: number;
}

/** The versions an If-Match header names: the resource must be at one of them. */
export type IfMatch = readonly number[];

export interface HandleOptions {
  /** The versions the client last saw (If-Match); a mismatch is a 412, never retried. */
  ifMatch?: IfMatch;
  idempotencyKey?: string;
  /** Extra events to append atomically in the same transaction (other streams). */
  alongside?: Array<{ streamId: string; events: DomainEvent[] }>;
}

export function metadataFor(context: RequestContext | null): EventMetadata {
  if (!context) return { actor_type: 'system' };
  const principal = context.principal;
  return {
    actor_type: principal.kind,
    actor_id: principal.kind === 'user' ? principal.userId : principal.deviceId,
    request_id: context.requestId,
    correlation_id: context.requestId,
  };
}

/**
 * Load → fold → decide → append with the expected version; on a concurrent write, load and
 * decide again (bounded). Answers once the read models have reached the append.
 */
export async function handle<Command, State, Event extends DomainEvent>(
  services: Services,
  decider: Decider<Command, State, Event>,
  streamId: string,
  commands: Command | readonly Command[],
  context: RequestContext | null,
  options: HandleOptions = {},
): Promise<Handled<State>> {
  for (let attempt = 1; ; attempt++) {
    const history = await services.log.readStream(streamId);
    const version = history.length;
    if (options.ifMatch !== undefined && !options.ifMatch.includes(version)) {
      throw new DomainError('precondition_failed', `the resource is at version ${version}, not ${options.ifMatch.join(' or ')}`);
    }
    const state = fold(decider, history);
    const events = decideAll(decider, [commands].flat() as Command[], state);
    if (events.length === 0) return { state, events, version, position: services.log.headPosition() };
    let result: AppendResult;
    try {
      result = await storeEvents(
        services,
        [
          { streamId, events, expectedVersion: version === 0 ? 'no_stream' : version, metadata: metadataFor(context) },
          ...(options.alongside ?? []).map((extra) => ({ ...extra, expectedVersion: 'any' as const, metadata: metadataFor(context) })),
        ],
        options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {},
      );
    } catch (error) {
      if (error instanceof ConcurrencyError && options.ifMatch !== undefined) {
        throw new DomainError('precondition_failed', 'the resource changed since the version in If-Match');
      }
      if (error instanceof ConcurrencyError && attempt < MAX_ATTEMPTS) continue;
      if (error instanceof ConcurrencyError) throw new DomainError('conflict', 'the resource was changed concurrently; try again');
      throw error;
    }
    await services.runner.waitFor(result.lastPosition);
    return { state: events.reduce(decider.evolve, state), events, version: result.versions[0]!, position: result.lastPosition };
  }
}

/** Several commands against one stream decided in sequence, appended together. */
function decideAll<Command, State, Event extends DomainEvent>(decider: Decider<Command, State, Event>, commands: Command[], initial: State): Event[] {
  const events: Event[] = [];
  let state = initial;
  for (const command of commands) {
    const decided = decider.decide(command, state);
    events.push(...decided);
    state = decided.reduce(decider.evolve, state);
  }
  return events;
}
