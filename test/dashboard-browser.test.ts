/**
 * The dashboard in a real headless browser: Debian's chromium (/usr/bin/chromium; CI installs
 * it) driven by playwright-core, against a real status server with a known flow set
 * (test/support/dashboard-fixture.ts). The page must load without a console error or a page
 * error (a CSP refusal is a console error), draw the nodes and edges of the flow set, list the
 * flows, narrow the list with a filter (the filter goes to /flows as a query parameter), show
 * hostile app ids as text without any element or script getting through, add an edge for a live
 * event, and say "connection lost" when the controller goes away (live again when it is back).
 * A screenshot is kept at test-artifacts/dashboard.png (gitignored) for a person to look at.
 *
 * Skipped, saying so, when /usr/bin/chromium is not installed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DashboardFixture, HOSTILE_APP, HOSTILE_HOST, QUOTED_APP, liveFlow } from './support/dashboard-fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = path.join(import.meta.dirname, '..', 'test-artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'dashboard.png');
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`test/dashboard-browser.test.ts skipped: ${CHROMIUM} is not installed (Debian: apt-get install chromium)`);

/** What the map draws, read from the page's cytoscape instance. */
async function graph(page: Page): Promise<{ nodes: string[]; edges: { source: string; target: string; verdict: string; label: string }[] }> {
  return page.evaluate(() => {
    const cy = (globalThis as unknown as { portcullisDashboard: { cy: any } }).portcullisDashboard.cy;
    return {
      nodes: cy.nodes().map((n: any) => String(n.data('label'))).sort(),
      edges: cy.edges().map((e: any) => ({ source: e.source().data('label'), target: e.target().data('label'), verdict: e.data('verdict'), label: e.data('label') })),
    };
  });
}

const tableRows = (page: Page): Promise<string[]> => page.locator('#flow-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-key') ?? ''));

