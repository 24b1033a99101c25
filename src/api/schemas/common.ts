import { z } from 'zod';

export const paging = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
export type Paging = z.infer<typeof paging>;

export const listMeta = (total: number, page: Paging) => ({ total, limit: page.limit, offset: page.offset });

export const booleanQuery = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

export const timestamp = z.string().describe('ISO 8601 UTC with milliseconds');
export const uuid = z.uuid();
export const nonBlank = (max: number) => z.string().trim().min(1).max(max);

export const deleted = z.object({ id: z.string(), deleted: z.literal(true) });
