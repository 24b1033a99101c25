import { z } from 'zod';
import { commandResultBody, firmwareProgressBody } from '../api/schemas/commands.js';
import { heartbeatBody, submitReadingsBody } from '../api/schemas/telemetry.js';
import { parse } from '../api/route.js';
import { checkParsedPayload, parseJsonPayload } from './payload.js';

/** The four things a device says, whatever carried them; bodies are exactly the HTTP ones. */
export type DeviceMessage =
  | { type: 'readings'; body: z.infer<typeof submitReadingsBody>; idempotencyKey: string | undefined }
  | { type: 'heartbeat'; body: z.infer<typeof heartbeatBody> }
  | { type: 'command_result'; commandId: string; body: z.infer<typeof commandResultBody> }
  | { type: 'firmware_progress'; body: z.infer<typeof firmwareProgressBody> };

export type DeviceMessageType = DeviceMessage['type'];

/** A client's correlation value, under the name it used (`id` or `ref`). */
export interface Correlation {
  field: 'id' | 'ref';
  value: string | number;
}

const correlationValue = z.union([z.string().max(200), z.number()]);
const correlation = { id: correlationValue.optional(), ref: correlationValue.optional() };
const idempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'an idempotency key is 1 to 200 visible ASCII characters');
const commandId = z.string().min(1).max(64);

/** Message bodies as they arrive without a type (MQTT: the topic says it), correlation fields allowed. */
export const payloadSchemas = {
  readings: submitReadingsBody.extend({ ...correlation, idempotency_key: idempotencyKey.optional() }),
  heartbeat: heartbeatBody.extend(correlation),
  command_result: commandResultBody.extend(correlation),
  firmware_progress: firmwareProgressBody.extend(correlation),
};

/** What a device may send on /ws/device: the same bodies as over HTTP, tagged with a type. */
export const socketMessage = z.discriminatedUnion('type', [
  payloadSchemas.readings.extend({ type: z.literal('readings') }),
  payloadSchemas.heartbeat.extend({ type: z.literal('heartbeat') }),
  payloadSchemas.command_result.extend({ type: z.literal('command_result'), command_id: commandId }),
  payloadSchemas.firmware_progress.extend({ type: z.literal('firmware_progress') }),
]);

/** The correlation field of a decoded payload, if it carries a usable one (`id` wins over `ref`). */
export function correlationOf(value: unknown): Correlation | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  for (const field of ['id', 'ref'] as const) {
    const candidate = correlationValue.safeParse((value as Record<string, unknown>)[field]);
    if (candidate.success) return { field, value: candidate.data };
  }
  return null;
}

/** A /ws/device frame, already decoded: validated as HTTP validates its bodies (same details). */
export function parseSocketMessage(value: unknown): DeviceMessage {
  const message = parse(socketMessage, value, '');
  switch (message.type) {
    case 'readings': {
      const { type: _t, id: _i, ref: _r, idempotency_key, ...body } = message;
      return { type: 'readings', body, idempotencyKey: idempotency_key };
    }
    case 'heartbeat': {
      const { type: _t, id: _i, ref: _r, ...body } = message;
      return { type: 'heartbeat', body };
    }
    case 'command_result': {
      const { type: _t, id: _i, ref: _r, command_id, ...body } = message;
      return { type: 'command_result', commandId: command_id, body };
    }
    case 'firmware_progress': {
      const { type: _t, id: _i, ref: _r, ...body } = message;
      return { type: 'firmware_progress', body };
    }
  }
}

/** A payload whose type a topic named (MQTT), validated the same way. */
export function parsePayload(type: DeviceMessageType, value: unknown, target: { commandId?: string } = {}): DeviceMessage {
  const tagged = value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...value, type, ...(target.commandId !== undefined ? { command_id: target.commandId } : {}) } : value;
  return parseSocketMessage(tagged);
}

/** A payload's bytes decoded and validated; the correlation is kept whenever the JSON parsed, so a refusal can carry it. */
export type Decoded = { correlation: Correlation | null } & ({ message: DeviceMessage } | { error: unknown });

export function decodeMessage(bytes: Buffer, validate: (value: unknown) => DeviceMessage): Decoded {
  let correlation: Correlation | null = null;
  try {
    const value = parseJsonPayload(bytes);
    correlation = correlationOf(value);
    checkParsedPayload(bytes, value);
    return { correlation, message: validate(value) };
  } catch (error) {
    return { correlation, error };
  }
}

/** How an answer carries the correlation: `ref` always (what older clients read), and `id` too when that is the field the client used. */
export function answerCorrelation(correlation: Correlation | null): Record<string, unknown> {
  if (!correlation) return { ref: null };
  return correlation.field === 'id' ? { ref: correlation.value, id: correlation.value } : { ref: correlation.value };
}
