import type { Projection } from './projection.js';
import { queryBuilder as q, type Sql } from './sql.js';

/** Group command batches that roll out at a rate or watch their failure share. */
export const batchesProjection: Projection = {
  name: 'batches',
  version: 1,
  tables: ['batches'],
  ddl: `
    CREATE TABLE IF NOT EXISTS batches (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, group_id TEXT NOT NULL, device_ids TEXT NOT NULL, command TEXT NOT NULL,
      per_minute INTEGER, abort_failure_percent REAL, status TEXT NOT NULL, reason TEXT, started_at TEXT NOT NULL, finished_at TEXT);
    CREATE INDEX IF NOT EXISTS batches_status ON batches (status);`,

  apply(sql, event) {
    switch (event.type) {
      case 'batch.started': {
        const { batch_id, device_ids, command, ...rest } = event.data;
        sql.run(q.insertInto('batches').values({ id: batch_id, ...rest, device_ids: JSON.stringify(device_ids), command: JSON.stringify(command), status: 'active', reason: null, started_at: event.recorded_at, finished_at: null }));
        return;
      }
      case 'batch.finished':
        sql.run(q.updateTable('batches').set({ status: event.data.outcome, reason: event.data.reason, finished_at: event.recorded_at }).where('id', '=', event.data.batch_id));
        return;
      default:
        return;
    }
  },
};

export type BatchRow = NonNullable<ReturnType<typeof findBatch>>;

export const findBatch = (sql: Sql, id: string) => sql.first(q.selectFrom('batches').selectAll().where('id', '=', id));

export const activeBatches = (sql: Sql) => sql.all(q.selectFrom('batches').selectAll().where('status', '=', 'active'));