describe.skipIf(!hasChromium)('the dashboard in headless chromium', () => {
  const fixture = new DashboardFixture();
  let base = '';
  let profile = '';
  let context: BrowserContext;
  let page: Page;
  const consoleErrors: string[] = [];
  const dialogs: string[] = [];

  beforeAll(async () => {
    base = await fixture.start();
    profile = mkdtempSync(path.join(tmpdir(), 'portcullis-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1400, height: 1800 } });
    page = context.pages()[0] ?? (await context.newPage());
    // An action that cannot happen fails the test with its reason rather than at the test's timeout.
    page.setDefaultTimeout(10_000);
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    // A refusal by the content-security-policy is also an event on the page: count those directly.
    await page.addInitScript(() => {
      const seen: string[] = [];
      Object.defineProperty(globalThis, 'cspViolations', { value: seen });
      const doc = (globalThis as unknown as { document: { addEventListener(type: string, f: (e: { violatedDirective: string; blockedURI: string }) => void): void } }).document;
      doc.addEventListener('securitypolicyviolation', (e) => seen.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(`${base}/ui/`);
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
    await page.locator('#map-summary[data-edges="5"]').waitFor({ timeout: 15_000 });
  });

  afterAll(async () => {
    await context?.close();
    await fixture.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('loads with no console error and draws the nodes and edges of the flow set', async () => {
    const g = await graph(page);
    expect(g.nodes).toEqual(['/shop/api', '/shop/db', '/shop/web', HOSTILE_APP, QUOTED_APP, '203.0.113.9', 'office (network)'].sort());
    expect(g.edges.map((e) => `${e.source} -> ${e.target} ${e.verdict} ${e.label}`).sort()).toEqual(
      [
        `/shop/web -> /shop/api allowed http ×40`,
        `203.0.113.9 -> /shop/db denied postgres ×7`,
        `office (network) -> /shop/api audit http ×3`,
        `${HOSTILE_APP} -> /shop/db denied tcp/31432 ×2`,
        `${QUOTED_APP} -> /shop/api allowed http ×1`,
      ].sort(),
    );
    // Verdicts are told apart by line style too, not colour alone.
    const styles = await page.evaluate(() => {
      const cy = (globalThis as unknown as { portcullisDashboard: { cy: any } }).portcullisDashboard.cy;
      return Object.fromEntries(cy.edges().map((e: any) => [e.data('verdict'), e.style('line-style')]));
    });
    expect(styles).toEqual({ allowed: 'solid', denied: 'dashed', audit: 'dotted' });
    expect(consoleErrors).toEqual([]);
    expect(await page.evaluate(() => (globalThis as unknown as { cspViolations: string[] }).cspViolations)).toEqual([]);
  });

  it('shows the flow table, the agents, rejected labels and compile reports', async () => {
    expect(await tableRows(page)).toEqual(['a000000000000001', 'a000000000000002', 'a000000000000003', 'a000000000000004', 'a000000000000005']);
    await expect.poll(() => page.locator('#agents tbody tr').count(), { timeout: 10_000 }).toBe(3);
    expect(await page.locator('#agents').innerText()).toContain('iptables-restore: line 3 "<i>x</i>"');
    expect(await page.locator('#labels tbody tr').count()).toBe(1);
    expect(await page.locator('#reports tbody tr').count()).toBe(1);
    const overview = await page.locator('#overview').innerText();
    expect(overview).toContain('shop: audit');
    expect(overview).toContain('monitoring: enforce');
    expect(overview).toContain('Flows kept: 5 aggregates in 2 windows, 2026-12-01 15:00:00Z to 2026-12-01 16:00:00Z; 5 new connections could not be recorded');
    expect(await page.locator('#lost').innerText()).toContain('node-3');
  });

  it('shows hostile app ids and host names as text: no element or script gets through', async () => {
    const text = await page.locator('body').innerText();
    expect(text).toContain(HOSTILE_APP);
    expect(text).toContain(QUOTED_APP);
    expect(text).toContain(HOSTILE_HOST);
    expect(text).toContain(`${HOSTILE_APP} <b>bold</b>`);
    expect(await page.locator('img, b, i').count()).toBe(0);
    // The one script is the page's own module.
    expect(await page.locator('script').evaluateAll((s) => s.map((e) => e.getAttribute('src')))).toEqual(['dashboard.js']);
    expect(await page.locator('[onerror]').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });

  it('a filter narrows the table and the map, through a /flows query', async () => {
    await page.locator('input[name="verdict-allowed"]').uncheck();
    await page.locator('input[name="verdict-audit"]').uncheck();
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toEqual(['a000000000000002', 'a000000000000004']);
    expect(fixture.flowQueries).toContain('?verdict=denied');
    await expect.poll(async () => (await graph(page)).edges.length, { timeout: 10_000 }).toBe(2);
    expect(new URL(page.url()).searchParams.get('verdict')).toBe('denied');

    await page.locator('input[name="from"]').fill('/shop/*');
    await page.locator('input[name="verdict-allowed"]').check();
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toEqual(['a000000000000001']);
    expect(fixture.flowQueries).toContain(`?from=${encodeURIComponent('/shop/*')}&verdict=allowed%2Cdenied`);

    // The page follows the events of the filters in force (and only those).
    const shopQuery = `?from=${encodeURIComponent('/shop/*')}&verdict=allowed%2Cdenied`;
    await expect.poll(() => [fixture.eventQueries.at(-1), fixture.openStreams()], { timeout: 10_000 }).toEqual([shopQuery, 1]);

    // A filter the controller refuses is said, and the last answer and its event stream stay.
    const errorsBefore = consoleErrors.length;
    const streamsBefore = fixture.eventQueries.length;
    await page.locator('input[name="since"]').fill('yesterday');
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => page.locator('#filter-error').innerText(), { timeout: 10_000 }).toContain('since must be');
    expect(await tableRows(page)).toEqual(['a000000000000001']);
    expect(fixture.eventQueries.length).toBe(streamsBefore);
    expect(await page.locator('#connection').getAttribute('data-state')).toBe('live');
    // Chromium logs the refused request itself; that one line is expected, nothing else.
    await expect.poll(() => consoleErrors.length, { timeout: 10_000 }).toBeGreaterThan(errorsBefore);
    expect(consoleErrors.splice(errorsBefore)).toEqual(['Failed to load resource: the server responded with a status of 400 (Bad Request)']);

    await page.locator('#filters button[type="reset"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toHaveLength(5);
    expect(await page.locator('#filter-error').innerText()).toBe('');

    await page.locator('select[name="direction"]').selectOption('egress');
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toEqual(['a000000000000004', 'a000000000000005']);
    expect(fixture.flowQueries).toContain('?direction=egress');
    await page.locator('#filters button[type="reset"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toHaveLength(5);

    // A node picked on the map becomes a filter.
    await page.evaluate(() => {
      (globalThis as unknown as { portcullisDashboard: { cy: any } }).portcullisDashboard.cy.getElementById('app:/shop/db').emit('tap');
    });
    await page.locator('#picked button', { hasText: 'flows to it' }).click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toEqual(['a000000000000002', 'a000000000000004']);
    expect(fixture.flowQueries).toContain(`?to=${encodeURIComponent('/shop/db')}`);
    expect(await page.locator('input[name="to"]').inputValue()).toBe('/shop/db');
    await page.locator('#filters button[type="reset"]').click();
    await expect.poll(() => tableRows(page), { timeout: 10_000 }).toHaveLength(5);
  });

  it('a live event adds an edge', async () => {
    // The stream of the cleared filters is the one open (the filtered one is closed).
    await expect.poll(() => [fixture.eventQueries.at(-1), fixture.openStreams()], { timeout: 10_000 }).toEqual(['', 1]);
    expect(fixture.emit([liveFlow()])).toBe(1);
    await page.locator('#map-summary[data-edges="6"]').waitFor({ timeout: 10_000 });
    const g = await graph(page);
    expect(g.nodes).toContain('/monitoring/prometheus');
    expect(g.edges.map((e) => `${e.source} -> ${e.target} ${e.verdict} ${e.label}`)).toContain('/monitoring/prometheus -> /shop/api allowed metrics ×12');
    expect((await tableRows(page))[0]).toBe('a000000000000001');
    expect(await tableRows(page)).toContain('a000000000000006');
    expect(consoleErrors).toEqual([]);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`dashboard screenshot: ${SCREENSHOT}`);
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it('warns of a partial view when a controller replica did not answer, its name as text', async () => {
    const warning = page.locator('#replicas-warning');
    expect(await warning.innerText()).toBe('');
    fixture.replicas = [{ name: '10.0.0.5:7443', self: true, ok: true, flows: 5 }, { name: HOSTILE_HOST, ok: false, error: 'UNAVAILABLE: down' }];
    const asked = fixture.flowQueries.length;
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => fixture.flowQueries.length, { timeout: 10_000 }).toBeGreaterThan(asked);
    await expect.poll(() => warning.innerText(), { timeout: 10_000 }).toBe(`Partial view: 1 of 2 controller replicas did not answer (${HOSTILE_HOST}); the flows their agents reported are missing.`);
    expect(await page.locator('#replicas-warning *').count()).toBe(0);
    fixture.replicas = [{ name: '10.0.0.5:7443', self: true, ok: true, flows: 5 }, { name: '10.0.0.6:7443', ok: true, flows: 0 }];
    await page.locator('#filters button[type="submit"]').click();
    await expect.poll(() => warning.innerText(), { timeout: 10_000 }).toBe('');
    // With peers, /flows/events carries this replica's changes only: the page also re-reads
    // /flows on its 5 s status interval, with no event and no click (of three more reads, the
    // stream's opening causes one at most: the other two can only be the interval's).
    const before = fixture.flowQueries.length;
    await expect.poll(() => fixture.flowQueries.length, { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(before + 3);
    fixture.replicas = undefined;
    expect(dialogs).toEqual([]);
  });

  it('says "connection lost" when the controller goes away, and is live again when it is back', async () => {
    await fixture.close();
    await page.locator('#connection[data-state="lost"]').waitFor({ timeout: 15_000 });
    expect(await page.locator('#connection').innerText()).toContain('Connection lost');
    // Back on the same address: the page reconnects by itself (the event stream, /status, /flows).
    await fixture.start(Number(new URL(base).port));
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: 20_000 });
    await expect.poll(() => fixture.openStreams(), { timeout: 10_000 }).toBe(1);
  });
});
