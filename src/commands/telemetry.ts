import { DomainError, type ErrorDetail } from '../domain/errors.js';
import { streams, type DomainEvent, type StoredReading } from '../domain/events.js';
import { reportedState } from '../domain/device-status.js';
import { assessQuality, emptyStats, rangesOf, updateStats, type SensorStats } from '../domain/quality.js';
import { DEFAULT_ANOMALY_Z, alertsForReading, thresholdsOf, type OpenAlert } from '../domain/thresholds.js';
import type { AppendRequest } from '../eventlog/index.js';
import { openDeviceAlerts } from '../projections/alerts.js';
import type { DeviceRow } from '../projections/devices.js';
import { visibleDevice } from './devices.js';
import { sensorStatsOf } from '../projections/telemetry-queries.js';
import { metadataFor } from './handle.js';
import { storeEvents, type RequestContext, type Services } from './services.js';

export interface ReadingInput {
  sensor_type: string;
  value: number;
  unit: string | null;
  timestamp: string | null;
}

/** Both shapes of sensor_readings (a list, or {sensor_type: value}) as one list. */
export function readingInputs(
  sensorReadings: ReadonlyArray<{ sensor_type: string; value: number; unit?: string | null | undefined; timestamp?: string | undefined }> | Record<string, number>,
): ReadingInput[] {
  return Array.isArray(sensorReadings)
    ? sensorReadings.map((r) => ({ sensor_type: r.sensor_type, value: r.value, unit: r.unit ?? null, timestamp: r.timestamp ?? null }))
    : Object.entries(sensorReadings).map(([sensor_type, value]) => ({ sensor_type, value, unit: null, timestamp: null }));
}

/** Times as the request schemas hand them over: UTC ISO 8601 with milliseconds. */
export interface Submission {
  readings: ReadingInput[];
  timestamp: string | null;
  device_status: Record<string, unknown> | null;
}

export interface HeartbeatInput {
  device_status: Record<string, unknown> | null;
  firmware_version: string | null;
  metrics: Record<string, unknown> | null;
  configuration?: Record<string, unknown> | undefined;
}

export const MAX_READINGS_PER_SUBMISSION = 1_000;
/** How far ahead of the server's clock a reading may be timed; a dry run relies on it to bound where readings sit in the log. */
export const MAX_FUTURE_MS = 5 * 60 * 1000;
/** Past this many events between the log and the read models, ingestion sheds load. */
export const MAX_PROJECTION_LAG = 20_000;

export class Telemetry {
  constructor(private readonly services: Services) {}

  async submit(deviceId: string, submission: Submission, context: RequestContext, idempotencyKey?: string): Promise<{ accepted: number; position: number }> {
    const { services } = this;
    // Refusals answer before queueing behind the device's lock. A device's own token was
    // resolved from its row a moment ago: only the fresh read inside the lock is needed then.
    if (context.principal.kind === 'user' || context.principal.deviceId !== deviceId) visibleDevice(services, context.principal, deviceId);
    if (submission.readings.length > MAX_READINGS_PER_SUBMISSION) {
      throw new DomainError('payload_too_large', `at most ${MAX_READINGS_PER_SUBMISSION} readings per submission`);
    }
    this.shedLoad();
    const now = services.clock.now();
    const readings = timedReadings(submission, now);
    return this.services.locks.devices.run(deviceId, async () => {
      const device = visibleDevice(services, context.principal, deviceId);
      const { stored, alertEvents } = this.assess(device, readings, now);
      const recorded: AppendRequest = {
        streamId: streams.telemetry(deviceId),
        expectedVersion: 'any',
        events: [{ type: 'readings.recorded', data: { device_id: deviceId, readings: stored, device_status: submission.device_status } }],
      };
      const alerts = alertEvents.map((event): AppendRequest => ({ streamId: streams.alert(alertIdOf(event)), expectedVersion: 'any', events: [event] }));
      const requests = withMetadata([recorded, ...this.stateChange(device, submission.device_status), ...this.cameOnline(device), ...alerts], context);
      const result = await storeEvents(services, requests, idempotencyKey ? { idempotencyKey: `readings:${deviceId}:${idempotencyKey}` } : {});
      await services.runner.waitFor(result.lastPosition);
      if (!result.duplicate) return { accepted: stored.length, position: result.firstPosition };
      const [first] = await services.log.readAll({ afterPosition: result.firstPosition - 1, limit: 1 });
      return { accepted: first?.type === 'readings.recorded' ? first.data.readings.length : stored.length, position: result.firstPosition };
    });
  }

  async heartbeat(deviceId: string, input: HeartbeatInput, context: RequestContext): Promise<{ position: number }> {
    const { services } = this;
    this.shedLoad();
    return this.services.locks.devices.run(deviceId, async () => {
      const device = visibleDevice(services, context.principal, deviceId);
      const { configuration, ...beatData } = input;
      const events: DomainEvent[] = [{ type: 'device.heartbeat', data: { device_id: deviceId, ...beatData } }];
      if (configuration) events.push({ type: 'device.configuration_reported', data: { device_id: deviceId, configuration, source: 'heartbeat' } });
      const beat: AppendRequest = { streamId: streams.telemetry(deviceId), expectedVersion: 'any', events };
      const requests = withMetadata([beat, ...this.stateChange(device, input.device_status), ...this.cameOnline(device)], context);
      const result = await storeEvents(services, requests);
      await services.runner.waitFor(result.lastPosition);
      return { position: result.firstPosition };
    });
  }

