import { leavesOf, readingKey, type Condition, type Facts } from '../domain/conditions.js';
import { deviceOf, type RecordedEvent } from '../domain/events.js';

/** Events that change a device's status: its connectivity, or the operational state it reports. */
const statusEvents = new Set(['device.came_online', 'device.went_offline', 'device.registered', 'device.state_reported']);

/** Whether an event can change what a condition evaluates to (so the rule must look again). */
export function concerns(condition: Condition, event: RecordedEvent): boolean {
  const device = deviceOf(event);
  return leavesOf(condition).some(({ leaf }) => {
    switch (leaf.type) {
      case 'reading':
        return event.type === 'readings.recorded' && leaf.device_id === device;
      case 'device_status':
        return leaf.device_id === device && statusEvents.has(event.type);
      case 'event':
        return leaf.event_type === event.type;
      case 'time':
        return false;
    }
  });
}

/** Conditions that change with time alone, and need a look on every tick. */
export const dependsOnTime = (condition: Condition): boolean =>
  leavesOf(condition).some(({ leaf }) => leaf.type === 'time' || (leaf.type === 'reading' && leaf.for_seconds !== undefined));

/** What the rule saw when it fired: each leaf's current value, for the execution history. */
export function matchedFacts(condition: Condition | null, facts: Facts): Record<string, unknown> {
  const matched: Record<string, unknown> = { at: facts.now.toISOString() };
  if (facts.event) matched.event = facts.event;
  for (const { path, leaf } of condition ? leavesOf(condition) : []) {
    const at = path.replace(/^root/, 'trigger_conditions');
    if (leaf.type === 'reading') matched[at] = { device_id: leaf.device_id, sensor_type: leaf.sensor_type, value: facts.readings.get(readingKey(leaf.device_id, leaf.sensor_type)) ?? null };
    if (leaf.type === 'device_status') matched[at] = { device_id: leaf.device_id, status: facts.statuses.get(leaf.device_id) ?? null };
  }
  return matched;
}

/** The devices whose readings or statuses a condition needs. */
export function devicesIn(condition: Condition | null): string[] {
  return [...new Set((condition ? leavesOf(condition) : []).flatMap(({ leaf }) => ('device_id' in leaf && leaf.device_id ? [leaf.device_id] : [])))];
}
