import { randomBytes } from 'node:crypto';
import { PersonalKeys, SecretBox, personalKeysIn, secretBoxFor } from '../eventlog/index.js';
import { alertsProjection } from './alerts.js';
import { commandsProjection } from './commands.js';
import { deviceHealthProjection } from './device-health.js';
import { deviceLogsProjection } from './device-logs.js';
import { devicesProjection } from './devices.js';
import { groupsProjection } from './groups.js';
import { rulesProjection } from './rules.js';
import { templatesProjection } from './templates.js';
import { batchesProjection } from './batches.js';
import { streamOwnersProjection } from './stream-owners.js';
import type { Projection } from './projection.js';
import { telemetryProjection } from './telemetry.js';
import { usersProjection } from './users.js';

export interface ProjectionSettings {
  retentionDays: number;
  /** Where the key that opens sealed fields comes from (see secretBoxFor); without a data dir, a key of its own. */
  dataDir?: string;
  secretsKey?: string | null;
}

/**
 * Every read model the runner keeps, in the order a digest reads them. A factory, not a
 * constant: some projections hold per-batch state, and a rebuild needs its own instances.
 */
export function createProjections(settings: ProjectionSettings): Projection[] {
  const secrets = settings.dataDir !== undefined ? secretBoxFor({ dataDir: settings.dataDir, secretsKey: settings.secretsKey ?? null }) : new SecretBox(randomBytes(32).toString('base64url'));
  const personal = settings.dataDir !== undefined ? personalKeysIn(settings.dataDir, secrets) : new PersonalKeys(null, secrets);
  return [
    usersProjection({ secrets, personal }),
    devicesProjection(secrets),
    groupsProjection,
    telemetryProjection(settings.retentionDays),
    deviceHealthProjection(),
    deviceLogsProjection,
    alertsProjection,
    streamOwnersProjection,
    commandsProjection,
    rulesProjection,
    templatesProjection,
    batchesProjection,
  ];
}

export { ProjectionRunner } from './runner.js';
export { Sql } from './sql.js';
export type { Projection } from './projection.js';
