import { alertDecider } from '../domain/alert.js';
import { notFound } from '../domain/errors.js';
import { streams } from '../domain/events.js';
import { findAlert, type AlertRow } from '../projections/alerts.js';
import { findDevice } from '../projections/devices.js';
import { visibleDevice, type DeviceNeed } from './devices.js';
import { handle } from './handle.js';
import { mayAccess, type Principal, type RequestContext, type Services } from './services.js';

/** An alert as its owner or an admin may use it, or a member whose role on its device's group reaches `need`. */
export function visibleAlert(services: Services, principal: Principal, alertId: string, need: DeviceNeed = 'own'): AlertRow {
  const alert = findAlert(services.sql, alertId);
  if (!alert) throw notFound('alert');
  if (mayAccess(principal, alert.user_id)) return alert;
  if (alert.device_id === null || !findDevice(services.sql, alert.device_id)) throw notFound('alert');
  visibleDevice(services, principal, alert.device_id, need);
  return alert;
}

/** Operators acknowledge the alerts of shared devices; clearing stays with the owner. */
export async function changeAlert(services: Services, alertId: string, command: 'acknowledge_alert' | 'clear_alert', context: RequestContext): Promise<AlertRow> {
  const need = command === 'acknowledge_alert' ? 'operator' : 'own';
  visibleAlert(services, context.principal, alertId, need);
  await handle(services, alertDecider, streams.alert(alertId), { type: command }, context);
  return findAlert(services.sql, alertId)!;
}
