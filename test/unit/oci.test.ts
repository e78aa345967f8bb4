import { describe, expect, it } from 'vitest';
import { accepts, indexEntries, MT, parseManifest, parseV2Path } from '../../src/oci/reference.js';
import { checkDigest, isValidName, isValidTag, parseImageRef } from '../../src/names/oci.js';
import { parseChallenge } from '../../src/oci/registry-client.js';
import { OciPolicy, canonicalRepository } from '../../src/policy/oci.js';
import { PolicyError } from '../../src/policy/types.js';

const A = 'sha256:' + 'a'.repeat(64);
const B = 'sha256:' + 'b'.repeat(64);
const C = 'sha256:' + 'c'.repeat(64);

describe('OCI grammar', () => {
  it('splits /v2/ paths on the last marker, since names contain slashes', () => {
    expect(parseV2Path('')).toEqual({ kind: 'base' });
    expect(parseV2Path('a/manifests/b/manifests/v1')).toEqual({ kind: 'manifest', name: 'a/manifests/b', reference: 'v1' });
    expect(parseV2Path(`ghcr.io/org/img/blobs/${A}`)).toEqual({ kind: 'blob', name: 'ghcr.io/org/img', digest: A });
    expect(parseV2Path('org/img/tags/list')).toEqual({ kind: 'tags', name: 'org/img' });
    expect(parseV2Path('org/img/blobs/uploads/')).toEqual({ kind: 'uploads', name: 'org/img' });
    expect(parseV2Path('org/img/manifests/')).toEqual({ kind: 'unknown' });
    expect(parseV2Path('org/img/manifests/a/b')).toEqual({ kind: 'unknown' });
    expect(parseV2Path('_catalog')).toEqual({ kind: 'catalog' });
  });
  it('validates names, tags and digests as the spec writes them', () => {
    expect(isValidName('library/python')).toBe(true);
    expect(isValidName('a__b/c-d.e')).toBe(true);
    expect(isValidName('Library/python')).toBe(false);
    expect(isValidName('a/../b')).toBe(false);
    expect(isValidName('a//b')).toBe(false);
    expect(isValidName('a'.repeat(256))).toBe(false);
    expect(isValidTag('3.12-slim')).toBe(true);
    expect(isValidTag('.hidden')).toBe(false);
    expect(isValidTag('a'.repeat(129))).toBe(false);
    expect(checkDigest(A)).toEqual({ ok: true });
    expect(checkDigest('sha256:' + 'A'.repeat(64)).ok).toBe(false);
    expect(checkDigest('sha512:' + 'a'.repeat(128))).toEqual({ ok: false, reason: 'digest algorithm "sha512" is not verified by Airlock (only sha256 is)' });
    expect(checkDigest('nonsense').ok).toBe(false);
  });
  it('reads manifests and indexes, refusing schema1, foreign layers and type mismatches', () => {
    const m = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MT.dockerManifest, config: { digest: A, size: 10 }, layers: [{ digest: B, size: 20 }] }),
    );
    expect(parseManifest(m, MT.dockerManifest)).toEqual({
      mediaType: MT.dockerManifest,
      isIndex: false,
      children: [
        { digest: A, size: 10, kind: 'blob' },
        { digest: B, size: 20, kind: 'blob' },
      ],
    });
    const idx = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: C, size: 5 }] }));
    expect(parseManifest(idx, 'application/json').isIndex).toBe(true);
    expect(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 1, fsLayers: [] })), MT.schema1Signed)).toThrow(/schema1 manifests are not served/);
    expect(() => parseManifest(m, MT.ociManifest)).toThrow(/says mediaType .* but was sent as/);
    const foreign = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: { digest: A, size: 1 },
        layers: [{ digest: B, size: 1, urls: ['https://evil.example/layer'] }],
      }),
    );
    expect(() => parseManifest(foreign, MT.ociManifest)).toThrow(/foreign layer/);
    expect(() => parseManifest(Buffer.from('<html>'), MT.ociManifest)).toThrow(/not JSON/);
    const bad = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { digest: 'md5:x', size: 1 }, layers: [] }));
    expect(() => parseManifest(bad, MT.ociManifest)).toThrow(/config.digest/);
  });
  it('matches Accept headers, including wildcards and q=0', () => {
    expect(accepts(undefined, MT.ociIndex)).toBe(true);
    expect(accepts(`${MT.dockerManifest}, ${MT.ociManifest}`, MT.ociIndex)).toBe(false);
    expect(accepts('*/*', MT.ociIndex)).toBe(true);
    expect(accepts(`${MT.ociIndex};q=0, */*`, MT.ociIndex)).toBe(true);
    expect(accepts(`${MT.ociIndex};q=0`, MT.ociIndex)).toBe(false);
  });
  it('parses image references as Docker normalises them', () => {
    const ok = (input: string, def?: string) => {
      const r = parseImageRef(input, def);
      if (!r.ok) throw new Error(r.reason);
      return r.ref;
    };
    expect(ok('docker.io/library/python:3.12')).toEqual({ registry: 'docker.io', name: 'library/python', repository: 'docker.io/library/python', tag: '3.12' });
    // Docker Hub's defaults: no registry means docker.io, a one-part name is under library/, aliases are docker.io.
    expect(ok('python:3.12-slim')).toEqual(ok('docker.io/library/python:3.12-slim'));
    expect(ok('registry-1.docker.io/python:3.12').repository).toBe('docker.io/library/python');
    expect(ok('Index.Docker.io/org/app:1').repository).toBe('docker.io/org/app');
    expect(ok('org/app:1').repository).toBe('docker.io/org/app');
    expect(ok(`ghcr.io/x/y@${A}`)).toEqual({ registry: 'ghcr.io', name: 'x/y', repository: 'ghcr.io/x/y', digest: A });
    expect(ok(`ghcr.io/x/y:v1@${A}`)).toEqual({ registry: 'ghcr.io', name: 'x/y', repository: 'ghcr.io/x/y', tag: 'v1', digest: A });
    // A port is part of the host, not a tag; localhost is a host without a dot.
    expect(ok('localhost:5000/a/b:tag')).toEqual({ registry: 'localhost:5000', name: 'a/b', repository: 'localhost:5000/a/b', tag: 'tag' });
    expect(ok('localhost:5000/a/b')).toEqual({ registry: 'localhost:5000', name: 'a/b', repository: 'localhost:5000/a/b' });
    expect(ok('localhost/a')).toEqual({ registry: 'localhost', name: 'a', repository: 'localhost/a' });
    // Another default registry (oci.default_registry): no library/ there.
    expect(ok('team/app:v1', 'registry.test').repository).toBe('registry.test/team/app');
    expect(ok('app:v1', 'registry.test').repository).toBe('registry.test/app');
    // Neither tag nor digest is a reference too ("latest" is not assumed).
    expect(ok('python')).toEqual({ registry: 'docker.io', name: 'library/python', repository: 'docker.io/library/python' });
    const bad = (input: string) => {
      const r = parseImageRef(input);
      expect(r.ok, input).toBe(false);
      return r.ok ? '' : r.reason;
    };
    expect(bad('docker.io/Library/Python:3.12')).toMatch(/"Library\/Python" is not a repository name/);
    expect(bad('python:')).toMatch(/"" is not a valid tag/);
    expect(bad('python:3.12:x')).toMatch(/not a repository name/);
    expect(bad('ghcr.io/x/y@sha256:abc')).toMatch(/64 lowercase hex/);
    expect(bad(`ghcr.io/x/y@md5:${'a'.repeat(32)}`)).toMatch(/only sha256/);
    expect(bad('a..b:5000/x:1')).toMatch(/not a registry host/);
    expect(bad('docker://python:3.12')).toMatch(/not a registry host/);
    expect(bad('ghcr.io//x:1')).toMatch(/not a repository name/);
    expect(bad('')).toMatch(/empty/);
    expect(bad(`ghcr.io/${'a'.repeat(250)}:1`)).toMatch(/at most 255/);
  });
  it('lists the platforms of an index, telling attestations apart', () => {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { digest: A, size: 10, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
          { digest: B, size: 20, platform: { os: 'unknown', architecture: 'unknown' } },
          { digest: C, size: 30 },
        ],
      }),
    );
    expect(indexEntries(index)).toEqual([
      { digest: A, size: 10, platform: 'linux/arm64/v8', attestation: false },
      { digest: B, size: 20, platform: 'unknown/unknown', attestation: true },
      { digest: C, size: 30, attestation: false },
    ]);
  });
  it('parses WWW-Authenticate challenges', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
    });
    expect(parseChallenge('Basic realm="x\\"y"')).toEqual({ scheme: 'basic', params: { realm: 'x"y' } });
    expect(parseChallenge(undefined)).toBeNull();
  });
});

