import type { DeviceCommands } from '../commands/device-commands.js';
import { DEFAULT_TIMEOUT_SECONDS } from '../commands/device-commands.js';
import type { Rules } from '../commands/rules.js';
import { storeEvents, type Services } from '../commands/services.js';
import { streams } from '../domain/events.js';
import type { RuleAction } from '../domain/rule-schema.js';
import { findDevice, type DeviceRow } from '../projections/devices.js';
import { groupCommandTargets } from '../projections/group-summaries.js';
import { findGroup, userMayUse, userMayUseGroup } from '../projections/groups.js';
import { findRule } from '../projections/rules.js';
import type { Sql } from '../projections/sql.js';

export interface ActionOutcome {
  status: 'done' | 'failed';
  detail: string;
}

/**
 * The device an action names, if it is still there and its rule's owner may still operate it
 * (owns it, or operator or better on a group it is in); otherwise why not, as a failed outcome.
 */
function operableDevice(sql: Sql, rule: { user_id: string }, deviceId: string): DeviceRow | ActionOutcome {
  const device = findDevice(sql, deviceId);
  if (!device) return deviceGone(deviceId);
  return userMayUse(sql, rule.user_id, device, 'operator') ? device : { status: 'failed', detail: `device ${deviceId} is no longer the rule owner's to operate` };
}

const deviceGone = (deviceId: string): ActionOutcome => ({ status: 'failed', detail: `device ${deviceId} no longer exists` });
const isOutcome = (found: DeviceRow | ActionOutcome): found is ActionOutcome => 'status' in found && 'detail' in found;

/** Carries out one rule action as the rule's owner; a failure is an outcome, not an exception. */
export class ActionRunner {
  constructor(
    private readonly services: Services,
    private readonly commands: DeviceCommands,
    private readonly rules: Rules,
  ) {}

  async run(action: RuleAction, rule: { id: string; user_id: string }): Promise<ActionOutcome> {
    try {
      return await this.perform(action, rule);
    } catch (error) {
      return { status: 'failed', detail: error instanceof Error ? error.message : 'failed' };
    }
  }

  private async perform(action: RuleAction, rule: { id: string; user_id: string }): Promise<ActionOutcome> {
    const { sql } = this.services;
    switch (action.type) {
      case 'command': {
        const input = { command_type: action.command_type, parameters: action.parameters ?? {}, priority: action.priority ?? 'normal', expires_in: null, timeout_seconds: DEFAULT_TIMEOUT_SECONDS, retries: 0 } as const;
        if (action.device_id !== undefined) {
          const device = operableDevice(sql, rule, action.device_id);
          if (isOutcome(device)) return device;
          // Deleted in between, it is refused under its lock: the same outcome. The command is
          // the device owner's, as one an operator queues by hand is.
          const command = await this.commands.queueUnlessDeleted(device.id, device.user_id, { ...input, batch_id: null }, null);
          return command ? { status: 'done', detail: `queued command ${command.id}` } : deviceGone(action.device_id);
        }
        const groupId = action.group_id!;
        const group = findGroup(sql, groupId);
        if (!group) return { status: 'failed', detail: `group ${groupId} no longer exists` };
        if (!userMayUseGroup(sql, rule.user_id, group, 'operator')) return { status: 'failed', detail: `group ${groupId} is no longer the rule owner's to operate` };
        const targets = groupCommandTargets(sql, groupId);
        const batchId = this.services.newId();
        // A device deleted since the group was read is left out; any other failure fails the action.
        const commands = await Promise.all(targets.map((deviceId) => this.commands.queueUnlessDeleted(deviceId, group.user_id, { ...input, batch_id: batchId }, null)));
        return { status: 'done', detail: `queued ${commands.filter((command) => command !== null).length} commands in batch ${batchId}` };
      }
      case 'alert': {
        const { device_id } = action;
        if (device_id === undefined) return this.raiseAlert(action, rule);
        // Under the device's lock, as its deletion is: a deleted device's alerts are gone, and none comes after.
        return this.services.locks.devices.run(device_id, async () => {
          const device = operableDevice(sql, rule, device_id);
          return isOutcome(device) ? device : this.raiseAlert(action, rule, device.user_id);
        });
      }
      case 'enable_rule':
      case 'disable_rule': {
        if (!findRule(sql, action.rule_id)) return { status: 'failed', detail: `rule ${action.rule_id} no longer exists` };
        await this.rules.update(action.rule_id, { is_enabled: action.type === 'enable_rule' }, true, null);
        return { status: 'done', detail: `${action.type === 'enable_rule' ? 'enabled' : 'disabled'} rule ${action.rule_id}` };
      }
    }
  }

  /** An alert on a device is its owner's (as a threshold alert is), so the owner sees what a member's rule raised. */
  private async raiseAlert(action: Extract<RuleAction, { type: 'alert' }>, rule: { id: string; user_id: string }, ownerId = rule.user_id): Promise<ActionOutcome> {
    const alertId = this.services.newId();
    const result = await storeEvents(this.services, [
      {
        streamId: streams.alert(alertId),
        expectedVersion: 'no_stream',
        events: [{ type: 'alert.raised', data: { alert_id: alertId, device_id: action.device_id ?? null, user_id: ownerId, rule_id: rule.id, kind: 'rule', sensor_type: null, severity: action.severity, message: action.message, value: null } }],
        metadata: { actor_type: 'system', causation_id: rule.id },
      },
    ]);
    await this.services.runner.waitFor(result.lastPosition);
    return { status: 'done', detail: `raised alert ${alertId}` };
  }
}
