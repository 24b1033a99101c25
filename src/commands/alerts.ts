import { alertDecider } from '../domain/alert.js';
import { notFound } from '../domain/errors.js';
import { streams } from '../domain/events.js';
import { findAlert, type AlertRow } from '../projections/alerts.js';
import { handle } from './handle.js';
import { mayAccess, type Principal, type RequestContext, type Services } from './services.js';

export function visibleAlert(services: Services, principal: Principal, alertId: string): AlertRow {
  const alert = findAlert(services.sql, alertId);
  const allowed = alert && mayAccess(principal, alert.user_id);
  if (!allowed) throw notFound('alert');
  return alert;
}

export async function changeAlert(services: Services, alertId: string, command: 'acknowledge_alert' | 'clear_alert', context: RequestContext): Promise<AlertRow> {
  visibleAlert(services, context.principal, alertId);
  await handle(services, alertDecider, streams.alert(alertId), { type: command }, context);
  return visibleAlert(services, context.principal, alertId);
}
