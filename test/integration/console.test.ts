import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls } from '../../src/core/chain.js';
import { Authenticator } from '../../src/auth/tokens.js';
import { issueSession, loginNonce } from '../../src/console/session.js';
import { airlockCli } from '../helpers/cli.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet } from '../helpers/http.js';
import { consoleLogin } from '../helpers/console-login.js';

/** The console's security at the HTTP level: sessions, CSRF, escaping, headers. (The browser walk is test/e2e/console.test.ts.) */
describe('console security', () => {
  const index = new FakeIndex();
  let a: TestAirlock;
  let admin: string;
  let reader: string;

  beforeAll(async () => {
    await index.start();
    index
      .add('tinylib', { filename: 'tinylib-1.0-py3-none-any.whl', bytes: Buffer.from('one') })
      .add('tinylib', { filename: 'tinylib-2.0-py3-none-any.whl', bytes: Buffer.from('two') });
    a = await startAirlock(
      `auth:\n  admin: token\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow:\n      - { name: tinylib, versions: "<2" }\n`,
    );
    const auth = new Authenticator(a.airlock.meta);
    admin = await auth.create('sec-team', true);
    reader = await auth.create('ci-bot', false);
    expect((await rawGet(`${a.url}/pypi/files/tinylib/tinylib-2.0-py3-none-any.whl`)).status).toBe(403);
    // A name that carries HTML, as an upstream could send it.
    await appendPulls(a.airlock.meta, [
      {
        ts: Date.now(),
        client: '10.0.0.9',
        ecosystem: 'oci',
        name: 'evil.io/<img src=x onerror=alert(1)>',
        version: 'v1',
        cache: 'none',
        decision: 'deny',
        reason: '<script>alert(2)</script> not allowed',
        rule: 'oci',
        code: 'not_allowlisted',
      },
    ]);
  });

  afterAll(async () => {
    await a?.stop();
    await index.stop();
  });

  const ui = (p: string) => `${a.url}/-/ui${p}`;
  const cookieOf = (res: Response, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));

  const login = (token: string) => consoleLogin(a.url, token);

  it('nothing answers without a session but the login form and its stylesheet', async () => {
    for (const p of ['', '/refusals', '/records?name=tinylib']) {
      const r = await fetch(ui(p), { redirect: 'manual' });
      expect(r.status).toBe(303);
      expect(r.headers.get('location')).toBe('/-/ui/login');
    }
    expect((await fetch(ui('/logout'), { method: 'POST' })).status).toBe(401);
    const slash = await fetch(ui('/'), { redirect: 'manual' });
    expect(slash.status).toBe(308);
    expect(slash.headers.get('location')).toBe('/-/ui');
    const login = await fetch(ui('/login'));
    expect(login.status).toBe(200);
    expect(login.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect((await fetch(ui('/static/console.css'))).headers.get('content-type')).toMatch(/text\/css/);
    // An Authorization header is not a console session.
    expect((await fetch(ui(''), { redirect: 'manual', headers: { authorization: `Bearer ${admin}` } })).status).toBe(303);
  });

  it('a non-admin or unknown token cannot log in; a form from elsewhere is refused; an admin gets an HttpOnly SameSite=Strict session', async () => {
    const r1 = await login(reader);
    expect(r1.res.status).toBe(401);
    expect(await r1.res.text()).toContain('Token ci-bot is not an admin token.');
    expect(r1.cookie).toBeUndefined();
    expect((await login('hf_nottherealtoken')).res.status).toBe(401);
    const forged = await fetch(ui('/login'), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ nonce: 'x', token: admin }),
    });
    expect(forged.status).toBe(403);
    const ok = await login(admin);
    expect(ok.res.status).toBe(303);
    const set = cookieOf(ok.res, 'airlock_console')!;
    expect(set).toMatch(/HttpOnly/);
    expect(set).toMatch(/SameSite=Strict/);
    expect(set).toMatch(/Path=\/-\/ui/);
  });

  it('shows a refusal with the approval that would allow it, escaping names that carry HTML', async () => {
    const { cookie } = await login(admin);
    const page = await fetch(ui('/refusals'), { headers: { cookie: cookie! } });
    expect(page.status).toBe(200);
    const body = await page.text();
    expect(body).toContain('airlock pin pypi &#39;tinylib==2.0&#39;');
    expect(body).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(body).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(body).not.toMatch(/<script|<img/);
    const filtered = await (await fetch(ui('/refusals?code=not_allowlisted&ecosystem=oci'), { headers: { cookie: cookie! } })).text();
    expect(filtered).toContain('evil.io/');
    expect(filtered).not.toContain('tinylib');
    const rec = await (await fetch(ui('/records?name=tinylib'), { headers: { cookie: cookie! } })).text();
    expect(rec).toContain('tinylib-2.0-py3-none-any.whl');
  });

  it('answers who pulled what an advisory affects, and exports it as CSV no spreadsheet reads as a formula', async () => {
    const osv = {
      id: 'PYSEC-2099-1',
      aliases: ['CVE-2099-0001'],
      summary: 'tinylib <b>executes</b> input',
      modified: '2026-01-01T00:00:00Z',
      affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
    };
    await a.airlock.meta.putAdvisories([{ id: osv.id, modified: osv.modified, record: JSON.stringify(osv) }]);
    await a.airlock.reloadAdvisories();
    await appendPulls(a.airlock.meta, [
      {
        ts: Date.now(),
        client: '=HYPERLINK("http://evil")',
        ecosystem: 'pypi',
        name: 'tinylib',
        version: '1.0',
        filename: 'tinylib-1.0-py3-none-any.whl',
        cache: 'hit',
        decision: 'allow',
        rule: 'pypi.allow[0]',
      },
    ]);
    const { cookie } = await login(admin);
    const page = await fetch(ui('/advisories?q=CVE-2099-0001'), { headers: { cookie: cookie! } });
    expect(page.status).toBe(200);
    const body = await page.text();
    expect(body).toContain('PYSEC-2099-1');
    expect(body).toContain('tinylib &lt;b&gt;executes&lt;/b&gt; input');
    expect(body).toMatch(/1 pull \(1 served\), 1 client served/);
    const csv = await fetch(ui('/advisories.csv?q=PYSEC-2099-1'), { headers: { cookie: cookie! } });
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(csv.headers.get('content-disposition')).toBe('attachment; filename="airlock-affected-PYSEC-2099-1.csv"');
    const lines = (await csv.text()).trim().split('\r\n');
    expect(lines[0]).toBe('time,client,ecosystem,name,version,filename,sha256,cache,decision,code,reason,request_id,count,last_time');
    expect(lines).toHaveLength(2);
    expect(lines.some((l) => l.includes('"\'=HYPERLINK(""http://evil"")"'))).toBe(true);
    // The same incident as CycloneDX for the security team: the served artefacts it affects.
    const cdx = await fetch(ui('/advisories.cdx.json?q=PYSEC-2099-1'), { headers: { cookie: cookie! } });
    expect(cdx.headers.get('content-type')).toMatch(/application\/vnd\.cyclonedx\+json/);
    const bom = (await cdx.json()) as { bomFormat: string; components: { purl?: string }[]; metadata: { properties: { name: string; value: string }[] } };
    expect(bom.bomFormat).toBe('CycloneDX');
    expect(bom.components.map((x) => x.purl)).toEqual(['pkg:pypi/tinylib@1.0?file_name=tinylib-1.0-py3-none-any.whl']);
    expect(bom.metadata.properties.find((p) => p.name === 'airlock:subject')?.value).toMatch(/^PYSEC-2099-1/);
    // Refusals by time: today's, and none on a day long ago.
    const today = new Date().toISOString().slice(0, 10);
    expect(await (await fetch(ui(`/refusals?from=${today}&to=${today}`), { headers: { cookie: cookie! } })).text()).toContain('tinylib 2.0');
    expect(await (await fetch(ui('/refusals?from=2001-01-01&to=2001-01-02'), { headers: { cookie: cookie! } })).text()).toContain('No refusals match.');
    const unknown = await fetch(ui('/advisories?q=CVE-0000-0000'), { headers: { cookie: cookie! } });
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain('no imported advisory');
    expect((await fetch(ui('/advisories.csv?q=PYSEC-2099-1'), { redirect: 'manual' })).status).toBe(303);
  });

  it("an artefact page shows an image's vulnerabilities from its inventory, and the SBOM fragment of what was served", async () => {
    const digest = 'ab'.repeat(32);
    const inv = {
      os: { id: 'debian', versionId: '12', ecosystem: 'Debian:12' },
      packages: [{ type: 'deb', name: 'libssl3', version: '3.0.1-1', source: 'openssl', location: 'var/lib/dpkg/status' }],
      unreadable: [],
      layers: 1,
    };
    await a.airlock.meta.inventories.putInventory(`sha256:${digest}`, 1, JSON.stringify(inv), [
      { type: 'deb', name: 'libssl3', version: '3.0.1-1', source: 'openssl' },
    ]);
    const osv = {
      id: 'DEBIAN-CVE-2099-4242',
      upstream: ['CVE-2099-4242'],
      summary: 'OpenSSL trouble',
      modified: '2026-11-20T00:00:00Z',
      affected: [
        { package: { ecosystem: 'Debian:12', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.0.2-1' }] }] },
      ],
    };
    await a.airlock.meta.putAdvisories([{ id: osv.id, modified: osv.modified, record: JSON.stringify(osv) }]);
    await a.airlock.reloadAdvisories();
    await appendPulls(a.airlock.meta, [
      {
        ts: Date.now(),
        client: '10.0.0.3',
        ecosystem: 'oci',
        name: 'registry.test/team/base',
        version: 'v1',
        filename: 'manifest',
        sha256: digest,
        size: 500,
        cache: 'miss',
        decision: 'allow',
        rule: 'oci.allow[0]',
      },
    ]);
    const { cookie } = await login(admin);
    const body = await (await fetch(ui(`/artefact?ecosystem=oci&name=registry.test/team/base&sha256=${digest}`), { headers: { cookie: cookie! } })).text();
    expect(body).toContain('DEBIAN-CVE-2099-4242');
    expect(body).toContain('in libssl3 3.0.1-1');
    expect(body).toContain('fixed in 3.0.2-1');
    expect(body).toContain('oci.allow[0]');
    // The overview says how fresh the imported advisory data is.
    // One cold and one warm pull of an allowed file: a hit ratio of 50%.
    for (let i = 0; i < 2; i++) {
      expect((await rawGet(`${a.url}/pypi/files/tinylib/tinylib-1.0-py3-none-any.whl`)).status).toBe(200);
      await a.airlock.cache.idle();
    }
    const overview = await (await fetch(ui(''), { headers: { cookie: cookie! } })).text();
    expect(overview).toContain('newest record modified 2026-11-20');
    // The hit ratio of what this server served, the policy's version (its file's SHA-256) and the scanner's.
    expect(overview).toMatch(/Cache hit ratio<\/span><b>50%<\/b><span class="muted">1 of 2 served/);
    expect(overview).toMatch(/version <code>[0-9a-f]{12}<\/code> of [^<]*airlock\.yaml/);
    expect(overview).toContain('scanner airlock-scan/');
    expect(body).toMatch(/SBOM fragment<\/h2>\s*<pre aria-label="CycloneDX components">[\s\S]*pkg:oci\/base@sha256:abab[\s\S]*<\/pre>/);
  });

  it("shows a signed pull's signer on the record and artefact pages and in its SBOM fragment, and the trusted root's age on the overview", async () => {
    const digest = 'cd'.repeat(32);
    const signature = JSON.stringify({ ok: true, identity: 'key:0123456789ab', bundleDigest: `sha256:${'e'.repeat(64)}`, trustVersion: '6494e21ea73f' });
    await appendPulls(a.airlock.meta, [
      {
        ts: Date.now(),
        client: '10.0.0.4',
        ecosystem: 'oci',
        name: 'registry.test/team/signed',
        version: 'v1',
        filename: 'manifest',
        sha256: digest,
        size: 9,
        cache: 'miss',
        decision: 'allow',
        rule: 'oci.allow[1]',
        signature,
      },
    ]);
    const { cookie } = await login(admin);
    const get = async (p: string) => (await fetch(ui(p), { headers: { cookie: cookie! } })).text();
    expect(await get('/records?name=registry.test/team/signed')).toContain('signer: key:0123456789ab');
    const art = await get(`/artefact?ecosystem=oci&name=registry.test/team/signed&sha256=${digest}`);
    expect(art).toContain('<th scope="row">Signed by</th><td><strong>key:0123456789ab</strong>');
    expect(art).toMatch(/&quot;name&quot;: &quot;airlock:signer&quot;,\s*&quot;value&quot;: &quot;key:0123456789ab&quot;/);
    // The server's trusted root (the shipped one here): its version and age, flagged when older than a year.
    const overview = await get('');
    expect(overview).toMatch(
      /<span>Trusted root<\/span><b>(<span class="deny">)?\d+ days old(<\/span>)?<\/b><span class="muted">version <code>6494e21ea73f<\/code> \(shipped\)/,
    );
  });

  it('verifies the chain on request (a CSRF-protected form) and shows the result', async () => {
    const { cookie } = await login(admin);
    const before = await (await fetch(ui('/records'), { headers: { cookie: cookie! } })).text();
    expect(before).toContain('Not verified by this server since it started');
    const csrf = /name="csrf" value="([^"]+)"/.exec(before)![1];
    expect(
      (
        await fetch(ui('/records/verify'), {
          method: 'POST',
          redirect: 'manual',
          headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'csrf=nope',
        })
      ).status,
    ).toBe(403);
    const v = await fetch(ui('/records/verify'), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }),
    });
    expect(v.status).toBe(303);
    const after = await (await fetch(ui('/records'), { headers: { cookie: cookie! } })).text();
    expect(after).toMatch(/Intact: \d+ rows, head <code>[0-9a-f]{64}<\/code>/);
  });

  it("refuses a POST without the session's CSRF token; logs out with it", async () => {
    const { cookie } = await login(admin);
    const noCsrf = await fetch(ui('/logout'), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=wrong',
    });
    expect(noCsrf.status).toBe(403);
    const csrf = /name="csrf" value="([^"]+)"/.exec(await (await fetch(ui(''), { headers: { cookie: cookie! } })).text())![1];
    const out = await fetch(ui('/logout'), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }),
    });
    expect(out.status).toBe(303);
    expect(cookieOf(out, 'airlock_console')).toMatch(/Max-Age=0|Expires=Thu, 01 Jan 1970/);
    // The server ended the session: the same cookie, kept (or stolen), is no session any more.
    const reused = await fetch(ui(''), { redirect: 'manual', headers: { cookie: cookie! } });
    expect(reused.status).toBe(303);
    expect(reused.headers.get('location')).toBe('/-/ui/login');
    const post = await fetch(ui('/records/verify'), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }),
    });
    expect(post.status).toBe(401);
  });

  it('airlock token revoke (another process) ends the console sessions of that token, and only those', async () => {
    const auth = new Authenticator(a.airlock.meta);
    const gone = await login(await auth.create('leaving-admin', true));
    const stays = await login(await auth.create('staying-admin', true));
    for (const s of [gone, stays]) expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: s.cookie! } })).status).toBe(200);
    const r = await airlockCli(['token', 'revoke', 'leaving-admin', '--config', a.configFile]);
    expect(r.code).toBe(0);
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: gone.cookie! } })).status).toBe(303);
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: stays.cookie! } })).status).toBe(200);
  });

  it('refuses a login whose nonce is missing, not the one given, forged or expired, saying which', async () => {
    const post = (cookie: string | null, nonce: string | null, token = admin) =>
      fetch(ui('/login'), {
        method: 'POST',
        redirect: 'manual',
        headers: { ...(cookie ? { cookie: `airlock_login=${cookie}` } : {}), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ ...(nonce ? { nonce } : {}), token }),
      });
    const refused = async (res: Response, says: RegExp) => {
      expect(res.status).toBe(403);
      expect(cookieOf(res, 'airlock_console')).toBeUndefined();
      expect(await res.text()).toMatch(says);
    };
    const form = await fetch(ui('/login'));
    const given = /name="nonce" value="([^"]+)"/.exec(await form.text())![1];
    expect(cookieOf(form, 'airlock_login')!.split(';')[0]).toBe(`airlock_login=${given}`);
    expect(cookieOf(form, 'airlock_login')).toMatch(/Max-Age=600/);
    await refused(await post(null, null), /carries no login nonce/);
    await refused(await post(given, null), /carries no login nonce/);
    await refused(await post(null, given), /carries no login nonce/);
    const other = /name="nonce" value="([^"]+)"/.exec(await (await fetch(ui('/login'))).text())![1];
    await refused(await post(given, other), /not the one given to this browser/);
    // The same value in cookie and form (a double submit an attacker can make) is not enough: it must be signed here.
    await refused(await post('attacker-chosen', 'attacker-chosen'), /not signed by it/);
    const [r, exp, mac] = given.split('.');
    const later = `${r}.${Number(exp) + 86_400_000}.${mac}`;
    await refused(await post(later, later), /not signed by it/);
    const otherKey = loginNonce('not-the-console-secret');
    await refused(await post(otherKey, otherKey), /not signed by it/);
    const stale = loginNonce(await a.airlock.meta.consoleSecret(), Date.now() - 10 * 60_000 - 1);
    await refused(await post(stale, stale), /This login form expired/);
    // The nonce it was given, in both places: logged in.
    const ok = await post(given, given);
    expect(ok.status).toBe(303);
    expect(cookieOf(ok, 'airlock_console')).toBeDefined();
  });

  it('an expired, forged or revoked session is no session', async () => {
    const tokens = await a.airlock.meta.listTokens();
    const t = tokens.find((x) => x.name === 'sec-team')!;
    const old = (await issueSession(t, a.airlock.meta, Date.now() - 9 * 3600_000)).cookie;
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: `airlock_console=${old}` } })).status).toBe(303);
    const { cookie } = await login(admin);
    const tampered = cookie!.replace(/.$/, (ch) => (ch === 'A' ? 'B' : 'A'));
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: tampered } })).status).toBe(303);
    expect((await fetch(ui(''), { headers: { cookie: cookie! } })).status).toBe(200);
    await a.airlock.meta.revokeToken('sec-team');
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: cookie! } })).status).toBe(303);
    // The name issued again: the new token's sessions work, the revoked token's stay ended.
    const again = await new Authenticator(a.airlock.meta).create('sec-team', true);
    const fresh = await login(again);
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: fresh.cookie! } })).status).toBe(200);
    expect((await fetch(ui(''), { redirect: 'manual', headers: { cookie: cookie! } })).status).toBe(303);
  });
});
