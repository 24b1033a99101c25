import type { Projection } from './projection.js';
import { queryBuilder as q, type Sql } from './sql.js';

export const templatesProjection: Projection = {
  name: 'templates',
  version: 1,
  tables: ['templates'],
  ddl: `
    CREATE TABLE IF NOT EXISTS templates (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, device_type TEXT NOT NULL, description TEXT,
      configuration TEXT NOT NULL, thresholds TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS templates_user ON templates (user_id, created_at);`,

  apply(sql, event) {
    switch (event.type) {
      case 'template.created': {
        const { template_id, configuration, thresholds, ...rest } = event.data;
        sql.run(
          q.insertInto('templates').values({ id: template_id, ...rest, configuration: JSON.stringify(configuration), thresholds: JSON.stringify(thresholds), created_at: event.recorded_at, updated_at: event.recorded_at, version: event.version }),
        );
        return;
      }
      case 'template.updated': {
        const { configuration, thresholds, ...rest } = event.data.changes;
        sql.run(
          q
            .updateTable('templates')
            .set({
              ...rest,
              ...(configuration ? { configuration: JSON.stringify(configuration) } : {}),
              ...(thresholds ? { thresholds: JSON.stringify(thresholds) } : {}),
              updated_at: event.recorded_at,
              version: event.version,
            })
            .where('id', '=', event.data.template_id),
        );
        return;
      }
      case 'template.deleted':
        sql.run(q.deleteFrom('templates').where('id', '=', event.data.template_id));
        return;
      default:
        return;
    }
  },
};

export type TemplateRow = NonNullable<ReturnType<typeof findTemplate>>;

export const findTemplate = (sql: Sql, id: string) => sql.first(q.selectFrom('templates').selectAll().where('id', '=', id));

export function listTemplates(sql: Sql, userId: string | null, limit: number, offset: number) {
  let query = q.selectFrom('templates');
  if (userId !== null) query = query.where('user_id', '=', userId);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  return { total, rows: sql.all(query.selectAll().orderBy('created_at').orderBy('id').limit(limit).offset(offset)) };
}
