import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Node = { $ref?: string; properties?: Record<string, Node>; items?: Node; oneOf?: Node[]; anyOf?: Node[]; allOf?: Node[] } & Record<string, unknown>;

/** Follows local `$ref`s (`#/components/schemas/...`), so the checks hold however the document names its schemas. */
function resolve(document: Node, node: Node | undefined): Node {
  if (!node) return {};
  if (!node.$ref) return node;
  const target = node.$ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], document);
  return resolve(document, target as Node);
}

/** The alternatives a schema allows (itself when it is not a union). */
const variants = (document: Node, node: Node | undefined): Node[] => {
  const resolved = resolve(document, node);
  return (resolved.oneOf ?? resolved.anyOf ?? [resolved]).map((variant) => resolve(document, variant));
};

const propertiesOf = (document: Node, node: Node | undefined): Record<string, Node> => {
  const resolved = resolve(document, node);
  return Object.assign({}, resolved.properties, ...(resolved.allOf ?? []).map((part) => resolve(document, part).properties));
};

describe('the served OpenAPI document', () => {
  let server: TestServer;
  let document: Node;

  beforeAll(async () => {
    server = await startTestServer();
    document = (await client(() => server.url).get<Node>('/api/openapi.json')).body;
  });
  afterAll(() => server.close());

  const operation = (path: string, method: string) => resolve(document, (document['paths'] as Record<string, Record<string, Node>>)[path]?.[method]);
  const actionOf = (item: Node) => {
    const action = resolve(document, propertiesOf(document, item)['action']);
    return String((action['enum'] as string[] | undefined)?.[0] ?? action['const']);
  };

  it('documents the fields of each POST /api/devices/bulk operation, by action', () => {
    const body = resolve(document, (operation('/api/devices/bulk', 'post')['requestBody'] as { content: Record<string, { schema: Node }> }).content['application/json']!.schema);
    const items = variants(document, resolve(document, propertiesOf(document, body)['operations']).items);
    const byAction = Object.fromEntries(items.map((item) => [actionOf(item), propertiesOf(document, item)]));
    const { register, update, delete: remove } = byAction;
    expect(Object.keys(register ?? {})).toEqual(expect.arrayContaining(['action', 'device']));
    expect(Object.keys(propertiesOf(document, register!['device']))).toEqual(expect.arrayContaining(['name', 'device_type', 'mac_address']));
    expect(Object.keys(update ?? {})).toEqual(expect.arrayContaining(['action', 'id', 'changes']));
    expect(Object.keys(propertiesOf(document, update!['changes']))).toEqual(expect.arrayContaining(['name', 'configuration']));
    expect(Object.keys(remove ?? {})).toEqual(expect.arrayContaining(['action', 'id']));
  });

  it('documents meta.batch of GET /api/commands beside the paging fields', () => {
    const ok = operation('/api/commands', 'get')['responses'] as Record<string, { content: Record<string, { schema: Node }> }>;
    const envelope = ok['200']!.content['application/json']!.schema;
    const meta = propertiesOf(document, propertiesOf(document, envelope)['meta']);
    expect(Object.keys(meta)).toEqual(expect.arrayContaining(['total', 'limit', 'offset', 'batch']));
    expect(Object.keys(propertiesOf(document, meta['batch']))).toEqual(expect.arrayContaining(['batch_id', 'status', 'reason', 'by_status', 'total_devices']));
  });
});
