import { z } from 'zod';

/**
 * The named schemas of the OpenAPI document (components/schemas), each registered where it is
 * defined, under the name generated clients will use. Requests and answers read the same
 * schema differently (a default makes a field optional to send but present in the answer), so
 * each name says which reading the document shows.
 */
export const components = z.registry<{ id: string; properties?: Record<string, unknown> }>();
const requestSchemas = new Set<string>();

/** Registers a schema under its name; `documented` adds what the document shows beyond the schema (the keys a free-form object holds that the server reads). */
export function named<S extends z.ZodType>(id: string, schema: S, reading: 'request' | 'answer' = 'answer', documented: { properties?: Record<string, unknown> } = {}): S {
  components.add(schema, { id, ...documented });
  if (reading === 'request') requestSchemas.add(id);
  return schema;
}

export const isRequestSchema = (id: string): boolean => requestSchemas.has(id);
