import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parse } from '../../src/api/route.js';
import { createRuleBody } from '../../src/api/schemas/rules.js';
import { queueCommandBody } from '../../src/api/schemas/commands.js';
import { registerDeviceBody, updateDeviceBody } from '../../src/api/schemas/devices.js';
import { closestField, editDistance } from '../../src/domain/strict.js';
import { DomainError } from '../../src/domain/errors.js';

/** The details of the validation_failed a value answers with. */
function refusal(schema: z.ZodType, value: unknown): Array<{ path: string; message: string }> {
  try {
    parse(schema, value, '');
  } catch (error) {
    if (error instanceof DomainError && error.code === 'validation_failed') return error.details as Array<{ path: string; message: string }>;
    throw error;
  }
  throw new Error('accepted');
}

const DEVICE = '00000000-0000-4000-8000-0000000000d1';
const reading = { type: 'reading', device_id: DEVICE, sensor_type: 'temperature', operator: '>', value: 80 };
const alert = { type: 'alert', severity: 'critical', message: 'hot' };

describe('strict input', () => {
  it('measures typos as edits, a swap of neighbours as one', () => {
    expect(editDistance('for_second', 'for_seconds')).toBe(1);
    expect(editDistance('priorty', 'priority')).toBe(1);
    expect(editDistance('pirority', 'priority')).toBe(1);
    expect(closestField('maximum', ['min', 'max', 'hysteresis'])).toBe('max');
    expect(closestField('colour', ['name', 'device_type'])).toBeUndefined();
  });

  it('names a misspelt field of a rule condition and the field meant', () => {
    const details = refusal(createRuleBody, { name: 'hot', trigger_conditions: { ...reading, for_second: 60 }, actions: [alert] });
    expect(details).toEqual([{ path: 'trigger_conditions.for_second', message: 'unknown field "for_second"; did you mean "for_seconds"?' }]);
  });

  it('finds a misspelling deep in a condition tree, in an action and in a schedule', () => {
    const nested = { all: [{ any: [{ not: { ...reading, opertor: '>' } }] }] };
    expect(refusal(createRuleBody, { name: 'n', trigger_conditions: nested, actions: [alert] })).toEqual([
      { path: 'trigger_conditions.all.0.any.0.not.opertor', message: 'unknown field "opertor"; did you mean "operator"?' },
    ]);
    expect(refusal(createRuleBody, { name: 'n', actions: [{ ...alert, delay_second: 5 }] })[0]?.path).toBe('actions.0.delay_second');
    expect(refusal(createRuleBody, { name: 'n', actions: [alert], schedule: { every_second: 60 } })).toContainEqual({ path: 'schedule.every_second', message: 'unknown field "every_second"; did you mean "every_seconds"?' });
  });

  it('refuses an AND alias mixed with all, rather than letting one win', () => {
    const mixed = { operator: 'OR', conditions: [reading], all: [reading] };
    expect(refusal(createRuleBody, { name: 'n', trigger_conditions: mixed, actions: [alert] })[0]?.path).toMatch(/^trigger_conditions\./);
  });

  it('refuses a misspelt threshold bound, but keeps the rest of a configuration free', () => {
    const details = refusal(registerDeviceBody, { name: 'n', type: 't', configuration: { sample_rate: 5, thresholds: { temperature: { maximum: 80 } } } });
    expect(details).toEqual([{ path: 'configuration.thresholds.temperature.maximum', message: 'unknown field "maximum"; did you mean "max"?' }]);
    expect(() => parse(registerDeviceBody, { name: 'n', type: 't', configuration: { anything: { goes: 1 } } }, '')).not.toThrow();
  });

  it('names each unknown field on its own, and keeps command parameters free', () => {
    const details = refusal(queueCommandBody, { command_type: 'reboot', priorty: 'high', colour: 'red' });
    expect(details).toEqual([
      { path: 'priorty', message: 'unknown field "priorty"; did you mean "priority"?' },
      { path: 'colour', message: 'unknown field "colour"' },
    ]);
    expect(parse(queueCommandBody, { command_type: 'reboot', parameters: { any: 'thing' } }, '').parameters).toEqual({ any: 'thing' });
  });

  it('refuses synonyms given together with different values, and takes them when they agree', () => {
    expect(refusal(registerDeviceBody, { name: 'n', type: 'a', device_type: 'b' })[0]?.path).toBe('device_type');
    expect(refusal(updateDeviceBody, { settings: { a: 1 }, configuration: { a: 2 } })[0]?.path).toBe('configuration');
    expect(() => parse(updateDeviceBody, { settings: { a: [1] }, configuration: { a: [1] } }, '')).not.toThrow();
  });
});
