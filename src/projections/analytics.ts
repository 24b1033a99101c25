import { activeAlertCounts } from './alerts.js';
import { queryBuilder as q, type Sql } from './sql.js';
import { hourlyBySensor } from './telemetry-queries.js';

export interface AnalyticsScope {
  /** The devices in scope; their owner's alerts, rules and commands are counted with them. */
  deviceIds: readonly string[];
  userId: string | null;
  start: string;
  end: string;
}

const HOUR_MS = 3_600_000;

/** Least-squares slope of hourly means against time in hours; null with fewer than two hours. */
export function trendPerHour(points: ReadonlyArray<{ hour: string; mean: number }>): number | null {
  if (points.length < 2) return null;
  const xs = points.map((p) => Date.parse(p.hour) / HOUR_MS);
  const meanX = xs.reduce((a, b) => a + b, 0) / xs.length;
  const meanY = points.reduce((a, p) => a + p.mean, 0) / points.length;
  let num = 0;
  let den = 0;
  points.forEach((p, i) => {
    num += (xs[i]! - meanX) * (p.mean - meanY);
    den += (xs[i]! - meanX) ** 2;
  });
  return den === 0 ? null : num / den;
}

function countBy<T extends string>(rows: ReadonlyArray<{ key: T; n: number }>): Record<string, number> {
  return Object.fromEntries(rows.map((r) => [r.key, r.n]));
}

export function deviceCounts(sql: Sql, deviceIds: readonly string[]) {
  const ids = deviceIds.length ? deviceIds : [''];
  const byStatus = sql.all(q.selectFrom('devices').select(['status as key', (eb) => eb.fn.countAll<number>().as('n')]).where('id', 'in', ids).groupBy('status'));
  const byType = sql.all(q.selectFrom('devices').select(['device_type as key', (eb) => eb.fn.countAll<number>().as('n')]).where('id', 'in', ids).groupBy('device_type'));
  return { total: byStatus.reduce((sum, r) => sum + r.n, 0), by_status: countBy(byStatus), by_type: countBy(byType) };
}

export function readingAnalytics(sql: Sql, scope: AnalyticsScope) {
  const hourStart = `${scope.start.slice(0, 13)}:00:00.000Z`;
  const rows = hourlyBySensor(sql, { deviceIds: scope.deviceIds, start: hourStart, end: scope.end });
  const perHour = new Map<string, number>();
  const bySensor = new Map<string, { count: number; sum: number; sum_sq: number; min: number; max: number; hours: Array<{ hour: string; mean: number }> }>();
  for (const row of rows) {
    perHour.set(row.bucket_start, (perHour.get(row.bucket_start) ?? 0) + row.count);
    const s = bySensor.get(row.sensor_type) ?? { count: 0, sum: 0, sum_sq: 0, min: Infinity, max: -Infinity, hours: [] };
    s.count += row.count;
    s.sum += row.sum;
    s.sum_sq += row.sum_sq;
    s.min = Math.min(s.min, row.min);
    s.max = Math.max(s.max, row.max);
    s.hours.push({ hour: row.bucket_start, mean: row.sum / row.count });
    bySensor.set(row.sensor_type, s);
  }
  return {
    total: [...perHour.values()].reduce((a, b) => a + b, 0),
    per_hour: [...perHour].sort(([a], [b]) => a.localeCompare(b)).map(([hour, count]) => ({ hour, count })),
    by_sensor: [...bySensor]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([sensor_type, s]) => {
        const avg = s.sum / s.count;
        return { sensor_type, count: s.count, avg, min: s.min, max: s.max, stddev: Math.sqrt(Math.max(0, s.sum_sq / s.count - avg * avg)), trend_per_hour: trendPerHour(s.hours) };
      }),
  };
}

export function alertAnalytics(sql: Sql, scope: AnalyticsScope & { fleetWide: boolean; sharedDeviceIds?: readonly string[] }) {
  // Over a user's whole fleet, alerts a rule raised without naming a device count too, and
  // those of the devices shared with them (their owner's).
  const rows = activeAlertCounts(sql, scope.userId, scope.fleetWide ? null : scope.deviceIds, scope.fleetWide ? scope.sharedDeviceIds : []);
  return { active: rows.reduce((sum, r) => sum + r.n, 0), by_severity: Object.fromEntries(rows.map((r) => [r.severity, r.n])) };
}
