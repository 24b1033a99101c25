import { readFileSync, writeFileSync } from 'node:fs';
import createClient from 'openapi-fetch';
import openapiTS, { astToString } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { components, paths } from '../generated/api.js';
import { uniqueName } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The typed client generated from the served document by openapi-typescript is committed in
 * tests/generated/api.d.ts (so tsc checks this file against it); this test fails when the
 * document changed without regenerating it. To regenerate:
 *   UPDATE_CLIENT=1 npx vitest run tests/integration/typed-client.test.ts
 */
const GENERATED = new URL('../generated/api.d.ts', import.meta.url);
const HEADER = '// Generated from /api/openapi.json by openapi-typescript: do not edit (see tests/integration/typed-client.test.ts).\n';

type Device = components['schemas']['Device'];

describe('the typed client generated from the document', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it('is what openapi-typescript makes of the served document today', async () => {
    const document = (await (await fetch(`${server.url}/api/openapi.json`)).json()) as Parameters<typeof openapiTS>[0];
    const generated = HEADER + astToString(await openapiTS(document, { alphabetize: true }));
    if (process.env.UPDATE_CLIENT) writeFileSync(GENERATED, generated);
    expect(readFileSync(GENERATED, 'utf8'), 'the document changed: regenerate tests/generated/api.d.ts (UPDATE_CLIENT=1)').toBe(generated);
  });

  it('registers, creates a device and lists it through openapi-fetch, typed end to end', async () => {
    const api = createClient<paths>({ baseUrl: server.url });
    const name = uniqueName('typed');
    const registered = await api.POST('/api/auth/register', { body: { username: name, email: `${name}@example.com`, password: 'correct horse' } });
    expect(registered.response.status).toBe(201);
    const headers = { authorization: `Bearer ${registered.data!.data.token}` };

    const created = await api.POST('/api/devices', { headers, body: { name: 'typed sensor', device_type: 'sensor', configuration: { thresholds: { temperature: { max: 80 } } } } });
    expect(created.response.status).toBe(201);
    const device: Device = created.data!.data;
    expect(created.data!.data.credentials.auth_token.length).toBeGreaterThan(16);

    const listed = await api.GET('/api/devices', { headers, params: { query: { device_type: 'sensor', limit: 10 } } });
    expect(listed.data!.data.map((d) => d.id)).toEqual([device.id]);
    expect(listed.data!.meta.total).toBe(1);

    const refused = await api.POST('/api/devices/{id}/commands', { headers, params: { path: { id: device.id } }, body: { command_type: 'reboot', priorty: 'high' } as never });
    expect(refused.response.status).toBe(400);
    expect(refused.error!.error.details[0]).toEqual({ path: 'priorty', message: 'unknown field "priorty"; did you mean "priority"?' });
  });
});
