// Section 7 of the benchmark: the console's pages on a large record. fillRecord writes a chained
// record of `rows` pulls straight into the data directory's SQLite store (mixed ecosystems,
// ~10% refused with their codes, 30 days, 5,000 names, an advisory among 20,000) and an admin token;
// consolePageTimes logs in as a browser would and times each page (median of 7).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export async function fillRecord(ROOT, dataDir, rows) {
  const { SqliteMetaStore } = await import(join(ROOT, 'dist', 'storage', 'sqlite-meta-store.js'));
  const { appendPulls } = await import(join(ROOT, 'dist', 'core', 'chain.js'));
  const { Authenticator } = await import(join(ROOT, 'dist', 'auth', 'tokens.js'));
  mkdirSync(dataDir, { recursive: true });
  const meta = new SqliteMetaStore(join(dataDir, 'airlock.db'));
  const DAY = 86_400_000;
  const start = Date.now() - 30 * DAY;
  const ecos = ['pypi', 'pypi', 'pypi', 'oci', 'hf'];
  const codes = ['not_allowlisted', 'version_not_allowed', 'advisory', 'content_refused', 'digest_not_pinned'];
  for (let done = 0; done < rows;) {
    const batch = [];
    for (let i = 0; i < 5000 && done < rows; i++, done++) {
      const eco = ecos[done % ecos.length];
      const deny = done % 10 === 7;
      const n = done % 5000;
      batch.push({
        ts: start + Math.floor((done / rows) * 30 * DAY),
        client: `10.${(done >> 16) & 255}.${(done >> 8) & 255}.${done & 255}`,
        ecosystem: eco,
        name: eco === 'oci' ? `docker.io/team/img-${n}` : eco === 'hf' ? `org/model-${n}` : `pkg-${n}`,
        version: eco === 'oci' ? 'v1' : `1.${done % 7}`,
        filename: eco === 'pypi' ? `pkg_${n}-1.${done % 7}-py3-none-any.whl` : eco === 'oci' ? 'blob' : 'model.safetensors',
        sha256: (done % 100_000).toString(16).padStart(64, '0'),
        size: 12345,
        cache: deny ? 'none' : done % 3 ? 'hit' : 'miss',
        decision: deny ? 'deny' : 'allow',
        reason: deny ? `refused for the benchmark (${codes[done % codes.length]})` : null,
        rule: deny ? eco : `${eco}.allow[${n}]`,
        requestId: `r${done}`,
        code: deny ? codes[done % codes.length] : null,
      });
    }
    await appendPulls(meta, batch);
  }
  const osv = {
    id: 'PYSEC-2099-99',
    aliases: ['CVE-2099-0099'],
    summary: 'benchmark advisory',
    modified: '2026-01-01T00:00:00Z',
    affected: [{ package: { ecosystem: 'PyPI', name: 'pkg-123' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.5' }] }] }],
  };
  // Beside it 19,999 others, as a synced OSV PyPI feed holds (an advisory page once read and parsed
  // every stored record per view: ~0.4 s at 20,000).
  const others = Array.from({ length: 19_999 }, (_, i) => {
    const r = { ...osv, id: `PYSEC-2098-${i}`, aliases: [`CVE-2098-${i}`], summary: `filler advisory ${i} `.repeat(40) };
    r.affected = [{ package: { ecosystem: 'PyPI', name: `filler-${i % 5000}` }, ranges: osv.affected[0].ranges }];
    return { id: r.id, modified: r.modified, record: JSON.stringify(r) };
  });
  await meta.putAdvisories([...others, { id: osv.id, modified: osv.modified, record: JSON.stringify(osv) }]);
  const token = await new Authenticator(meta).create('bench-admin', true);
  await meta.close();
  return token;
}

export async function consolePageTimes(base, token) {
  const form = await fetch(`${base}/-/ui/login`);
  const nonceCookie = form.headers
    .getSetCookie()
    .find((c) => c.startsWith('airlock_login='))
    .split(';')[0];
  const nonce = /name="nonce" value="([^"]+)"/.exec(await form.text())[1];
  const res = await fetch(`${base}/-/ui/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: nonceCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ nonce, token }),
  });
  const cookie = res.headers
    .getSetCookie()
    .find((c) => c.startsWith('airlock_console='))
    .split(';')[0];
  const pages = [
    '/-/ui',
    '/-/ui/refusals',
    '/-/ui/refusals?code=advisory&ecosystem=pypi',
    '/-/ui/records',
    '/-/ui/records?name=pkg-123',
    '/-/ui/records?decision=deny&ecosystem=hf',
    '/-/ui/advisories?q=CVE-2099-0099',
    '/-/ui/incidents/PYSEC-2099-99',
    '/-/ui/artefact?ecosystem=pypi&name=pkg-123&version=1.4',
  ];
  const out = {};
  for (const p of pages) {
    const ms = [];
    for (let i = 0; i < 7; i++) {
      const t = performance.now();
      const r = await fetch(`${base}${p}`, { headers: { cookie } });
      if (r.status !== 200) throw new Error(`${p}: ${r.status}`);
      await r.text();
      ms.push(performance.now() - t);
    }
    out[p] = ms.sort((x, y) => x - y)[3];
  }
  return out;
}
