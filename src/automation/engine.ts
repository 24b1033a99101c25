import type { Subscription } from 'rxjs';
import { storeEvents, type Services } from '../commands/services.js';
import { evaluate, readingKey, type Condition, type Facts } from '../domain/conditions.js';
import { deviceOf, streams, type RecordedEvent } from '../domain/events.js';
import { actionSchedule, gate, initialRuntime, observe, type RuleRuntime, type Verdict } from '../domain/rule.js';
import type { RuleDefinition } from '../domain/rule-schema.js';
import { findDevice } from '../projections/devices.js';
import { userMayUse } from '../projections/groups.js';
import { decodeRule, dueActions, enabledRules, findExecution, findRule, type RuleRow } from '../projections/rules.js';
import { streamOwner } from '../projections/stream-owners.js';
import { latestReadings } from '../projections/telemetry-queries.js';
import type { ActionRunner } from './actions.js';
import { concerns, dependsOnTime, devicesIn, matchedFacts } from './facts.js';
import { nextRun } from './schedule.js';

interface LoadedRule {
  row: RuleRow;
  definition: RuleDefinition;
}

const CATCH_UP_PAGE = 500;
/**
 * Changes that make a rule start afresh (it fires at the first observation where its conditions
 * hold). A new name, description or actions leave its state alone: renaming a rule whose
 * conditions hold must not make it fire again while they stay true, nor restart its cooldown.
 */
const RESTARTING_CHANGES: ReadonlySet<string> = new Set(['trigger_conditions', 'schedule', 'cooldown_seconds', 'is_enabled']);

/**
 * The automation engine: follows applied events past its own checkpoint and the clock,
 * fires rules on the rising edge of their conditions or on their schedule, and records
 * every firing (rule.triggered) before running its actions, each completion an event.
 * Its runtime state and checkpoint live in its own tables, so for_seconds windows,
 * schedules and delays survive a restart; it never reprocesses what it has seen, and a
 * replay of the log (which runs no engine) fires nothing.
 */
export class AutomationEngine {
  private runtimes = new Map<string, RuleRuntime>();
  private readonly latest = new Map<string, { value: number; at: string }>();
  private rules: LoadedRule[] | null = null;
  private checkpoint = 0;
  /** A batch failed part way (a store refused, the read models stalled): what follows its checkpoint is read again from the log. */
  private behind = false;
  private work: Promise<void> = Promise.resolve();
  private subscription: Subscription | undefined;

  constructor(
    private readonly services: Services,
    private readonly actions: ActionRunner,
  ) {
    const { db } = services.sql;
    db.exec(`CREATE TABLE IF NOT EXISTS automation_runtime (rule_id TEXT PRIMARY KEY, runtime TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS automation_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL);`);
  }

  start(): void {
    const { db } = this.services.sql;
    const stored = db.prepare<[], { position: number }>(`SELECT position FROM automation_checkpoint WHERE id = 1`).get();
    // A log that predates the engine is history: automation starts from now, never replays it.
    this.checkpoint = stored?.position ?? this.services.runner.position();
    if (!stored) this.saveCheckpoint();
    for (const row of db.prepare<[], { rule_id: string; runtime: string }>(`SELECT rule_id, runtime FROM automation_runtime`).all()) {
      this.runtimes.set(row.rule_id, JSON.parse(row.runtime) as RuleRuntime);
    }
    this.subscription = this.services.runner.applied$.subscribe((events) => this.enqueue(() => (this.behind ? this.catchUp() : this.process(events))));
    this.enqueue(() => this.catchUp());
  }

  stop(): Promise<void> {
    this.subscription?.unsubscribe();
    return this.work;
  }

  /** Timer work: time-dependent conditions, schedules, and delayed actions now due. */
  tick(): Promise<void> {
    return this.enqueue(() => this.onTick());
  }

  /** Resolves once everything handed to the engine so far is done (for tests and shutdown). */
  idle(): Promise<void> {
    return this.enqueue(async () => undefined);
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    this.work = this.work.then(task).catch((error: unknown) => {
      this.behind = true;
      this.services.logger.error({ err: error }, 'automation failed; it reads on from its checkpoint with the next events');
    });
    return this.work;
  }

  /**
   * Events applied but not yet seen by the engine: after a crash, or after a batch that failed
   * part way. A rule that fired for an event before is not fired again (last_cause_position).
   */
  private async catchUp(): Promise<void> {
    this.behind = false;
    for (;;) {
      const ceiling = this.services.runner.position();
      const page = (await this.services.log.readAll({ afterPosition: this.checkpoint, limit: CATCH_UP_PAGE })).filter((e) => e.position <= ceiling);
      if (page.length === 0) return;
      await this.process(page);
    }
  }

