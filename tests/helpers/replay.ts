import { join } from 'node:path';
import { pino } from 'pino';
import { createProjections } from '../../src/projections/index.js';
import { rebuildAndCompare } from '../../src/projections/rebuild.js';
import type { TestServer } from './server.js';

/** Rebuilds every read model from the server's log in a fresh database: the names of those that differ from the live ones. */
export async function replayDiffers(server: TestServer): Promise<string[]> {
  const { services, db } = server.server;
  const file = join(server.dataDir, `replay-${Date.now()}-${Math.random().toString(36).slice(2)}.db`);
  const result = await rebuildAndCompare({ db, log: services.log }, file, createProjections(services.config), pino({ level: 'silent' }));
  return result.differing;
}
