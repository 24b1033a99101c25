import type { z } from 'zod';
import { visibleRule, type Rules } from '../../commands/rules.js';
import { ownerScope, type Services } from '../../commands/services.js';
import { requireUser } from '../../commands/devices.js';
import { simulate } from '../../automation/dry-run.js';
import { readHistory } from '../../automation/dry-run-history.js';
import type { RuleDefinition } from '../../domain/rule-schema.js';
import { decodeRule, listExecutions, listRules, type RuleRow } from '../../projections/rules.js';
import { readableStreamIds } from '../../projections/stream-owners.js';
import { defineRoute, ifMatchVersion } from '../route.js';
import { deleted, listMeta, paging } from '../schemas/common.js';
import { createRuleBody, dryRunAnswer, dryRunBody, execution, listRulesQuery, rule, updateRuleBody } from '../schemas/rules.js';

/** An action as a rule's execution row stores it: completed_at only once it completed. */
type ExecutionAction = Omit<z.infer<typeof execution>['actions'][number], 'completed_at'>;

const presentRule = (row: RuleRow) => ({
  id: row.id,
  user_id: row.user_id,
  ...decodeRule(row),
  last_triggered: row.last_triggered,
  trigger_count: row.trigger_count,
  created_at: row.created_at,
  updated_at: row.updated_at,
  version: row.version,
});

const definitionOf = (body: z.infer<typeof createRuleBody>): RuleDefinition => ({
  name: body.name,
  description: body.description ?? null,
  trigger_conditions: body.trigger_conditions ?? null,
  actions: body.actions,
  schedule: body.schedule ?? null,
  is_enabled: body.is_enabled ?? true,
  cooldown_seconds: body.cooldown_seconds ?? 0,
});

/** The README's rule: above 80 °C for a minute, turn the burner off and raise an alert. */
const DEVICE_ID = '3f0e1a52-8c1d-4b7e-9a55-2d6f0c9b1e77';
const OVERHEAT_RULE = {
  name: 'overheat',
  trigger_conditions: { all: [{ type: 'reading', device_id: DEVICE_ID, sensor_type: 'temperature', operator: '>', value: 80, for_seconds: 60 }] },
  actions: [
    { type: 'command', device_id: DEVICE_ID, command_type: 'burner_off' },
    { type: 'alert', severity: 'critical', message: 'boiler overheating' },
  ],
};

export function ruleRoutes(services: Services, rules: Rules) {
  return [
    defineRoute(
      { method: 'get', path: '/api/automation/rules', operationId: 'listRules', summary: 'Rules (filters: device_id, type, is_enabled)', tag: 'automation', access: 'user', query: listRulesQuery, response: rule.array(), list: true },
      ({ query, context }) => {
        const { rows, total } = listRules(services.sql, {
          userId: ownerScope(context.principal),
          ...(query.device_id ? { deviceId: query.device_id } : {}),
          ...(query.type ? { triggerType: query.type } : {}),
          ...(query.is_enabled !== undefined ? { isEnabled: query.is_enabled } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        return { data: rows.map(presentRule), meta: listMeta(total, query) };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/automation/rules', operationId: 'createRule', example: OVERHEAT_RULE, etag: true, summary: 'Create a rule; 400 for invalid logic, 409 rule_conflict for a contradicting enabled rule', tag: 'automation', access: 'user', body: createRuleBody, response: rule, status: 201 },
      async ({ body, context }) => {
        const row = await rules.create(definitionOf(body), body.allow_conflicts ?? false, context);
        return { data: presentRule(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/automation/rules/test', operationId: 'testRule', errors: [503], summary: 'Dry run: when a draft rule would have fired over recorded history, and what it would have done', tag: 'automation', access: 'user', body: dryRunBody, response: dryRunAnswer, storesNothing: true },
      async ({ body, context }) => {
        const userId = requireUser(context.principal);
        const definition = definitionOf(body.rule);
        rules.checkDraft(userId, definition);
        const history = await readHistory(services, readableStreamIds(services.sql, userId), body.start_date, body.end_date);
        // History cut at its cap: the run covers only what was read, and says so.
        const end = history.cut ? (history.moments.at(-1)?.at ?? body.start_date) : body.end_date;
        const { firings, complete, until } = simulate(definition, history.moments, body.start_date, end);
        return { data: { events_examined: history.events, count: firings.length, firings, complete: complete && !history.cut, simulated_until: until } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/automation/rules/:id', operationId: 'getRule', etag: true, summary: 'One rule', tag: 'automation', access: 'user', response: rule },
      ({ params, context }) => {
        const row = visibleRule(services, context.principal, params.id!);
        return { data: presentRule(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'put', path: '/api/automation/rules/:id', operationId: 'updateRule', ifMatch: true, etag: true, summary: 'Change a rule (honours If-Match)', tag: 'automation', access: 'user', body: updateRuleBody, response: rule },
      async ({ params, body, context, req }) => {
        const { enabled_status, allow_conflicts, is_enabled, ...rest } = body;
        const enabled = is_enabled ?? enabled_status;
        const changes: Partial<RuleDefinition> = Object.fromEntries(Object.entries({ ...rest, ...(enabled !== undefined ? { is_enabled: enabled } : {}) }).filter(([, v]) => v !== undefined));
        const row = await rules.update(params.id!, changes, allow_conflicts ?? false, context, ifMatchVersion(req));
        return { data: presentRule(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/automation/rules/:id', operationId: 'deleteRule', ifMatch: true, summary: 'Delete a rule; its schedule stops (honours If-Match)', tag: 'automation', access: 'user', response: deleted },
      async ({ req, params, context }) => {
        await rules.delete(params.id!, context, ifMatchVersion(req));
        return { data: { id: params.id!, deleted: true } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/automation/rules/:id/executions', operationId: 'listRuleExecutions', summary: "The rule's trigger history: when, what matched, each action's outcome", tag: 'automation', access: 'user', query: paging, response: execution.array(), list: true },
      ({ params, query, context }) => {
        const row = visibleRule(services, context.principal, params.id!);
        const { rows, total } = listExecutions(services.sql, row.id, query.limit, query.offset);
        return {
          data: rows.map((r) => ({
            id: r.id,
            rule_id: r.rule_id,
            triggered_at: r.triggered_at,
            cause: JSON.parse(r.cause) as Record<string, unknown>,
            matched: JSON.parse(r.matched) as Record<string, unknown>,
            actions: (JSON.parse(r.actions) as Array<ExecutionAction & { completed_at?: string }>).map((a) => ({ ...a, completed_at: a.completed_at ?? null })),
          })),
          meta: listMeta(total, query),
        };
      },
    ),
  ];
}
