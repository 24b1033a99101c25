import { notFound } from '../domain/errors.js';
import { streams } from '../domain/events.js';
import { templateDecider, type TemplateChanges } from '../domain/template.js';
import { findTemplate, type TemplateRow } from '../projections/templates.js';
import { requireUser } from './devices.js';
import { handle, type IfMatch } from './handle.js';
import { mayAccess, type Principal, type RequestContext, type Services } from './services.js';

export function visibleTemplate(services: Services, principal: Principal, templateId: string): TemplateRow {
  const template = findTemplate(services.sql, templateId);
  const allowed = template && mayAccess(principal, template.user_id);
  if (!allowed) throw notFound('template');
  return template;
}

export class Templates {
  constructor(private readonly services: Services) {}

  async create(fields: Required<TemplateChanges>, context: RequestContext): Promise<TemplateRow> {
    const userId = requireUser(context.principal);
    const templateId = this.services.newId();
    await handle(this.services, templateDecider, streams.template(templateId), { type: 'create_template', data: { template_id: templateId, user_id: userId, ...fields } }, context);
    return findTemplate(this.services.sql, templateId)!;
  }

  async update(templateId: string, changes: TemplateChanges, context: RequestContext, ifMatch?: IfMatch): Promise<TemplateRow> {
    visibleTemplate(this.services, context.principal, templateId);
    await handle(this.services, templateDecider, streams.template(templateId), { type: 'update_template', data: { changes } }, context, ifMatch !== undefined ? { ifMatch } : {});
    return findTemplate(this.services.sql, templateId)!;
  }

  async delete(templateId: string, context: RequestContext): Promise<void> {
    visibleTemplate(this.services, context.principal, templateId);
    await handle(this.services, templateDecider, streams.template(templateId), { type: 'delete_template' }, context);
  }
}