  private async process(events: readonly RecordedEvent[]): Promise<void> {
    for (const event of events) {
      if (event.position <= this.checkpoint) continue;
      this.observeFacts(event);
      if (event.type === 'rule.created' || event.type === 'rule.updated' || event.type === 'rule.deleted') this.onRuleChanged(event);
      const seenBy = this.viewersOf(event);
      for (const rule of this.loadedRules()) {
        const condition = rule.definition.trigger_conditions;
        if (!condition || rule.definition.schedule || !concerns(condition, event)) continue;
        // A rule sees what its owner sees, as its dry run does: an event leaf naming no device
        // would otherwise fire on every user's events and show them in its executions.
        if (!seenBy(rule.row.user_id)) continue;
        // Fired for this very event before a crash (the firing is already in the log), or the
        // event is older than the rule's current definition: either way, not this rule's to judge.
        if (rule.row.last_cause_position >= event.position) continue;
        const facts = this.factsFor(rule.row.user_id, condition, { type: event.type, device_id: deviceOf(event) });
        await this.observeRule(rule, condition, facts, { kind: 'condition', position: event.position, event_type: event.type });
      }
      this.checkpoint = event.position;
    }
    this.saveCheckpoint();
  }

  private async onTick(): Promise<void> {
    // On a quiet system no applied batch may come to make up for one that failed.
    if (this.behind) await this.catchUp();
    const now = this.services.clock.now();
    for (const rule of this.loadedRules()) {
      const { trigger_conditions: condition, schedule } = rule.definition;
      if (schedule) await this.runSchedule(rule, condition, schedule, now.getTime());
      else if (condition && dependsOnTime(condition)) await this.observeRule(rule, condition, this.factsFor(rule.row.user_id, condition, null), { kind: 'timer', position: null, event_type: null });
    }
    await this.runDueActions(now.toISOString());
    this.saveCheckpoint();
  }

  private async runSchedule(rule: LoadedRule, condition: Condition | null, schedule: NonNullable<RuleDefinition['schedule']>, now: number): Promise<void> {
    const runtime = this.runtime(rule.row.id);
    if (runtime.next_run === null) {
      this.setRuntime(rule.row.id, { ...runtime, next_run: nextRun(schedule, now) });
      return;
    }
    if (runtime.next_run > now) return;
    const due = { ...runtime, next_run: nextRun(schedule, now) };
    const facts = this.factsFor(rule.row.user_id, condition ?? { all: [] }, null);
    if (condition && !evaluate(condition, facts)) return this.setRuntime(rule.row.id, due);
    const { verdict, runtime: next } = gate(rule.definition.cooldown_seconds, due, now);
    await this.act(rule, verdict, next, condition, facts, { kind: 'schedule', position: null, event_type: null });
  }

  private async observeRule(rule: LoadedRule, condition: Condition, facts: Facts, cause: { kind: 'condition' | 'timer'; position: number | null; event_type: string | null }): Promise<void> {
    const { verdict, runtime } = observe(condition, rule.definition.cooldown_seconds, this.runtime(rule.row.id), facts);
    await this.act(rule, verdict, runtime, condition, facts, cause);
  }

  /**
   * Records the verdict, and keeps the rule's new runtime once it is stored: a firing that could
   * not be stored leaves the rule as it was, to fire at its next observation, instead of having
   * used up its rising edge or its schedule slot for nothing.
   */
  private async act(
    rule: LoadedRule,
    verdict: Verdict,
    runtime: RuleRuntime,
    condition: Condition | null,
    facts: Facts,
    cause: { kind: 'condition' | 'timer' | 'schedule'; position: number | null; event_type: string | null },
  ): Promise<void> {
    const keepRuntime = () => this.setRuntime(rule.row.id, runtime);
    if (verdict.kind === 'throttled' && verdict.record) {
      return this.append(rule.row.id, { type: 'rule.throttled', data: { rule_id: rule.row.id, firings_last_minute: verdict.firings } }, keepRuntime);
    }
    if (verdict.kind !== 'fire') return keepRuntime();
    const firedAt = facts.now.getTime();
    const executionId = this.services.newId();
    const due = actionSchedule(rule.definition.actions, firedAt);
    const actions = rule.definition.actions.map((action, index) => ({ index, type: action.type, due_at: new Date(due[index]!).toISOString(), status: 'pending' as const, detail: null }));
    const triggered = { type: 'rule.triggered', data: { rule_id: rule.row.id, execution_id: executionId, user_id: rule.row.user_id, cause, matched: matchedFacts(condition, facts), actions } } as const;
    await this.append(rule.row.id, triggered, keepRuntime);
    await this.runDueActions(facts.now.toISOString());
  }

  /** Runs every pending action that is due, oldest first, each recorded as it completes. */
  private async runDueActions(now: string): Promise<void> {
    for (const pending of dueActions(this.services.sql, now)) {
      const execution = findExecution(this.services.sql, pending.execution_id);
      const row = findRule(this.services.sql, pending.rule_id);
      const action = row ? decodeRule(row).actions[pending.action_index] : undefined;
      const outcome = !row || !execution || !action ? { status: 'failed' as const, detail: 'the rule was deleted' } : row.is_enabled === 0 ? { status: 'failed' as const, detail: 'the rule was disabled' } : await this.actions.run(action, row);
      await this.append(pending.rule_id, { type: 'rule.action_completed', data: { rule_id: pending.rule_id, execution_id: pending.execution_id, index: pending.action_index, ...outcome } });
    }
  }

