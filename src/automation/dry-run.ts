import { displayedStatus, type Connectivity, type ReportedState } from '../domain/device-status.js';
import { evaluate, leavesOf, readingKey, type Condition, type Facts } from '../domain/conditions.js';
import { deviceOf, type RecordedEvent } from '../domain/events.js';
import { actionSchedule, gate, initialRuntime, observe, type RuleRuntime } from '../domain/rule.js';
import type { RuleDefinition } from '../domain/rule-schema.js';
import type { Moment } from './dry-run-history.js';
import { concerns, dependsOnTime, matchedFacts } from './facts.js';
import { nextRun } from './schedule.js';

export interface SimulatedFiring {
  at: string;
  cause: { kind: 'condition' | 'schedule' | 'timer'; position: number | null; event_type: string | null };
  matched: Record<string, unknown>;
  actions: Array<{ index: number; type: string; due_at: string; would: string }>;
}

const MAX_FIRINGS = 1_000;
/**
 * Moments the simulation may look at (schedule occurrences, ticks, events): it runs on the
 * event loop, and a one-second schedule over a year would otherwise be 31 million looks.
 */
export const MAX_LOOKS = 200_000;

export interface Simulation {
  firings: SimulatedFiring[];
  /** False when it stopped at MAX_FIRINGS firings or MAX_LOOKS looks, before the end of the range. */
  complete: boolean;
  /** How far it got: the end of the range when complete. */
  until: string;
}

/**
 * Replays recorded history through a draft rule, purely: when it would have fired and what
 * it would have done. Facts are rebuilt from the events themselves (readings, statuses);
 * for_seconds is checked at each moment; schedules run at their occurrences. The moments are
 * in time order (readings at their own timestamps, see readHistory), so each reading is judged
 * as the sensor's value from its time on, as if it had arrived when it was taken.
 */
export function simulate(definition: RuleDefinition, moments: readonly Moment[], start: string, end: string): Simulation {
  const readings = new Map<string, number>();
  const statuses = new Map<string, string>();
  const devices = new Map<string, DeviceStatusParts>();
  const firings: SimulatedFiring[] = [];
  let runtime: RuleRuntime = initialRuntime();
  let looks = 0;
  let cut = false;
  /** Whether one more look is allowed; when not, the run is cut short of what remained. */
  const mayGoOn = () => {
    cut = firings.length >= MAX_FIRINGS || looks >= MAX_LOOKS;
    return !cut;
  };
  const condition = definition.trigger_conditions;
  const factsAt = (at: string, event: Facts['event']): Facts => ({ now: new Date(at), readings, statuses, holdingSince: new Map(), event });
  const record = (facts: Facts, cause: SimulatedFiring['cause']) => {
    const due = actionSchedule(definition.actions, facts.now.getTime());
    firings.push({
      at: facts.now.toISOString(),
      cause,
      matched: matchedFacts(condition, facts),
      actions: definition.actions.map((action, index) => ({ index, type: action.type, due_at: new Date(due[index]!).toISOString(), would: describe(action) })),
    });
  };
  let scheduled = definition.schedule ? nextRun(definition.schedule, Date.parse(start)) : null;
  const runScheduleUntil = (limit: number) => {
    while (definition.schedule && scheduled !== null && scheduled <= limit) {
      if (!mayGoOn()) return;
      looks += 1;
      lastMoment = scheduled;
      const facts = factsAt(new Date(scheduled).toISOString(), null);
      if (!condition || evaluate(condition, facts)) {
        const gated = gate(definition.cooldown_seconds, runtime, scheduled);
        runtime = gated.runtime;
        if (gated.verdict.kind === 'fire') record(facts, { kind: 'schedule', position: null, event_type: null });
      }
      scheduled = nextRun(definition.schedule, scheduled);
    }
  };
  // Between events the engine still looks on its ticks: when a for_seconds window completes, and each minute for time windows.
  const tickUntil = (limit: number) => {
    if (!condition || definition.schedule || !dependsOnTime(condition)) return;
    for (let at = nextTick(condition, runtime, lastMoment); at !== null && at <= limit; at = nextTick(condition, runtime, at)) {
      if (!mayGoOn()) return;
      looks += 1;
      const facts = factsAt(new Date(at).toISOString(), null);
      const observed = observe(condition, definition.cooldown_seconds, runtime, facts);
      runtime = observed.runtime;
      lastMoment = at;
      if (observed.verdict.kind === 'fire') record(facts, { kind: 'timer', position: null, event_type: null });
    }
  };
  let lastMoment = Date.parse(start);
  for (const { at, event } of moments) {
    const time = Date.parse(at);
    runScheduleUntil(time - 1);
    tickUntil(time);
    if (!mayGoOn()) break;
    looks += 1;
    lastMoment = Math.max(lastMoment, time);
    learn(event, readings, devices, statuses);
    if (!condition || definition.schedule || !concerns(condition, event)) continue;
    const facts = factsAt(at, { type: event.type, device_id: deviceOf(event) });
    const observed = observe(condition, definition.cooldown_seconds, runtime, facts);
    runtime = observed.runtime;
    if (observed.verdict.kind === 'fire') record(facts, { kind: 'condition', position: event.position, event_type: event.type });
  }
  runScheduleUntil(Date.parse(end));
  tickUntil(Date.parse(end));
  return { firings, complete: !cut, until: cut ? new Date(lastMoment).toISOString() : end };
}

