import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/**
 * Contract checks: every answer the test client receives is checked against the response
 * schema that the served OpenAPI document gives its operation and status, so code and document
 * cannot drift apart without a failing test. The document is read once from the first server
 * that answers and compiled with a JSON Schema 2020-12 validator.
 */
interface Operation {
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
}

interface Contract {
  document: Document;
  ajv: Ajv2020;
  /** Paths as patterns, literal ones first: /api/devices/provision before /api/devices/{id}. */
  routes: Array<{ template: string; pattern: RegExp }>;
  validators: Map<string, ValidateFunction>;
}

let contract: Promise<Contract> | undefined;

async function load(baseUrl: string): Promise<Contract> {
  const answer = await fetch(`${baseUrl}/api/openapi.json`);
  if (answer.status !== 200) throw new Error(`the OpenAPI document answered ${answer.status}`);
  const document = (await answer.json()) as Document;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema(document as object, 'openapi');
  const routes = Object.keys(document.paths)
    .sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0))
    .map((template) => ({ template, pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`) }));
  return { document, ajv, routes, validators: new Map() };
}

const pointer = (...parts: string[]) => parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** The validator of one operation's answer at one status; the Error schema where no route matches. */
function validatorFor(c: Contract, method: string, path: string, status: number): ValidateFunction | string {
  const route = c.routes.find(({ pattern }) => pattern.test(path));
  const operation = route && c.document.paths[route.template]![method];
  if (!route || !operation) return c.ajv.getSchema('openapi#/components/schemas/Error')!;
  const answer = operation.responses[String(status)] ?? operation.responses.default;
  if (!answer) return `${method.toUpperCase()} ${route.template} does not document status ${status}`;
  if (!answer.content?.['application/json']) return `${method.toUpperCase()} ${route.template} documents no JSON answer at ${status}`;
  const key = `${method} ${route.template} ${status}`;
  let validate = c.validators.get(key);
  if (!validate) {
    const at = answer === operation.responses.default ? 'default' : String(status);
    validate = c.ajv.compile({ $ref: `openapi#/${pointer('paths', route.template, method, 'responses', at, 'content', 'application/json', 'schema')}` });
    c.validators.set(key, validate);
  }
  return validate;
}

const CHECKED_METHODS = new Set(['get', 'post', 'put', 'delete']);

/**
 * Throws when a JSON answer does not match what the document says of it. Answers outside the
 * JSON contract (streams, CORS preflights, bodiless ones) are not checked.
 */
export async function checkAnswer(baseUrl: string, method: string, url: string, status: number, contentType: string | null, body: unknown): Promise<void> {
  const verb = method.toLowerCase();
  if (!CHECKED_METHODS.has(verb) || !contentType?.includes('application/json') || body === undefined) return;
  contract ??= load(baseUrl).catch((error: unknown) => {
    contract = undefined; // a server going down mid-test: try again with the next answer
    throw error;
  });
  const c = await contract.catch(() => undefined);
  if (!c) return;
  const path = new URL(url, baseUrl).pathname;
  const validate = validatorFor(c, verb, path, status);
  if (typeof validate === 'string') throw new Error(`contract: ${validate}: ${JSON.stringify(body).slice(0, 500)}`);
  if (!validate(body)) {
    const problems = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '(root)'} ${e.message} ${JSON.stringify(e.params)}`);
    throw new Error(`contract: ${method} ${path} answered ${status} off its documented schema: ${problems.join('; ')}; body ${JSON.stringify(body).slice(0, 500)}`);
  }
}