  /** A device that connects is heard from: online at once. */
  async markOnline(deviceId: string, context: RequestContext): Promise<void> {
    await this.services.locks.devices.run(deviceId, async () => {
      const device = visibleDevice(this.services, context.principal, deviceId);
      const requests = withMetadata(this.cameOnline(device), context);
      if (requests.length === 0) return;
      const result = await storeEvents(this.services, requests);
      await this.services.runner.waitFor(result.lastPosition);
    });
  }

  /**
   * A device_status that says error or maintenance (or, once in one, anything else) changes the
   * device's operational state: an event of its own stream, so as_of and subscribers see it.
   * One that says nothing of it, or repeats the current state, changes nothing.
   */
  stateChange(device: DeviceRow, deviceStatus: Record<string, unknown> | null): AppendRequest[] {
    const state = reportedState(deviceStatus);
    if (state === undefined || state === device.reported_state) return [];
    return [{ streamId: streams.device(device.id), expectedVersion: 'stream_exists', events: [{ type: 'device.state_reported', data: { device_id: device.id, state } }] }];
  }

  /** Marks the device online when it was not; callers hold the device's lock. */
  cameOnline(device: DeviceRow): AppendRequest[] {
    if (device.connectivity === 'online') return [];
    return [{ streamId: streams.device(device.id), expectedVersion: 'stream_exists', events: [{ type: 'device.came_online', data: { device_id: device.id } }] }];
  }

  private shedLoad(): void {
    if (this.services.runner.lag() > MAX_PROJECTION_LAG) {
      throw new DomainError('service_unavailable', 'ingestion is saturated; retry shortly', [], 1);
    }
  }

  /** Quality per reading and the alerts they cause, folding the sensor statistics as the projection will. */
  private assess(device: DeviceRow, readings: Array<Omit<StoredReading, 'quality_score' | 'quality_reasons'>>, now: Date) {
    const { sql, newId } = this.services;
    const configuration = JSON.parse(device.configuration) as Record<string, unknown>;
    const thresholds = thresholdsOf(configuration.thresholds);
    const ranges = rangesOf(configuration.ranges);
    const anomalyZ = typeof configuration.anomaly_z === 'number' && configuration.anomaly_z > 0 ? configuration.anomaly_z : DEFAULT_ANOMALY_Z;
    const stats = sensorStatsOf(sql, device.id);
    const open = new Map<string, OpenAlert>(openDeviceAlerts(sql, device.id).map((a) => [`${a.kind}:${a.sensor_type}`, { alert_id: a.id }]));
    const alertEvents: DomainEvent[] = [];
    const receivedAt = now.toISOString();
    const stored = readings.map((reading): StoredReading => {
      const before: SensorStats = stats.get(reading.sensor_type) ?? emptyStats;
      const quality = assessQuality(reading, before, now, ranges);
      // Spelt out: V8 copies a spread of these request-shaped objects field by field, slowly.
      const storedReading = { sensor_type: reading.sensor_type, value: reading.value, unit: reading.unit, timestamp: reading.timestamp, quality_score: quality.score, quality_reasons: quality.reasons };
      // Alerts say how a sensor is now: a reading older than its newest (a backfill, or an
      // earlier time later in a submission) is stored and scored out_of_order, but moves no alert.
      // A newest stamped ahead (up to 5 minutes are accepted) counts as now, or it would silence them.
      if (before.last_timestamp === null || reading.timestamp >= (before.last_timestamp < receivedAt ? before.last_timestamp : receivedAt)) {
        const threshold = thresholds.get(reading.sensor_type);
        alertEvents.push(...alertsForReading({ device_id: device.id, user_id: device.user_id, reading: storedReading, threshold, statsBefore: before, anomalyZ, open, newId }));
      }
      stats.set(reading.sensor_type, updateStats(before, reading.value, reading.timestamp));
      return storedReading;
    });
    return { stored, alertEvents };
  }
}

const withMetadata = (requests: AppendRequest[], context: RequestContext): AppendRequest[] =>
  requests.map((request) => ({ ...request, metadata: metadataFor(context) }));

function alertIdOf(event: DomainEvent): string {
  if (event.type === 'alert.raised' || event.type === 'alert.repeated' || event.type === 'alert.cleared' || event.type === 'alert.acknowledged') return event.data.alert_id;
  throw new Error(`not an alert event: ${event.type}`);
}

/** Every reading gets a time (its own, the submission's, or now); one more than 5 minutes ahead refuses the whole submission. */
function timedReadings(submission: Submission, now: Date): Array<Omit<StoredReading, 'quality_score' | 'quality_reasons'>> {
  const problems: ErrorDetail[] = [];
  const fallback = submission.timestamp ?? now.toISOString();
  const latest = now.getTime() + MAX_FUTURE_MS;
  const ahead = 'more than 5 minutes in the future';
  // Refused even when every reading has its own time: a clock that far ahead is wrong all the same.
  if (submission.timestamp !== null && Date.parse(submission.timestamp) > latest) problems.push({ path: 'timestamp', message: ahead });
  // The readings of a submission mostly share their times: each distinct one is parsed once.
  let last = { timestamp: '', ahead: false };
  const readings = submission.readings.map((reading, index) => {
    const timestamp = reading.timestamp ?? fallback;
    if (timestamp !== last.timestamp) last = { timestamp, ahead: Date.parse(timestamp) > latest };
    if (last.ahead && reading.timestamp) problems.push({ path: `sensor_readings.${index}.timestamp`, message: ahead });
    return { sensor_type: reading.sensor_type, value: reading.value, unit: reading.unit, timestamp };
  });
  if (problems.length > 0) throw new DomainError('validation_failed', `invalid readings: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, problems);
  return readings;
}
