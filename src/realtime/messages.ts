import { z } from 'zod';
import { uuid } from '../api/schemas/common.js';
import { eventTypes } from '../domain/events.js';

/** What a subscriber may send on /ws. */
export const subscriberMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('subscribe'),
    // An empty list would match nothing, forever: leaving it out means every one.
    event_types: z.array(z.enum(eventTypes as [string, ...string[]])).min(1, 'an empty list matches nothing; leave it out for every type').max(100).optional(),
    // Device ids are UUIDs, as REST's device_id filters check: anything else could never match.
    // Stored ids are lower case; an id in capitals names the same device.
    device_ids: z.array(uuid.transform((id) => id.toLowerCase())).min(1, 'an empty list matches nothing; leave it out for every device').max(1000).optional(),
    from_position: z.number().int().min(0).optional(),
  }),
  z.object({ type: z.literal('unsubscribe') }),
  z.object({ type: z.literal('ping') }),
]);
export type SubscriberMessage = z.infer<typeof subscriberMessage>;

/** Closes that say why: 1008 policy (repeated garbage), 1013 try again later (too slow, or no writes taken now), 4401 credentials gone. */
export const CLOSE = { policy: 1008, tryAgainLater: 1013, credentialsRevoked: 4401, goingAway: 1001 } as const;
