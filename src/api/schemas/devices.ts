import { z } from 'zod';
import { fingerprintSchema } from '../../domain/certificates.js';
import { strictObject, synonymsAgree } from '../../domain/strict.js';
import { deviceStatusSchema } from '../../domain/events.js';
import { configurationProblems } from '../../domain/thresholds.js';
import { isoInstant, jsonObject, nonBlank, paging, timestamp } from './common.js';
import { API_KEY_PREFIX, SESSION_PREFIX } from '../../commands/credentials.js';
import { named } from './components.js';

const MAC = /^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$/;
const macAddress = z.string().regex(MAC, 'not a valid MAC address (six hex pairs separated by : or -)');
const deviceType = z.string().trim().min(1).max(64);
/** What the server reads of a configuration (thresholds, ranges, anomaly_z) must make sense; the rest is the device's. */
export const deviceConfiguration = named(
  'DeviceConfiguration',
  jsonObject.superRefine((value, ctx) => {
    for (const { path, message } of configurationProblems(value)) ctx.addIssue({ code: 'custom', path, message });
  }),
  'request',
  {
    properties: {
      thresholds: { anyOf: [{ $ref: '#/components/schemas/Thresholds' }, { type: 'null' }], description: 'alert bounds per sensor type; null for none' },
      anomaly_z: { type: 'number', exclusiveMinimum: 0, description: 'deviations from the recent mean that count as an anomaly (default 4)' },
      ranges: {
        anyOf: [
          { type: 'object', additionalProperties: { type: 'object', properties: { min: { type: 'number' }, max: { type: 'number' } }, required: ['min', 'max'], additionalProperties: false } },
          { type: 'null' },
        ],
        description: "plausible range per sensor type (min ≤ max), replacing the server's default for that sensor when scoring reading quality",
      },
    },
  },
);
const configuration = deviceConfiguration;

const editable = {
  name: nonBlank(100),
  description: z.string().max(2000).nullable(),
  ip_address: z.union([z.ipv4(), z.ipv6()], { error: 'not a valid IPv4 or IPv6 address' }).nullable(),
  group_id: z.uuid().nullable(),
  configuration,
  firmware_version: z.string().trim().min(1).max(64).nullable(),
};

export const registerDeviceBody = strictObject({
  ...editable,
  type: deviceType.optional(),
  device_type: deviceType.optional(),
  description: editable.description.optional(),
  ip_address: editable.ip_address.optional(),
  mac_address: macAddress.nullable().optional(),
  auth_token: z
    .string()
    .min(16, 'at least 16 characters')
    .max(256)
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
    .refine((token) => !token.startsWith(SESSION_PREFIX) && !token.startsWith(API_KEY_PREFIX), 'must not start with eyJ or iotk_ (reserved for sessions and API keys)')
    .optional(),
  group_id: editable.group_id.optional(),
  configuration: configuration.optional(),
  firmware_version: editable.firmware_version.optional(),
  /** Start from a template: its type, configuration and thresholds, overridden by what is given. */
  template_id: z.uuid().optional(),
  /** A client certificate that may speak for the device under mutual TLS, by its SHA-256 fingerprint. */
  certificate_fingerprint: fingerprintSchema.optional(),
})
  .refine((body) => body.type !== undefined || body.device_type !== undefined || body.template_id !== undefined, {
    message: 'type or device_type is required (or a template_id)',
    path: ['device_type'],
  })
  .superRefine(synonymsAgree(['type', 'device_type']));

export const updateDeviceBody = strictObject({
  name: editable.name.optional(),
  description: editable.description.optional(),
  settings: configuration.optional(),
  configuration: configuration.optional(),
  group_id: editable.group_id.optional(),
  device_type: deviceType.optional(),
  type: deviceType.optional(),
  ip_address: editable.ip_address.optional(),
  firmware_version: editable.firmware_version.optional(),
}).superRefine(synonymsAgree(['type', 'device_type'], ['settings', 'configuration']));

export const listDevicesQuery = paging
  .extend({
    status: deviceStatusSchema.optional(),
    type: z.string().max(64).optional(),
    device_type: z.string().max(64).optional(),
    group_id: z.uuid().optional(),
    q: z.string().max(100).optional(),
  })
  .superRefine(synonymsAgree(['type', 'device_type']));

export const deviceDetailQuery = strictObject({ as_of: isoInstant.optional() });

export const device = named(
  'Device',
  z.object({
    id: z.string(),
    user_id: z.string(),
    name: z.string(),
    device_type: z.string(),
    description: z.string().nullable(),
    ip_address: z.string().nullable(),
    mac_address: z.string().nullable(),
    status: deviceStatusSchema,
    last_seen: timestamp.nullable(),
    firmware_version: z.string().nullable(),
    group_id: z.string().nullable(),
    configuration,
    certificate_fingerprint: z.string().nullable().describe('SHA-256 of the bound client certificate (mutual TLS), 64 lowercase hex digits'),
    created_at: timestamp,
    updated_at: timestamp,
    version: z.number().int(),
  }),
);

