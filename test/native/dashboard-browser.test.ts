// The dashboard in headless Chromium, loaded from a running balancer on the
// memory driver: the rendered DOM shows the services and backends as
// lb.stats() has them, and follows a weight change, a health change, new
// traffic and drops live, without reloading the page; user-supplied text
// (a scheduler hook's name) is shown as text. Needs Debian's chromium: in
// CI and everywhere else these tests run, or fail naming the package.
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Dashboard } from '../../lib/dashboard/index.js';
import type { LoadBalancer } from '../../lib/load-balancer.js';
import type { Service } from '../../lib/service.js';
import { weightedTable } from '../../lib/schedulers/hook.js';
import { backendAddress, createBalancer, tcp, toVip, until, vip } from '../support/balancer.js';
import { assertChromium, chromiumPath, launchChromium } from '../support/browser.js';

// A hook name is free text from the user: the page must show it, not run it.
const hostileName = '<img src=x onerror="window.__pwned=1">&amp;<b>bold</b>';

// Its own test, so that a missing browser is a failure that says so.
it(`headless Chromium is installed (${chromiumPath}, Debian package chromium)`, () => {
  expect(assertChromium).not.toThrow();
});

describe('the dashboard in headless Chromium', () => {
  let lb: LoadBalancer;
  let web: Service;
  let dns: Service;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const healthy = new Map<string, boolean>();
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    lb = await createBalancer({ workers: 1 });
    const check = { intervalMs: 100, timeoutMs: 200, rise: 1, fall: 1, jitter: 0 };
    const healthCheck = { ...check, type: async (backend: { address: string }) => healthy.get(backend.address) ?? true };
    lb.transaction(() => {
      web = lb.addService({ address: vip, port: 80, scheduler: 'wrr', healthCheck });
      for (const n of [2, 3, 4]) web.addBackend({ address: backendAddress(n), port: 8080, weight: n === 3 ? 2 : 1 });
      dns = lb.addService({
        address: vip,
        port: 53,
        protocol: 'udp',
        scheduler: { name: hostileName, table: (backends) => weightedTable(backends.map((b) => (b.state === 'up' ? b.weight : 0)), 64) },
        healthCheck,
      });
      dns.addBackend({ address: backendAddress(5) });
    });
    await until(() => lb.stats().services.every((s) => s.backends.every((b) => b.state === 'up')), 10_000, 'every backend up');
    await until(() => lb.stats().workers.every((w) => w.configGeneration >= lb.generation), 5000, 'workers adopting the configuration');
    dashboard = await lb.serveDashboard({ intervalMs: 250 });
    page = await browser.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    await page.goto(dashboard.url);
    await page.locator('article.service').nth(1).waitFor({ timeout: 10_000 });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await lb?.close();
  });

  const backendRow = (service: Service, n: number) => page.locator(`article[data-service="${service.name}"] tr[data-backend="${backendAddress(n)}:${service === web ? 8080 : 53}"]`);

  it('shows every service and backend, with health and weight, as lb.stats() has them', async () => {
    await expect.poll(() => page.locator('#connection').textContent()).toBe('live');
    const stats = lb.stats();
    expect(await page.locator('article.service h3').allTextContents()).toEqual([`${vip}:80/tcp`, `${vip}:53/udp`]);
    for (const service of stats.services) {
      const name = `${service.address}:${service.port}/${service.protocol}`;
      const article = page.locator(`article[data-service="${name}"]`);
      expect(await article.locator('[data-field="method"]').textContent()).toBe(service.method);
      expect(await article.locator('header [data-field="state"]').textContent()).toBe(service.state);
      const rows = article.locator('tbody tr[data-backend]');
      expect(await rows.count()).toBe(service.backends.length);
      for (const [i, backend] of service.backends.entries()) {
        const row = rows.nth(i);
        expect(await row.getAttribute('data-backend')).toBe(`${backend.address}:${backend.port}`);
        expect(await row.locator('[data-field="address"]').textContent()).toBe(`${backend.address}:${backend.port}`);
        expect(await row.locator('[data-field="state"]').textContent()).toBe('up');
        expect(await row.locator('[data-field="weight"]').textContent()).toBe(String(backend.weight));
      }
    }
    expect(await page.locator('article[data-service$="/tcp"] .summary').textContent()).toMatch(/^3\/3 up · 0 active flows/);
    expect(await page.locator('.tile[data-metric="flows"] .detail').textContent()).toBe('0 of 4,096 flows');
    expect(await page.locator('#interfaces tbody tr').allTextContents()).toEqual(['inmemory0000', 'outmemory0000']);
  });

  it('follows a weight change, a health change, new traffic and drops live, without reloading', async () => {
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    const weight = backendRow(web, 3).locator('[data-field="weight"]');
    expect(await weight.textContent()).toBe('2');
    web.backends[1]!.setWeight(9);
    await expect.poll(() => weight.textContent(), { timeout: 5000 }).toBe('9');
    web.backends[2]!.setWeight(0);
    await expect.poll(() => backendRow(web, 4).locator('[data-field="weight"]').textContent(), { timeout: 5000 }).toBe('0 (draining)');

    healthy.set(backendAddress(2), false);
    await expect.poll(() => backendRow(web, 2).locator('[data-field="state"]').textContent(), { timeout: 5000 }).toBe('down');
    expect(await backendRow(web, 2).getAttribute('data-state')).toBe('down');
    await expect.poll(() => page.locator('article[data-service$="/tcp"] .summary').textContent(), { timeout: 5000 }).toMatch(/^2\/3 up/);

    // New flows: all to the one backend that is up and not draining.
    for (let i = 0; i < 30; i++) lb.memoryPort('in').inject(toVip(tcp(43000 + i, 'S')));
    await lb.memoryPort('out').take({ count: 30, timeoutMs: 5000 });
    await expect.poll(() => backendRow(web, 3).locator('[data-field="total-flows"]').textContent(), { timeout: 5000 }).toBe('30');
    await expect.poll(() => backendRow(web, 3).locator('[data-field="active-flows"]').textContent(), { timeout: 5000 }).toBe('30');
    await expect.poll(() => page.locator('.tile[data-metric="flows"] .detail').textContent(), { timeout: 5000 }).toBe('30 of 4,096 flows');
    await expect.poll(async () => Number.parseFloat((await page.locator('.tile[data-metric="pps"] .value').textContent()) ?? '0'), { timeout: 5000 }).toBeGreaterThan(0);
    expect(await backendRow(web, 3).locator('[data-field="share"]').textContent()).toBe('100%');

    // The UDP service's only backend goes down: its new flows drop as no-backend.
    healthy.set(backendAddress(5), false);
    await expect.poll(() => page.locator(`article[data-service="${dns.name}"]`).getAttribute('data-state'), { timeout: 5000 }).toBe('down');
    expect(await page.locator('#drops tbody tr').textContent()).toBe('none');
    for (let i = 0; i < 4; i++) lb.memoryPort('in').inject(toVip({ kind: 'udp', sport: 5300 + i, dport: 53, payload: Buffer.from('q') }));
    await until(() => (lb.stats().drops['no-backend'] ?? 0) === 4, 5000, 'four no-backend drops');
    const drop = page.locator('#drops tr[data-reason="no-backend"]');
    await expect.poll(() => drop.locator('td').nth(1).textContent(), { timeout: 5000 }).toBe('4');

    // All of it without a page load.
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
    expect(pageErrors).toEqual([]);
  });

  it('shows user-supplied text as text: markup in a scheduler hook name is neither parsed nor run', async () => {
    const tag = page.locator(`article[data-service="${dns.name}"] [data-field="scheduler"]`);
    expect(await tag.textContent()).toBe(hostileName);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('main b').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });

  it('says when the stream is gone', async () => {
    await dashboard.close();
    await expect.poll(() => page.locator('#connection').getAttribute('data-state'), { timeout: 10_000 }).toBe('down');
    expect(await page.locator('#connection').textContent()).toBe('disconnected, retrying…');
  });
});
