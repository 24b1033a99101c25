import { Cron } from 'croner';
import type { RuleSchedule } from '../domain/rule-schema.js';

/** The first run of a schedule strictly after `after` (ms), or null when there is none. */
export function nextRun(schedule: RuleSchedule, after: number): number | null {
  if ('every_seconds' in schedule) return after + schedule.every_seconds * 1000;
  const cron = new Cron(schedule.cron, { paused: true, ...(schedule.timezone ? { timezone: schedule.timezone } : {}) });
  return cron.nextRun(new Date(after))?.getTime() ?? null;
}