export const certificateBody = strictObject({ fingerprint: fingerprintSchema });

export const registeredDevice = named('RegisteredDevice', device.extend({ credentials: z.object({ device_id: z.string(), auth_token: z.string() }) }));

export const deviceDetail = named(
  'DeviceDetail',
  device.extend({
    recent_data: z.array(z.record(z.string(), z.unknown())),
    recent_commands: z.array(z.record(z.string(), z.unknown())),
    metrics: z.record(z.string(), z.unknown()),
    desired_configuration: configuration.optional(),
    reported_configuration: configuration.nullable().optional(),
    configuration_diff: z.array(z.object({ path: z.string(), desired: z.unknown(), reported: z.unknown() })).optional(),
    configuration_in_sync: z.boolean().optional(),
    firmware: z.record(z.string(), z.unknown()).nullable().optional(),
  }),
);

/** A device as it was at a moment (as_of): the live view's fields that the log can tell. */
export const deviceAsOfAnswer = named(
  'DeviceAsOf',
  device.extend({
    desired_configuration: deviceDetail.shape.desired_configuration.unwrap(),
    reported_configuration: deviceDetail.shape.reported_configuration.unwrap(),
    configuration_diff: deviceDetail.shape.configuration_diff.unwrap(),
    configuration_in_sync: z.boolean(),
    firmware: deviceDetail.shape.firmware.unwrap(),
  }),
);

export const storedEvent = named(
  'Event',
  z.object({
    position: z.number().int(),
    stream_id: z.string(),
    version: z.number().int(),
    type: z.string(),
    data: z.record(z.string(), z.unknown()),
    metadata: z.record(z.string(), z.unknown()),
    recorded_at: timestamp,
    hash: z.string(),
    /** Secret fields of an event written before sealing, shown redacted. */
    redacted: z.array(z.string()).optional(),
  }),
);

export const provisionBody = strictObject({
  mac_address: macAddress,
  name: editable.name.optional(),
  type: deviceType.optional(),
  device_type: deviceType.optional(),
  description: editable.description.optional(),
  group_id: editable.group_id.optional(),
  configuration: configuration.optional(),
  firmware_version: editable.firmware_version.optional(),
  current_token: z.string().min(1).max(4096).optional().describe("the device's current token: needed to provision a registered MAC again with a provisioning key (API key) alone"),
}).superRefine(synonymsAgree(['type', 'device_type']));

export const MAX_BULK_OPERATIONS = 100;

export const bulkRegister = strictObject({ action: z.literal('register'), device: registerDeviceBody.describe('the device, as POST /api/devices takes it') });
export const bulkUpdate = strictObject({ action: z.literal('update'), id: z.string().min(1).max(64), changes: updateDeviceBody.describe('the changes, as PUT /api/devices/{id} takes them') });
export const bulkDelete = strictObject({ action: z.literal('delete'), id: z.string().min(1).max(64) });

const operationShapes = z.discriminatedUnion('action', [bulkRegister, bulkUpdate, bulkDelete]);
const operationAction = z.object({ action: z.enum(['register', 'update', 'delete']) }).loose();

/**
 * One operation: the document shows its three shapes, the envelope checks only its action. The
 * rest is validated with the operation (bulkRegister ...), so one bad item fails alone under its
 * own path; an item that does not fit its shape passes here as sent.
 */
const bulkOperation = z.pipe(
  operationShapes.catch((ctx) => ctx.value as z.output<typeof operationShapes>),
  operationAction as unknown as z.ZodType<z.output<typeof operationAction>, z.output<typeof operationShapes>>,
);

export const bulkBody = strictObject({
  operations: z.array(bulkOperation).min(1, 'at least one operation').max(MAX_BULK_OPERATIONS, `at most ${MAX_BULK_OPERATIONS} operations`),
});

export const bulkMeta = z.object({ total: z.number().int(), succeeded: z.number().int(), failed: z.number().int() });

export const bulkAnswer = z.array(
  named('BulkOperationResult', z.object({ index: z.number().int(), action: z.string(), status: z.number().int(), data: z.unknown().optional(), error: z.object({ code: z.string(), message: z.string(), details: z.array(z.unknown()) }).optional() })),
);

export const offerTransferBody = strictObject({ user_id: z.uuid().optional(), username: z.string().min(1).max(254).optional() }).refine((body) => (body.user_id === undefined) !== (body.username === undefined), { message: 'name the receiver by exactly one of user_id or username', path: ['user_id'] });

export const transferOffer = z.object({ device_id: z.string(), to_user_id: z.string(), status: z.literal('offered') });
