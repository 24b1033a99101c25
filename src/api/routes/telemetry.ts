import { deviceAsOf, visibleDevice } from '../../commands/devices.js';
import type { Services } from '../../commands/services.js';
import type { DeviceGateway } from '../../gateway/index.js';
import type { OfflineDetector } from '../../automation/offline-detector.js';
import { findDeviceHealth } from '../../projections/device-health.js';
import { listDeviceLogs } from '../../projections/device-logs.js';
import { aggregatedReadings, iterateReadings, rawReadings } from '../../projections/telemetry-queries.js';
import { invalid } from '../../domain/errors.js';
import { defineRoute } from '../route.js';
import { writeChunk } from '../streaming.js';
import { csvField } from '../csv.js';
import { asOfMeta, listMeta } from '../schemas/common.js';
import { deviceDetailQuery } from '../schemas/devices.js';
import { bucketReading, dataQuery, encodeCursor, deviceLog, deviceStatus, exportQuery, heartbeatAnswer, heartbeatBody, logsQuery, rawPageMeta, rawReading, submitAnswer, submitReadingsBody } from '../schemas/telemetry.js';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

export function telemetryRoutes(services: Services, gateway: DeviceGateway, offline: OfflineDetector) {
  return [
    defineRoute(
      { method: 'post', path: '/api/devices/:id/data', operationId: 'submitReadings', example: { sensor_readings: { temperature: 72.5, pressure: 1.9 } }, idempotencyKey: true, summary: 'Submit readings (device token or owner); Idempotency-Key repeats the first answer', tag: 'telemetry', access: 'any', body: submitReadingsBody, response: submitAnswer, status: 201, ingest: true },
      async ({ params, body, context, req }) => {
        const idempotencyKey = req.header('idempotency-key');
        if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) throw invalid('Idempotency-Key', 'an Idempotency-Key is 1 to 200 visible ASCII characters');
        return { data: await gateway.submitReadings(params.id!, body, context, idempotencyKey) };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/heartbeat', operationId: 'sendHeartbeat', summary: 'A device says it is alive (device token only)', tag: 'telemetry', access: 'device', body: heartbeatBody, response: heartbeatAnswer },
      async ({ params, body, context }) => ({ data: await gateway.heartbeat(params.id!, body, context) }),
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/status', operationId: 'getDeviceStatus', errors: [503], summary: 'Connectivity, health and operational state; ?as_of for the past', tag: 'telemetry', access: 'any', query: deviceDetailQuery, response: deviceStatus, meta: asOfMeta },
      async ({ params, query, context }) => {
        if (query.as_of) {
          const then = await deviceAsOf(services, context.principal, params.id!, new Date(query.as_of));
          return { data: presentStatus(offline, { ...then, configuration: JSON.stringify(then.configuration) }, Date.parse(query.as_of), { last_reported: then.reported_status }), meta: { as_of: query.as_of } };
        }
        const device = visibleDevice(services, context.principal, params.id!, 'viewer');
        const health = findDeviceHealth(services.sql, device.id);
        const lastStatus = health?.last_status ? (JSON.parse(health.last_status) as Record<string, unknown>) : null;
        return {
          data: presentStatus(offline, device, services.clock.now().getTime(), {
            last_reported: lastStatus,
            error_count: health?.error_count ?? 0,
            mean_quality_score: health && health.quality_count > 0 ? health.quality_sum / health.quality_count : null,
            last_heartbeat_at: health?.last_heartbeat_at ?? null,
            metrics: health?.metrics ? (JSON.parse(health.metrics) as Record<string, unknown>) : null,
          }),
        };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/data', operationId: 'listReadings', summary: 'Readings: raw, or per minute/hour/day from the rollups', tag: 'telemetry', access: 'any', query: dataQuery, response: rawReading.or(bucketReading).array(), list: true, meta: rawPageMeta },
      ({ params, query, context }) => {
        const device = visibleDevice(services, context.principal, params.id!, 'viewer');
        const filter = { deviceIds: [device.id] as [string], ...(query.sensor_type ? { sensorType: query.sensor_type } : {}), ...(query.start_date ? { start: query.start_date } : {}), ...(query.end_date ? { end: query.end_date } : {}) };
        if (query.interval !== 'raw') {
          const { rows, total } = aggregatedReadings(services.sql, filter, query.interval, query.limit, query.offset);
          return { data: rows, meta: listMeta(total, query) };
        }
        const { rows, total, nextCursor } = rawReadings(services.sql, filter, query.limit, query.cursor ? { cursor: query.cursor } : { offset: query.offset });
        return { data: rows, meta: { ...listMeta(total, query), next_cursor: nextCursor && encodeCursor(nextCursor) } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/data/export', operationId: 'exportReadings', streams: ['text/csv', 'application/x-ndjson'], summary: 'Stream every reading of a range as CSV or NDJSON', tag: 'telemetry', access: 'user', query: exportQuery },
      async ({ params, query, context, res }) => {
        const device = visibleDevice(services, context.principal, params.id!, 'viewer');
        const filter = { deviceIds: [device.id] as [string], ...(query.sensor_type ? { sensorType: query.sensor_type } : {}), ...(query.start_date ? { start: query.start_date } : {}), ...(query.end_date ? { end: query.end_date } : {}) };
        res.status(200).setHeader('Content-Type', query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
        res.setHeader('Content-Disposition', `attachment; filename="${device.id}.${query.format}"`);
        if (query.format === 'csv') await writeChunk(res, 'timestamp,sensor_type,value,unit,quality_score\n');
        for (const page of iterateReadings(services.sql, filter)) {
          const lines = page.map((r) =>
            query.format === 'csv'
              ? `${r.ts},${csvField(r.sensor_type)},${r.value},${csvField(r.unit ?? '')},${r.quality_score}\n`
              : `${JSON.stringify({ timestamp: r.ts, sensor_type: r.sensor_type, value: r.value, unit: r.unit, quality_score: r.quality_score })}\n`,
          );
          if (lines.length > 0 && !(await writeChunk(res, lines.join('')))) return;
        }
        res.end();
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/logs', operationId: 'listDeviceLogs', summary: "The device's log: status changes, configuration pushes, reported errors", tag: 'telemetry', access: 'user', query: logsQuery, response: deviceLog.array(), list: true },
      ({ params, query, context }) => {
        const device = visibleDevice(services, context.principal, params.id!, 'viewer');
        const { rows, total } = listDeviceLogs(services.sql, {
          deviceId: device.id,
          ...(query.severity ? { severity: query.severity } : {}),
          ...(query.start_date ? { start: query.start_date } : {}),
          ...(query.end_date ? { end: query.end_date } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        return { data: rows.map(({ device_id: _d, seq: _s, details, ...row }) => ({ ...row, details: JSON.parse(details) as Record<string, unknown> })), meta: listMeta(total, query) };
      },
    ),
  ];
}

/** A device's status at `now` (ms): the live one, or one folded from the log for as_of. */
function presentStatus(
  offline: OfflineDetector,
  device: { id: string; status: string; connectivity: string; last_seen: string | null; configuration: string; firmware_version: string | null },
  now: number,
  health: { last_reported: Record<string, unknown> | null } & Record<string, unknown>,
) {
  const configuration = JSON.parse(device.configuration) as Record<string, unknown>;
  return {
    device_id: device.id,
    status: device.status,
    connectivity: {
      online: device.connectivity === 'online',
      last_seen: device.last_seen,
      seconds_since_last_seen: device.last_seen ? Math.max(0, Math.round((now - Date.parse(device.last_seen)) / 1000)) : null,
      offline_after_seconds: offline.deadlineMs(device.configuration) / 1000,
    },
    health: { ...pick(health.last_reported ?? {}, HEALTH_FIELDS), ...health },
    operational_state: {
      firmware_version: device.firmware_version,
      configuration_keys: Object.keys(configuration),
      maintenance: device.status === 'maintenance',
      connected: offline.connected.has(device.id),
    },
  };
}

const HEALTH_FIELDS = ['battery', 'battery_level', 'signal', 'signal_strength', 'rssi', 'temperature', 'uptime', 'memory', 'cpu'];

function pick(source: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((key) => key in source).map((key) => [key, source[key]]));
}
