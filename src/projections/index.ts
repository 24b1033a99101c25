import { devicesProjection } from './devices.js';
import { groupsProjection } from './groups.js';
import type { Projection } from './projection.js';
import { usersProjection } from './users.js';

/** Every read model the runner keeps, in the order a digest reads them. */
export const allProjections: readonly Projection[] = [usersProjection, devicesProjection, groupsProjection];

export { ProjectionRunner } from './runner.js';
export { Sql } from './sql.js';
export type { Projection } from './projection.js';
