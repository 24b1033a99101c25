import { ownerScope, type Services } from '../../commands/services.js';
import { visibleTemplate, type Templates } from '../../commands/templates.js';
import { listTemplates, type TemplateRow } from '../../projections/templates.js';
import { defineRoute, ifMatchVersion } from '../route.js';
import { deleted, listMeta, paging } from '../schemas/common.js';
import { createTemplateBody, template, updateTemplateBody } from '../schemas/templates.js';

export const presentTemplate = (row: TemplateRow) => ({
  ...row,
  configuration: JSON.parse(row.configuration) as Record<string, unknown>,
  thresholds: JSON.parse(row.thresholds) as Record<string, unknown>,
});

export function templateRoutes(services: Services, templates: Templates) {
  return [
    defineRoute(
      { method: 'get', path: '/api/templates', operationId: 'listTemplates', summary: 'Device templates', tag: 'templates', access: 'user', query: paging, response: template.array(), list: true },
      ({ query, context }) => {
        const { rows, total } = listTemplates(services.sql, ownerScope(context.principal), query.limit, query.offset);
        return { data: rows.map(presentTemplate), meta: listMeta(total, query) };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/templates', operationId: 'createTemplate', etag: true, summary: 'Create a device template: a type with default configuration and thresholds', tag: 'templates', access: 'user', body: createTemplateBody, response: template, status: 201 },
      async ({ body, context }) => {
        const row = await templates.create({ name: body.name, device_type: body.device_type, description: body.description ?? null, configuration: body.configuration ?? {}, thresholds: body.thresholds ?? {} }, context);
        return { data: presentTemplate(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/templates/:id', operationId: 'getTemplate', etag: true, summary: 'One template', tag: 'templates', access: 'user', response: template },
      ({ params, context }) => {
        const row = visibleTemplate(services, context.principal, params.id!);
        return { data: presentTemplate(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'put', path: '/api/templates/:id', operationId: 'updateTemplate', ifMatch: true, etag: true, summary: 'Change a template (devices made from it keep their configuration)', tag: 'templates', access: 'user', body: updateTemplateBody, response: template },
      async ({ params, body, context, req }) => {
        const changes = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
        const row = await templates.update(params.id!, changes, context, ifMatchVersion(req));
        return { data: presentTemplate(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/templates/:id', operationId: 'deleteTemplate', summary: 'Delete a template', tag: 'templates', access: 'user', response: deleted },
      async ({ params, context }) => {
        await templates.delete(params.id!, context);
        return { data: { id: params.id!, deleted: true } };
      },
    ),
  ];
}
