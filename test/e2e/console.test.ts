import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet } from '../helpers/http.js';
import { airlockCli } from '../helpers/cli.js';
import { buildDist, pip } from '../helpers/pip.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(process.cwd(), 'test-output', 'console');
const AXE = readFileSync(join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/**
 * The console in a real browser: Debian's Chromium, headless, driven by playwright-core. A person
 * who has never seen Airlock logs in, finds why a pull was refused and the change that approves
 * it, searches the record, logs out; every page is screenshotted (test-output/console/) and
 * checked with axe-core; the pages are walked with the keyboard alone.
 */
describe('the console in Chromium', () => {
  const index = new FakeIndex();
  let a: TestAirlock;
  let browser: Browser;
  let token: string;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    await index.start();
    index
      .add('tinylib', { filename: 'tinylib-1.0-py3-none-any.whl', bytes: Buffer.from('one') })
      .add('tinylib', { filename: 'tinylib-2.0-py3-none-any.whl', bytes: Buffer.from('two') });
    a = await startAirlock(
      `auth:\n  admin: token\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow:\n      - { name: tinylib, versions: "<2" }\n`,
    );
    token = await new Authenticator(a.airlock.meta).create('sec-team', true);
    expect((await rawGet(`${a.url}/pypi/files/tinylib/tinylib-1.0-py3-none-any.whl`)).status).toBe(200);
    // A look-alike of a popular name (requests), refused as any unapproved name is.
    expect((await rawGet(`${a.url}/pypi/files/reqeusts/reqeusts-2.32.3-py3-none-any.whl`)).status).toBe(403);
    expect((await rawGet(`${a.url}/pypi/files/tinylib/tinylib-2.0-py3-none-any.whl`)).status).toBe(403);
    const osv = {
      id: 'PYSEC-2099-7',
      aliases: ['CVE-2099-0007'],
      summary: 'tinylib runs code from its input',
      modified: '2026-01-01T00:00:00Z',
      affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
    };
    await a.airlock.meta.putAdvisories([{ id: osv.id, modified: osv.modified, record: JSON.stringify(osv) }]);
    await a.airlock.reloadAdvisories(); // as `airlock advisories import` and SIGHUP do
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await a?.stop();
    await index.stop();
  });

  async function loggedIn(bypassCSP = false): Promise<Page> {
    const ctx = await browser.newContext({ bypassCSP, viewport: { width: 1200, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(`${a.url}/-/ui`);
    expect(new URL(page.url()).pathname).toBe('/-/ui/login');
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${a.url}/-/ui`);
    return page;
  }

  it('log in, find why a pull was refused and the change that approves it, search the record, log out', async () => {
    const page = await loggedIn();
    await page.screenshot({ path: join(SHOTS, '1-overview.png'), fullPage: true });
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Overview');
    await page.getByRole('link', { name: 'Refusals' }).first().click();
    await page.waitForURL(/\/-\/ui\/refusals/);
    await page.getByLabel('Reason').selectOption('version_not_allowed');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/code=version_not_allowed/);
    const refusal = page.locator('section.refusal').first();
    expect(await refusal.locator('h2').textContent()).toContain('tinylib 2.0');
    expect(await refusal.textContent()).toContain('outside the allowed range');
    // The approval, as one would copy it into a reviewed change.
    expect(await refusal.locator('pre.approval-command').textContent()).toBe("airlock pin pypi 'tinylib==2.0'");
    expect(await refusal.locator('pre.approval-yaml').textContent()).toContain('- name: tinylib');
    await page.screenshot({ path: join(SHOTS, '2-refusals.png'), fullPage: true });
    // "Who pulled the versions this advisory affects?", and the export for the security team.
    await page.getByRole('link', { name: 'Advisories' }).click();
    await page.getByLabel('Advisory id, alias or package URL').fill('CVE-2099-0007');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/q=CVE-2099-0007/);
    expect(await page.locator('main').textContent()).toContain('1 pull (1 served), 1 client served');
    expect(await page.locator('tbody tr').first().textContent()).toContain('tinylib-1.0-py3-none-any.whl');
    await page.screenshot({ path: join(SHOTS, '4-advisories.png'), fullPage: true });
    const href = await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href');
    const csv = await page.context().request.get(`${a.url}${href}`);
    expect(csv.headers()['content-type']).toMatch(/text\/csv/);
    expect((await csv.text()).split('\r\n')[1]).toContain('"tinylib","1.0","tinylib-1.0-py3-none-any.whl"');
    // The artefact behind a pull: what allows it, its vulnerabilities, every pull of it.
    await page.locator('tbody tr').first().getByRole('link').click();
    await page.waitForURL(/\/-\/ui\/artefact\?/);
    const detail = (await page.locator('main').textContent())!;
    expect(detail).toContain('pypi.allow[0]');
    expect(detail).toContain('PYSEC-2099-7 (CVE-2099-0007)');
    expect(detail).toContain('fixed in 1.1');
    await page.screenshot({ path: join(SHOTS, '5-artefact.png'), fullPage: true });
    await page.getByRole('link', { name: 'Record' }).click();
    await page.getByLabel('Name').fill('tinylib');
    await page.getByLabel('Decision').selectOption('allow');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/decision=allow/);
    const rows = page.locator('tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain('tinylib-1.0-py3-none-any.whl');
    await page.getByRole('button', { name: 'Verify the chain now' }).click();
    await page.waitForURL(/\/-\/ui\/records$/);
    expect(await page.getByRole('region', { name: 'Chain verification' }).textContent()).toMatch(/Intact: \d+ rows, head [0-9a-f]{64}/);
    await page.screenshot({ path: join(SHOTS, '3-record.png'), fullPage: true });
    const session = (await page.context().cookies()).find((c) => c.name === 'airlock_console')!;
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/-\/ui\/login/);
    await page.screenshot({ path: join(SHOTS, '0-login.png'), fullPage: true });
    // Logged out: the pages are gone.
    await page.goto(`${a.url}/-/ui/refusals`);
    expect(new URL(page.url()).pathname).toBe('/-/ui/login');
    // The session cookie put back (kept, or copied before the logout): the server ended it.
    await page.context().addCookies([session]);
    await page.goto(`${a.url}/-/ui/refusals`);
    expect(new URL(page.url()).pathname).toBe('/-/ui/login');
    await page.context().close();
  }, 60_000);

  it('a refused look-alike name carries the warning beside its approval', async () => {
    const page = await loggedIn();
    await page.goto(`${a.url}/-/ui/refusals?code=not_allowlisted`);
    const refusal = page.locator('section.refusal', { hasText: 'reqeusts' }).first();
    const warning = (await refusal.getByRole('note', { name: 'Look-alike warning' }).textContent())!;
    expect(warning).toContain(`"reqeusts" is one keystroke from "requests": 'ue' swapped (a popular name)`);
    expect(warning).toContain('--accept-lookalike');
    expect(await refusal.locator('pre.approval-command').textContent()).toBe("airlock pin pypi 'reqeusts==2.32.3'");
    // A name that looks like nothing known has no warning.
    await page.goto(`${a.url}/-/ui/refusals?code=version_not_allowed`);
    expect(await page.locator('section.refusal', { hasText: 'tinylib' }).first().getByRole('note').count()).toBe(0);
    await page.goto(`${a.url}/-/ui/refusals?code=not_allowlisted`);
    await page.screenshot({ path: join(SHOTS, '7-lookalike.png'), fullPage: true });
    await page.context().close();
  }, 60_000);

  it('has no accessibility violations (axe-core) on any page', async () => {
    // axe is a script: this context alone bypasses the console's CSP to run it.
    const page = await loggedIn(true);
    for (const path of [
      '/-/ui',
      '/-/ui/refusals',
      '/-/ui/advisories?q=PYSEC-2099-7',
      '/-/ui/artefact?ecosystem=pypi&name=tinylib&version=1.0',
      '/-/ui/records?name=tinylib',
    ]) {
      await page.goto(`${a.url}${path}`);
      await page.addScriptTag({ content: AXE });
      const violations = await page.evaluate(async () =>
        (
          await (window as unknown as { axe: { run: () => Promise<{ violations: { id: string; impact: string; nodes: unknown[] }[] }> } }).axe.run()
        ).violations.map((v) => `${v.id} (${v.impact}, ${v.nodes.length})`),
      );
      expect(violations, path).toEqual([]);
    }
    await page.context().close();
  }, 60_000);

  it('can be walked with the keyboard alone', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${a.url}/-/ui/login`);
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('token');
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${a.url}/-/ui`);
    // Tab to the Refusals link and follow it.
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate(() => document.activeElement?.textContent)) === 'Refusals') break;
    }
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/-\/ui\/refusals/);
    expect(await page.locator('pre.approval-command').first().textContent()).toBe("airlock pin pypi 'tinylib==2.0'");
    await ctx.close();
  }, 60_000);

  it("pip's refusal of an unapproved project is on the Refusals page with its pin; the pin, run and reloaded, lets pip install it", async () => {
    index.add('notallowed-pkg', buildDist({ name: 'notallowed-pkg', version: '1.0' }));
    const target = () => join(mkdtempSync(join(tmpdir(), 'airlock-pip-target-')), 't');
    const install = () => pip(['install', '--index-url', `${a.url}/pypi/simple/`, '--no-deps', '--target', target(), 'notallowed-pkg']);
    const refused = await install();
    expect(refused.code, refused.out).not.toBe(0);
    expect(refused.out).toMatch(/No matching distribution found for notallowed-pkg/);

    const page = await loggedIn();
    await page.getByRole('link', { name: 'Refusals' }).first().click();
    await page.waitForURL(/\/-\/ui\/refusals/);
    await page.getByLabel('Reason').selectOption('not_allowlisted');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/code=not_allowlisted/);
    const refusal = page.locator('section.refusal', { hasText: 'notallowed-pkg' }).first();
    expect(await refusal.textContent()).toContain('not on the PyPI allowlist');
    const command = (await refusal.locator('pre.approval-command').textContent())!;
    expect(command).toBe("airlock pin pypi 'notallowed-pkg'");
    await page.screenshot({ path: join(SHOTS, '6-pip-refusal.png'), fullPage: true });
    await page.context().close();

    // Run the command as shown (its shell quoting undone), against this Airlock's policy, and reload as SIGHUP does.
    const [cli, ...args] = [...command.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]);
    expect(cli).toBe('airlock');
    const pinned = await airlockCli([...args, '--config', a.configFile]);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.stdout).toMatch(/added notallowed-pkg==1.0/);
    expect(a.airlock.reloadPolicy()).toBe(true);

    const installed = await install();
    expect(installed.code, installed.out).toBe(0);
    expect(installed.out).toMatch(/Successfully installed notallowed-pkg-1.0/);
  }, 120_000);
});
