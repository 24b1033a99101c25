import type { Services } from '../commands/services.js';
import { MAX_FUTURE_MS } from '../commands/telemetry.js';
import { eventTypes, type RecordedEvent } from '../domain/events.js';

/** A moment of history as a dry run sees it: an event, at the time it speaks of. */
export interface Moment {
  at: string;
  event: RecordedEvent;
}

export interface History {
  /** In time order; events of one instant in log order. */
  moments: Moment[];
  /** Events with something inside the window. */
  events: number;
  /** True when the read stopped at MAX_HISTORY_ROWS rows of the log: what was recorded later was not seen. */
  cut: boolean;
}

const PAGE = 5_000;
/** Rows of the log a dry run may read: it runs on the event loop, between other requests. */
const MAX_HISTORY_ROWS = 200_000;

const READINGS = 'readings.recorded';
const OTHER_TYPES = eventTypes.filter((type) => type !== READINGS);

/**
 * The history of some streams between `start` and `end`, on the readings' own time: a reading is
 * in the window when its timestamp is, whenever it arrived; an event without a reading time
 * (a state report, a command, an alert) when it was recorded.
 *
 * Readings can arrive any time after they were taken (a device flushing its buffer, an import),
 * so no bound on their arrival after `end` holds, and they are read to the log's head. A bound
 * before `start` does: a reading timed more than MAX_FUTURE_MS ahead of the server's clock is
 * refused, and the arrival time is taken after that check, so a reading timed at or after
 * `start` was recorded at or after `start - MAX_FUTURE_MS`.
 */
export async function readHistory(services: Services, streamIds: readonly string[], start: string, end: string): Promise<History> {
  const arrivedFrom = new Date(Date.parse(start) - MAX_FUTURE_MS).toISOString();
  const readings = await readPaged(services, { streamIds, types: [READINGS], since: arrivedFrom }, MAX_HISTORY_ROWS, (event) => readingMoments(event, start, end));
  const others = await readPaged(services, { streamIds, types: OTHER_TYPES, since: start, until: end }, MAX_HISTORY_ROWS - readings.rows, (event) => [{ at: event.recorded_at, event }]);
  const moments = [...readings.moments, ...others.moments].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.event.position - b.event.position));
  return { moments, events: new Set(moments.map((m) => m.event.position)).size, cut: readings.cut || others.cut };
}

/** An event's readings timed inside the window, one moment per distinct timestamp (a submission of a buffered hour is many moments). */
function readingMoments(event: RecordedEvent, start: string, end: string): Moment[] {
  if (event.type !== READINGS) return [];
  const byTime = new Map<string, typeof event.data.readings>();
  for (const reading of event.data.readings) {
    if (reading.timestamp < start || reading.timestamp > end) continue;
    const together = byTime.get(reading.timestamp);
    if (together) together.push(reading);
    else byTime.set(reading.timestamp, [reading]);
  }
  return [...byTime].map(([at, readings]) => ({ at, event: { ...event, data: { ...event.data, readings } } }));
}

interface Filter {
  streamIds: readonly string[];
  types: readonly string[];
  since: string;
  until?: string;
}

/** The filter's events as moments, page by page, reading at most `budget` rows. */
async function readPaged(services: Services, filter: Filter, budget: number, toMoments: (event: RecordedEvent) => Moment[]) {
  const moments: Moment[] = [];
  let rows = 0;
  for (let after = 0; rows < budget; ) {
    const limit = Math.min(PAGE, budget - rows);
    const page = await services.log.readAll({ ...filter, afterPosition: after, limit });
    rows += page.length;
    for (const event of page) moments.push(...toMoments(event));
    if (page.length < limit) return { moments, rows, cut: false };
    after = page[page.length - 1]!.position;
    // Reads are synchronous: between pages, let other requests in.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { moments, rows, cut: true };
}
