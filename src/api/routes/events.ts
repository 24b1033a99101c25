import { z } from 'zod';
import { isAdmin, ownerScope, type Principal, type Services } from '../../commands/services.js';
import { DomainError } from '../../domain/errors.js';
import { ownedStreamIds, readableStreamIds } from '../../projections/stream-owners.js';
import { exportedEvent } from '../../eventlog/export-verifier.js';
import { erasedUserIds } from '../../projections/users.js';
import { servedEvent } from '../presenters.js';
import { defineRoute } from '../route.js';
import { writeChunk } from '../streaming.js';
import { storedEvent } from '../schemas/devices.js';
import { eventsQuery, exportEventsQuery, verifyAnswer } from '../schemas/events.js';

const EXPORT_PAGE = 1_000;

/** The streams a caller may read, narrowed by the stream_id / device_id filters; undefined: all (admins). */
function readableStreams(services: Services, principal: Principal, filter: { stream_id?: string | undefined; device_id?: string | undefined }): string[] | undefined {
  const userId = ownerScope(principal);
  if (userId === null && filter.device_id === undefined) return filter.stream_id !== undefined ? [filter.stream_id] : undefined;
  const owned = userId === null ? ownedStreamIds(services.sql, null, filter.device_id) : readableStreamIds(services.sql, userId, filter.device_id);
  return filter.stream_id !== undefined ? owned.filter((id) => id === filter.stream_id) : owned;
}

export function eventRoutes(services: Services) {
  return [
    defineRoute(
      { method: 'get', path: '/api/events', operationId: 'listEvents', errors: [503], meta: z.object({ next_position: z.number().int().describe('after_position for the next page') }), summary: 'The event log in position order, scoped to your resources (admins: all)', tag: 'audit', access: 'user', query: eventsQuery, response: storedEvent.array(), list: true },
      async ({ query, context }) => {
        const streamIds = readableStreams(services, context.principal, query);
        const filter = { afterPosition: query.after_position, ...(streamIds ? { streamIds } : {}), ...(query.type ? { types: query.type } : {}) };
        const [events, total] = await Promise.all([services.log.readAll({ ...filter, limit: query.limit, offset: query.offset }), services.log.countEvents(filter)]);
        const erased = new Set(erasedUserIds(services.sql));
        const next = events.length > 0 ? events[events.length - 1]!.position : query.after_position;
        return { data: events.map((event) => servedEvent(event, erased)), meta: { total, limit: query.limit, offset: query.offset, next_position: next } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/events/verify', operationId: 'verifyEvents', summary: 'Walk the hash chain (admin)', tag: 'audit', access: 'user', response: verifyAnswer },
      async ({ context }) => {
        if (!isAdmin(context.principal)) throw new DomainError('forbidden', 'only an admin can verify the whole log');
        return { data: await services.log.verify() };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/events/export', operationId: 'exportEvents', errors: [503], streams: ['application/x-ndjson'], summary: 'Stream the log as NDJSON with hashes, for offline verification (npm run verify)', tag: 'audit', access: 'user', query: exportEventsQuery },
      async ({ query, context, res }) => {
        const streamIds = readableStreams(services, context.principal, query);
        res.status(200).setHeader('Content-Type', 'application/x-ndjson');
        res.setHeader('Content-Disposition', 'attachment; filename="events.ndjson"');
        const erased = new Set(erasedUserIds(services.sql));
        for (let after = query.after_position; ; ) {
          const page = await services.log.readAll({ afterPosition: after, limit: EXPORT_PAGE, asStored: true, ...(streamIds ? { streamIds } : {}), ...(query.type ? { types: query.type } : {}) });
          const kept = query.before_position ? page.filter((e) => e.position < query.before_position!) : page;
          const lines = await Promise.all(kept.map(async (event) => `${JSON.stringify(exportedEvent(servedEvent(event, erased), await services.log.hashAt(event.position - 1)))}\n`));
          if (lines.length > 0 && !(await writeChunk(res, lines.join('')))) return;
          if (page.length < EXPORT_PAGE || kept.length < page.length) break;
          after = page[page.length - 1]!.position;
        }
        res.end();
      },
    ),
  ];
}
