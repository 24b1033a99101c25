import { z } from 'zod';
import { commandResultBody } from '../api/schemas/commands.js';
import { uuid } from '../api/schemas/common.js';
import { heartbeatBody, submitReadingsBody } from '../api/schemas/telemetry.js';
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

const ref = { id: z.union([z.string().max(200), z.number()]).optional(), idempotency_key: z.string().min(1).max(200).optional() };

/** What a device may send on /ws/device: the same bodies as over HTTP, tagged with a type. */
export const deviceMessage = z.discriminatedUnion('type', [
  submitReadingsBody.extend({ type: z.literal('readings'), ...ref }),
  heartbeatBody.extend({ type: z.literal('heartbeat'), ...ref }),
  commandResultBody.extend({ type: z.literal('command_result'), command_id: z.string().min(1).max(64), ...ref }),
]);
export type DeviceMessage = z.infer<typeof deviceMessage>;

/** Closes that say why: 1008 policy (repeated garbage), 1013 try again later (too slow, or no writes taken now), 4401 credentials gone. */
export const CLOSE = { policy: 1008, tryAgainLater: 1013, credentialsRevoked: 4401, goingAway: 1001 } as const;