  /** Stores an event of the rule's stream; `onStored` runs once it is in the log, before the read models show it (they may be stalled). */
  private async append(ruleId: string, event: Parameters<Services['log']['append']>[0][number]['events'][number], onStored?: () => void): Promise<void> {
    const result = await storeEvents(this.services, [{ streamId: streams.rule(ruleId), expectedVersion: 'any', events: [event], metadata: { actor_type: 'system', causation_id: ruleId } }]);
    this.rules = null;
    onStored?.();
    await this.services.runner.waitFor(result.lastPosition);
  }

  /**
   * Who may see an event, asked once per rule owner: anyone who may view its device (owner or
   * member of a group it is in, as it is now: a transferred device leaves its giver's rules),
   * or for an event of no device, its stream's owner.
   */
  private viewersOf(event: RecordedEvent): (userId: string) => boolean {
    const { sql } = this.services;
    const answers = new Map<string, boolean>();
    // Looked up for the first rule the event concerns: most events concern none.
    let device: ReturnType<typeof findDevice> | null = null;
    let owner: string | null | undefined;
    return (userId) => {
      let answer = answers.get(userId);
      if (answer === undefined) {
        const deviceId = deviceOf(event);
        if (device === null) device = deviceId ? findDevice(sql, deviceId) : undefined;
        if (device) answer = userMayUse(sql, userId, device, 'viewer');
        else answer = (owner ??= streamOwner(sql, event.stream_id)?.user_id ?? null) === userId;
        answers.set(userId, answer);
      }
      return answer;
    };
  }

  /** What a rule of `userId` sees: the readings and statuses of the devices it names that the user may view now. */
  private factsFor(userId: string, condition: Condition, event: Facts['event']): Facts {
    const readings = new Map<string, number>();
    const statuses = new Map<string, string>();
    for (const deviceId of devicesIn(condition)) {
      const device = findDevice(this.services.sql, deviceId);
      if (!device || !userMayUse(this.services.sql, userId, device, 'viewer')) continue;
      statuses.set(deviceId, device.status);
      for (const reading of latestReadings(this.services.sql, deviceId)) {
        const key = readingKey(deviceId, reading.sensor_type);
        const live = this.latest.get(key);
        readings.set(key, live && live.at >= reading.timestamp ? live.value : reading.value);
      }
      // Readings of the current batch not yet in the raw rows (or pruned from them).
      for (const [key, { value }] of this.latest) if (key.startsWith(readingKey(deviceId, '')) && !readings.has(key)) readings.set(key, value);
    }
    return { now: this.services.clock.now(), readings, statuses, holdingSince: new Map(), event };
  }

  /** Readings of the current event, in case the raw rows were already pruned or not yet read. */
  private observeFacts(event: RecordedEvent): void {
    if (event.type !== 'readings.recorded') return;
    for (const reading of event.data.readings) {
      const key = readingKey(event.data.device_id, reading.sensor_type);
      const current = this.latest.get(key);
      if (!current || reading.timestamp >= current.at) this.latest.set(key, { value: reading.value, at: reading.timestamp });
    }
  }

  /** A new or deleted rule, or a change in RESTARTING_CHANGES, starts it afresh: a disabled or deleted one stops at once. */
  private onRuleChanged(event: RecordedEvent): void {
    this.rules = null;
    if (event.type === 'rule.updated' && !Object.keys(event.data.changes).some((field) => RESTARTING_CHANGES.has(field))) return;
    const ruleId = (event.data as { rule_id: string }).rule_id;
    this.runtimes.delete(ruleId);
    this.services.sql.db.prepare(`DELETE FROM automation_runtime WHERE rule_id = ?`).run(ruleId);
  }

  private loadedRules(): LoadedRule[] {
    this.rules ??= enabledRules(this.services.sql).map((row) => ({ row, definition: decodeRule(row) }));
    return this.rules;
  }

  private runtime(ruleId: string): RuleRuntime {
    return this.runtimes.get(ruleId) ?? initialRuntime();
  }

  private setRuntime(ruleId: string, runtime: RuleRuntime): void {
    this.runtimes.set(ruleId, runtime);
    this.services.sql.db.prepare(`INSERT OR REPLACE INTO automation_runtime (rule_id, runtime) VALUES (?, ?)`).run(ruleId, JSON.stringify(runtime));
  }

  private saveCheckpoint(): void {
    this.services.sql.db.prepare(`INSERT OR REPLACE INTO automation_checkpoint (id, position) VALUES (1, ?)`).run(this.checkpoint);
  }
}