const MINUTE_MS = 60_000;

/** The next moment after `after` at which time alone can change the condition. */
function nextTick(condition: Condition, runtime: RuleRuntime, after: number): number | null {
  const windows = leavesOf(condition).flatMap(({ path, leaf }) => {
    if (leaf.type === 'time') return [Math.floor(after / MINUTE_MS) * MINUTE_MS + MINUTE_MS];
    if (leaf.type !== 'reading' || leaf.for_seconds === undefined) return [];
    const since = runtime.holding[path];
    const due = since === undefined ? null : since + leaf.for_seconds * 1000;
    return due !== null && due > after ? [due] : [];
  });
  return windows.length > 0 ? Math.min(...windows) : null;
}

interface DeviceStatusParts {
  connectivity: Connectivity;
  state: ReportedState | null;
}

/** The facts an event changes, as the read models would know them after it. */
function learn(event: RecordedEvent, readings: Map<string, number>, devices: Map<string, DeviceStatusParts>, statuses: Map<string, string>): void {
  if (event.type === 'readings.recorded') for (const r of event.data.readings) readings.set(readingKey(event.data.device_id, r.sensor_type), r.value);
  const parts = statusPartsAfter(event, devices);
  if (parts) {
    devices.set(parts.deviceId, parts);
    statuses.set(parts.deviceId, displayedStatus(parts.connectivity, parts.state));
  }
}

function statusPartsAfter(event: RecordedEvent, devices: Map<string, DeviceStatusParts>): (DeviceStatusParts & { deviceId: string }) | null {
  switch (event.type) {
    case 'device.registered':
      return { deviceId: event.data.device_id, connectivity: 'offline', state: null };
    case 'device.came_online':
    case 'device.went_offline': {
      const known = devices.get(event.data.device_id);
      return { deviceId: event.data.device_id, connectivity: event.type === 'device.came_online' ? 'online' : 'offline', state: known?.state ?? null };
    }
    case 'device.state_reported':
      // A device reporting its state was just heard from: online now, or a came_online follows.
      return { deviceId: event.data.device_id, connectivity: devices.get(event.data.device_id)?.connectivity ?? 'online', state: event.data.state };
    default:
      return null;
  }
}

function describe(action: RuleDefinition['actions'][number]): string {
  switch (action.type) {
    case 'command':
      return `queue ${action.command_type} for ${action.device_id ? `device ${action.device_id}` : `every device of group ${action.group_id}`}`;
    case 'alert':
      return `raise a ${action.severity} alert: ${action.message}`;
    case 'enable_rule':
    case 'disable_rule':
      return `${action.type === 'enable_rule' ? 'enable' : 'disable'} rule ${action.rule_id}`;
  }
}