describe('OCI policy', () => {
  const policy = new OciPolicy(
    {
      allow: [
        { repository: 'index.docker.io/python', digests: [A], tags: { '3.12-slim': B } },
        { repository: 'ghcr.io/org/app', digests: [C] },
      ],
      deny: [
        { repository: 'docker.io/evil/*', reason: 'impersonation' },
        { repository: 'ghcr.io/org/app', digests: [C], reason: 'CVE-2099-1' },
      ],
    },
    ['oci'],
  );
  it('writes repositories canonically', () => {
    expect(canonicalRepository('docker.io/python')).toBe('docker.io/library/python');
    expect(canonicalRepository('registry-1.docker.io/library/python')).toBe('docker.io/library/python');
    expect(canonicalRepository('ghcr.io/Org/app')).toBeNull();
    expect(canonicalRepository('python')).toBeNull();
    expect(policy.repositories()).toEqual(['docker.io/library/python', 'ghcr.io/org/app']);
  });
  it('answers a tag only with its pinned digest, and pins the alias target', () => {
    expect(policy.resolveTag('docker.io/library/python', '3.12-slim')).toEqual({ decision: { allow: true, rule: 'oci.allow[0]' }, digest: B });
    const latest = policy.resolveTag('docker.io/library/python', 'latest');
    expect(latest.digest).toBeUndefined();
    expect(latest.decision).toMatchObject({ allow: false, code: 'tag_not_pinned' });
    expect(policy.decideDigest('docker.io/library/python', B).allow).toBe(true);
    expect(policy.decideDigest('docker.io/library/python', C)).toMatchObject({ allow: false, code: 'digest_not_pinned' });
    expect(policy.tags('docker.io/library/python')).toEqual(['3.12-slim']);
  });
  it('lets deny rules win, by glob or by digest, with their reason', () => {
    expect(policy.decideRepository('docker.io/evil/python')).toMatchObject({ allow: false, code: 'denied', rule: 'oci.deny[0]' });
    expect((policy.decideDigest('ghcr.io/org/app', C) as { reason: string }).reason).toMatch(/CVE-2099-1/);
    const viaParent = policy.decideReferenced('ghcr.io/org/app', C, { allow: true, rule: 'oci.allow[1]' });
    expect(viaParent.allow).toBe(false);
    expect(policy.decideReferenced('docker.io/library/python', C, { allow: true, rule: 'oci.allow[0]' }).allow).toBe(true);
    expect(policy.decideRepository('quay.io/x/y')).toMatchObject({ allow: false, code: 'not_allowlisted' });
  });
  it('names the field of a bad rule', () => {
    const bad = (input: ConstructorParameters<typeof OciPolicy>[0]) => {
      try {
        new OciPolicy(input, ['oci']);
      } catch (e) {
        expect(e).toBeInstanceOf(PolicyError);
        return (e as PolicyError).path.join('.');
      }
      throw new Error('expected a PolicyError');
    };
    expect(bad({ allow: [{ repository: 'python', digests: [A] }] })).toBe('oci.allow.0.repository');
    expect(bad({ allow: [{ repository: 'docker.io/python' }] })).toBe('oci.allow.0.digests');
    expect(bad({ allow: [{ repository: 'docker.io/python', tags: { 'bad tag': A } }] })).toBe('oci.allow.0.tags.bad tag');
    expect(
      bad({
        allow: [
          { repository: 'docker.io/python', digests: [A] },
          { repository: 'docker.io/library/python', digests: [B] },
        ],
      }),
    ).toBe('oci.allow.1.repository');
  });
});
