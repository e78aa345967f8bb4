import { Readable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { OciError } from '../../src/oci/errors.js';
import { ImageSignatures, type ImageSignaturesDeps } from '../../src/oci/signatures.js';
import { Policy } from '../../src/policy/index.js';
import type { SignatureRequirement } from '../../src/policy/signing.js';
import { SignatureCache, SIGNATURE_CACHE_MAX_AGE_MS } from '../../src/signing/cache.js';
import { shippedTrustRoot } from '../../src/signing/trust.js';
import { bundleObjects, fixtureBundle, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';

/**
 * Cached verdicts (issue 26) are bounded in size and age, and never outlive what they were verified
 * under: the rule's cache key changes with what the rule checks (a reload), the trust version with
 * the root (an import). An image's verified verdict past its age is looked up again, and kept while
 * the upstream cannot be asked.
 */
const HOUR = SIGNATURE_CACHE_MAX_AGE_MS;

describe('SignatureCache: size and age', () => {
  it('verifies again an entry older than its age; stale() still gives it until evicted', () => {
    let now = 1_000_000;
    const c = new SignatureCache(10, HOUR, () => now);
    let calls = 0;
    const compute = () => ({ ok: true, identity: `v${++calls}` });
    expect(c.through('s', 'b', 't', 'r', compute).identity).toBe('v1');
    now += HOUR - 1;
    expect(c.through('s', 'b', 't', 'r', compute).identity).toBe('v1');
    now += 1;
    expect(c.get('s', 'b', 't', 'r')).toBeUndefined();
    expect(c.stale('s', 'b', 't', 'r')).toEqual({ ok: true, identity: 'v1' });
    expect(c.through('s', 'b', 't', 'r', compute).identity).toBe('v2');
    expect(HOUR).toBe(3_600_000);
  });

  it('never holds more than its limit, however many subjects pass', () => {
    const c = new SignatureCache(100);
    for (let i = 0; i < 5_000; i++) c.set(`s${i}`, 'b', 't', 'r', { ok: true });
    expect(c.size).toBe(100);
    expect(c.get('s4999', 'b', 't', 'r')).toEqual({ ok: true });
    expect(c.get('s0', 'b', 't', 'r')).toBeUndefined();
  });
});

describe("a rule's cache key follows what it checks", () => {
  const rule = (publisher: Record<string, string>) =>
    new Policy({ pypi: { allow: [{ name: 'x', require: 'attested', publisher }] } }).pypi.requirement('pypi.allow[0]')!;
  it('a changed publisher (or workflow) is another key; the same rule the same key', () => {
    const a = rule({ github: 'acme/x', workflow: 'release.yml' });
    expect(rule({ github: 'acme/x', workflow: 'release.yml' }).cacheKey).toBe(a.cacheKey);
    expect(rule({ github: 'acme/y', workflow: 'release.yml' }).cacheKey).not.toBe(a.cacheKey);
    expect(rule({ github: 'acme/x', workflow: 'other.yml' }).cacheKey).not.toBe(a.cacheKey);
  });
});

describe('an image verdict past its age', () => {
  const subject = subjectImage().manifest;
  const objs = bundleObjects(fixtureBundle(), subject);
  const req: SignatureRequirement = {
    rule: 'oci.allow[0]',
    require: 'attested',
    signers: [{ kind: 'keyless', name: 'cody', issuer: 'https://github.com/login/oauth', subject: 'cody@soyland.com' }],
    signature: 'model.sig',
    cacheKey: 'oci.allow[0] k',
    onChange: 'refuse',
  };

  function setup() {
    let now = Date.now();
    let root = shippedTrustRoot();
    const upstream = { referrers: 0, mode: 'signed' as 'signed' | 'down' | 'unsigned' };
    const index = (list: (typeof objs.manifest)[]) =>
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: list.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, artifactType: objs.layer.mediaType })),
      });
    const t = {
      repo: 'r.test/app',
      upstreamName: 'app',
      client: {
        request: async () => {
          upstream.referrers++;
          if (upstream.mode === 'down') return { status: 503, body: Readable.from([]) };
          return { status: 200, body: Readable.from([Buffer.from(index(upstream.mode === 'signed' ? [objs.manifest] : []))]) };
        },
      },
    };
    const deps = {
      upstream: {
        resolveTag: async () => {
          if (upstream.mode === 'down') throw new OciError(503, 'UNAVAILABLE', 'down');
          throw new OciError(404, 'MANIFEST_UNKNOWN', 'no such tag');
        },
        manifest: async () => ({ bytes: objs.manifest.bytes }),
        openBlob: async () => ({ body: Readable.from([objs.layer.bytes]) }),
      },
      cache: { readSmall: async () => null, putSmall: async () => undefined },
      meta: { getOciParents: async () => [] },
      live: { policy: { oci: { decideDigest: () => ({ allow: true }) } } },
      log: pino({ level: 'silent' }),
      maxManifestBytes: 4 << 20,
      trust: { current: () => root },
      clock: () => now,
    } as unknown as ImageSignaturesDeps;
    const sigs = new ImageSignatures(deps);
    return {
      sigs,
      upstream,
      t: t as never,
      advance: (ms: number) => (now += ms),
      rotate: () => (root = Object.assign(Object.create(Object.getPrototypeOf(root)), root, { version: 'rotated0000' })),
    };
  }

  it('is looked up again after an hour: a signature gone upstream is then refused', async () => {
    const { sigs, upstream, t, advance } = setup();
    expect(await sigs.check(t, subject.digest, req)).toMatchObject({ ok: true, identity: 'https://github.com/login/oauth cody@soyland.com' });
    expect(await sigs.check(t, subject.digest, req)).toMatchObject({ ok: true });
    expect(upstream.referrers).toBe(1);
    upstream.mode = 'unsigned';
    advance(HOUR);
    expect(await sigs.check(t, subject.digest, req)).toMatchObject({ ok: false, code: 'unsigned' });
    expect(upstream.referrers).toBe(2);
  });

  it('is kept while the upstream cannot be asked again (not refused for an outage)', async () => {
    const { sigs, upstream, t, advance } = setup();
    expect((await sigs.check(t, subject.digest, req)).ok).toBe(true);
    upstream.mode = 'down';
    advance(HOUR);
    expect(await sigs.check(t, subject.digest, req)).toMatchObject({ ok: true, identity: 'https://github.com/login/oauth cody@soyland.com' });
    expect(upstream.referrers).toBe(2);
  });

  it('under another rule key or trust version, is never reused', async () => {
    const { sigs, upstream, t, rotate } = setup();
    expect((await sigs.check(t, subject.digest, req)).ok).toBe(true);
    upstream.mode = 'unsigned';
    expect((await sigs.check(t, subject.digest, { ...req, cacheKey: 'oci.allow[0] other signers' })).ok).toBe(false);
    expect((await sigs.check(t, subject.digest, req)).ok).toBe(true);
    rotate();
    expect((await sigs.check(t, subject.digest, req)).ok).toBe(false);
    expect(upstream.referrers).toBe(3);
  });
});
