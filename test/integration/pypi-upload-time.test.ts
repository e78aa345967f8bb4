import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';

/**
 * What uv reads from Airlock's JSON simple pages for `--exclude-newer` (issue 27; uv itself is not
 * installable on this machine, so the fields are checked as uv reads them): the JSON page is
 * chosen for uv's own Accept header, and every file carries PEP 700's `upload-time` in the form
 * the PEP fixes, `yyyy-mm-ddThh:mm:ss.ffffffZ` in UTC, naming the instant the upstream gave, even
 * when the upstream wrote it another RFC 3339 way (an offset, a space, lower case, no fraction).
 */
/** The Accept header uv sends to a simple index (uv-client, SimpleIndex). */
const UV_ACCEPT = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01';
const PEP700 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

describe("upload-time on Airlock's JSON pages, as uv's --exclude-newer reads it", () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  const written: Record<string, string> = {
    '1.0': '2024-01-01T00:00:00.123456Z',
    '1.1': '2024-02-01T03:00:00.5+03:00',
    '1.2': '2024-03-01 00:00:00Z',
    '1.3': '2024-04-01t00:00:00.000001z',
    '1.4': '2024-04-30T20:00:00-05:00',
  };
  const files = Object.entries(written).map(([v, t]) => ({ filename: `timelib-${v}-py3-none-any.whl`, bytes: Buffer.from(`timelib ${v}`), uploadTime: t }));

  beforeAll(async () => {
    await pub.start();
    for (const f of files) pub.add('timelib', f);
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
policy:
  pypi:
    allow:
      - { name: timelib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  it("answers uv's Accept header with the JSON page, every file with a PEP 700 upload-time naming the upstream's instant", async () => {
    const res = await fetch(`${a.url}/pypi/simple/timelib/`, { headers: { accept: UV_ACCEPT } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.pypi.simple.v1+json');
    const page = (await res.json()) as {
      meta: { 'api-version': string };
      files: { filename: string; url: string; hashes: { sha256: string }; size: number; 'upload-time': string }[];
    };
    expect(page.meta['api-version']).toBe('1.1');
    expect(page.files).toHaveLength(files.length);
    for (const f of page.files) {
      const v = f.filename.split('-')[1];
      expect(f['upload-time'], f.filename).toMatch(PEP700);
      // The same instant as the upstream wrote (to the microsecond PEP 700 keeps).
      expect(Date.parse(f['upload-time']), f.filename).toBe(Date.parse(written[v].replace(' ', 'T').toUpperCase()));
      expect(f.hashes.sha256).toBe(sha256(Buffer.from(`timelib ${v}`)));
      expect(f.size).toBe(`timelib ${v}`.length);
    }
    const byVersion = Object.fromEntries(page.files.map((f) => [f.filename.split('-')[1], f['upload-time']]));
    expect(byVersion).toEqual({
      '1.0': '2024-01-01T00:00:00.123456Z',
      '1.1': '2024-02-01T00:00:00.500000Z',
      '1.2': '2024-03-01T00:00:00.000000Z',
      '1.3': '2024-04-01T00:00:00.000001Z',
      '1.4': '2024-05-01T01:00:00.000000Z',
    });
  });

  it('lets an exclude-newer cut-off pick the right release, as uv compares them (upload-time <= cut-off)', async () => {
    const page = (await (await fetch(`${a.url}/pypi/simple/timelib/`, { headers: { accept: UV_ACCEPT } })).json()) as {
      files: { filename: string; 'upload-time': string }[];
    };
    const newestBefore = (cut: string) =>
      page.files
        .filter((f) => Date.parse(f['upload-time']) <= Date.parse(cut))
        .map((f) => f.filename.split('-')[1])
        .sort()
        .pop();
    // 1.4 was uploaded 2024-04-30T20:00:00-05:00, i.e. 2024-05-01T01:00Z: after an April cut-off in UTC.
    expect(newestBefore('2024-04-30T23:59:59Z')).toBe('1.3');
    expect(newestBefore('2024-05-01T01:00:00Z')).toBe('1.4');
    expect(newestBefore('2024-02-01T00:00:00.4Z')).toBe('1.0');
    expect(newestBefore('2024-02-01T00:00:00.5Z')).toBe('1.1');
  });
});
