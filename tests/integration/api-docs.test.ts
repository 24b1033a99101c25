import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** Debian's chromium, which .ci/run installs where missing. */
const CHROMIUM = '/usr/bin/chromium';

describe('GET /api/docs in a browser', () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    server = await startTestServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('lists the operations from the served document, expands one, and asks nothing of another host', async () => {
    const page = await browser.newPage();
    const elsewhere: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(server.url)) elsewhere.push(request.url());
    });
    const answer = await page.goto(`${server.url}/api/docs`);
    expect(answer?.status()).toBe(200);
    expect(answer?.headers()['content-type']).toMatch(/text\/html/);

    const operations = page.locator('.opblock');
    await operations.first().waitFor({ timeout: 20_000 });
    expect(await operations.count()).toBeGreaterThan(50);
    await expect(page.locator('.opblock-summary-path', { hasText: '/api/devices/{id}/commands' }).first().textContent()).resolves.toContain('/api/devices/{id}/commands');

    const register = page.locator('#operations-devices-registerDevice');
    expect(await register.locator('.opblock-body').count()).toBe(0);
    await register.locator('.opblock-summary').first().click();
    await register.locator('.opblock-body').waitFor({ timeout: 10_000 });
    await expect(register.locator('.opblock-body').textContent()).resolves.toContain('device_type');
    expect(elsewhere).toEqual([]);
    await page.close();
  }, 60_000);
});
