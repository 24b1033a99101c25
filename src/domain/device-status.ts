/**
 * A device's status: its connectivity (online or offline, from came_online / went_offline),
 * overridden while it is online by the operational state it last reported of itself in
 * `device_status` (`{"status": "error"}` or `"maintenance"`, or `state` for either).
 */
export type Connectivity = 'online' | 'offline';
export type ReportedState = 'error' | 'maintenance';

/**
 * What a device_status says of the device's operational state: error, maintenance, null for
 * any other statement (it is fine again), undefined when it says nothing about it.
 */
export function reportedState(deviceStatus: Record<string, unknown> | null): ReportedState | null | undefined {
  const said = deviceStatus?.status ?? deviceStatus?.state;
  if (typeof said !== 'string') return undefined;
  const state = said.trim().toLowerCase();
  return state === 'error' || state === 'maintenance' ? state : null;
}

export const displayedStatus = (connectivity: Connectivity, state: ReportedState | null): Connectivity | ReportedState =>
  connectivity === 'online' && state ? state : connectivity;
