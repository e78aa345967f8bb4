import { describe, expect, it } from 'vitest';
import { appendPulls, prunePulls, prunePullsToSize, verifyChain, GENESIS } from '../../src/core/chain.js';
import { advisoryPages } from '../../src/storage/advisory-pages.js';
import type {
  AdvisoryStore,
  TrustRootStore,
  SignerStore,
  AliasStore,
  BlobIndex,
  LeaseStore,
  OciStore,
  PageCache,
  PullLog,
  PullRecord,
  ScanStore,
  TokenStore,
} from '../../src/storage/meta-store.js';

/**
 * One contract suite per metadata interface (src/storage/meta-store.ts), which every backend must
 * pass: call each with a factory that returns a fresh, empty store. The SQLite backend runs them in
 * test/unit/sqlite-contracts.test.ts; a PostgreSQL backend will run the same.
 */
const hex = (c: string) => c.repeat(64);

export function blobIndexContract(name: string, fresh: () => Promise<BlobIndex>): void {
  describe(`BlobIndex contract: ${name}`, () => {
    it('puts, gets, replaces and deletes descriptors', async () => {
      const s = await fresh();
      expect(await s.getBlob(hex('a'))).toBeNull();
      await s.putBlob({ sha256: hex('a'), size: 10, createdAt: 1 });
      expect(await s.getBlob(hex('a'))).toEqual({ sha256: hex('a'), size: 10, createdAt: 1 });
      await s.putBlob({ sha256: hex('a'), size: 10, createdAt: 2 });
      expect((await s.getBlob(hex('a')))!.createdAt).toBe(2);
      await s.deleteBlob(hex('a'));
      expect(await s.getBlob(hex('a'))).toBeNull();
      await s.deleteBlob(hex('a')); // deleting what is absent is not an error
    });

    it("keeps a blob's chunk list beside its descriptor, replaces it, and forgets it with the blob", async () => {
      const s = await fresh();
      expect(await s.getChunks(hex('a'))).toBeNull();
      const list = { chunkSize: 1 << 20, digests: Buffer.alloc(64, 7), sum: hex('e') };
      await s.putChunks(hex('a'), list);
      await s.putBlob({ sha256: hex('a'), size: (1 << 20) + 1, createdAt: 1 });
      expect(await s.getChunks(hex('a'))).toEqual(list);
      const other = { chunkSize: 1 << 20, digests: Buffer.alloc(64, 9), sum: hex('f') };
      await s.putChunks(hex('a'), other);
      expect(await s.getChunks(hex('a'))).toEqual(other);
      await s.deleteBlob(hex('a'));
      expect(await s.getChunks(hex('a'))).toBeNull();
    });

    it('lists descriptors in digest order, a page at a time', async () => {
      const s = await fresh();
      for (const c of ['3', '1', '2']) await s.putBlob({ sha256: hex(c), size: Number(c), createdAt: 1 });
      expect((await s.listBlobs('', 2)).map((b) => b.size)).toEqual([1, 2]);
      expect((await s.listBlobs(hex('2'), 2)).map((b) => b.size)).toEqual([3]);
      expect(await s.listBlobs(hex('3'), 2)).toEqual([]);
    });

    it("keeps each blob's last use (never moved back) and totals, least recently used first", async () => {
      const s = await fresh();
      expect(await s.blobTotals()).toEqual({ count: 0, bytes: 0 });
      await s.putBlob({ sha256: hex('a'), size: 10, createdAt: 100 });
      await s.putBlob({ sha256: hex('b'), size: 20, createdAt: 200 });
      await s.putBlob({ sha256: hex('c'), size: 30, createdAt: 300 });
      expect(await s.blobTotals()).toEqual({ count: 3, bytes: 60 });
      expect((await s.leastRecentlyUsed(10)).map((b) => [b.sha256[0], b.usedAt])).toEqual([
        ['a', 100],
        ['b', 200],
        ['c', 300],
      ]);
      await s.touchBlobs([hex('a')], 400);
      await s.touchBlobs([hex('b')], 150); // older than its mark: ignored
      await s.touchBlobs([hex('f')], 500); // absent: ignored
      expect((await s.leastRecentlyUsed(2)).map((b) => [b.sha256[0], b.usedAt, b.size])).toEqual([
        ['b', 200, 20],
        ['c', 300, 30],
      ]);
      await s.deleteBlob(hex('c'));
      expect(await s.blobTotals()).toEqual({ count: 2, bytes: 30 });
      expect(await s.getBlob(hex('a'))).toEqual({ sha256: hex('a'), size: 10, createdAt: 100 });
    });
  });
}

export function pageCacheContract(name: string, fresh: () => Promise<PageCache>): void {
  describe(`PageCache contract: ${name}`, () => {
    it('keeps the newest page per key, with its etag', async () => {
      const s = await fresh();
      expect(await s.getPage('pypi:public:x')).toBeNull();
      await s.putPage({ key: 'pypi:public:x', body: '{"v":1}', fetchedAt: 1, etag: '"e1"' });
      await s.putPage({ key: 'pypi:public:x', body: '{"v":2}', fetchedAt: 2 });
      expect(await s.getPage('pypi:public:x')).toEqual({ key: 'pypi:public:x', body: '{"v":2}', fetchedAt: 2, etag: null });
      expect(await s.getPage('pypi:public:y')).toBeNull();
    });
  });
}

const pull = (i: number, extra: Partial<PullRecord> = {}): PullRecord => ({
  ts: 1000 + i,
  client: `10.0.0.${i % 5}`,
  ecosystem: 'pypi',
  name: `p${i % 3}`,
  version: '1.0',
  sha256: hex(String(i % 10)),
  cache: 'miss',
  decision: i % 4 === 0 ? 'deny' : 'allow',
  ...extra,
});

export function pullLogContract(name: string, fresh: () => Promise<PullLog>): void {
  describe(`PullLog contract: ${name}`, () => {
    it('appends rows in order, linked by the given rule from the head, and lists them newest first with filters', async () => {
      const s = await fresh();
      await appendPulls(s, [pull(1), pull(2)]);
      await appendPulls(s, [pull(3, { scan: '{"x":1}', requestId: 'r3', reason: 'why', rule: 'pypi.allow[0]', size: 5, filename: 'f.whl' })]);
      const all = [];
      for await (const r of s.scanPulls()) all.push(r);
      expect(all.map((r) => r.ts)).toEqual([1001, 1002, 1003]);
      expect(all[0].prevHash).toBe(GENESIS);
      expect(all[1].prevHash).toBe(all[0].hash);
      expect(all[2]).toMatchObject({
        scan: '{"x":1}',
        requestId: 'r3',
        reason: 'why',
        rule: 'pypi.allow[0]',
        size: 5,
        filename: 'f.whl',
        prevHash: all[1].hash,
      });
      expect((await s.listPulls({})).map((r) => r.ts)).toEqual([1003, 1002, 1001]);
      expect((await s.listPulls({ name: 'p1' })).map((r) => r.ts)).toEqual([1001]);
      expect((await s.listPulls({ sha256: hex('2') })).map((r) => r.ts)).toEqual([1002]);
      expect((await s.listPulls({ since: 1002, until: 1002 })).map((r) => r.ts)).toEqual([1002]);
      expect((await s.listPulls({ limit: 1 })).map((r) => r.ts)).toEqual([1003]);
      expect((await verifyChain(s)).problem).toBeUndefined();
    });

    it("keeps each row's refusal code (covered by the chain when present), filters by it, and pages by id", async () => {
      const s = await fresh();
      await appendPulls(s, [
        pull(1),
        pull(2, { decision: 'deny', code: 'not_allowlisted', reason: 'no' }),
        pull(3, { decision: 'deny', code: 'advisory' }),
        pull(4),
      ]);
      expect((await s.listPulls({ code: 'advisory' })).map((r) => r.ts)).toEqual([1003]);
      const [denied] = await s.listPulls({ code: 'not_allowlisted' });
      expect(denied.code).toBe('not_allowlisted');
      const newest = await s.listPulls({ limit: 2 });
      expect(newest.map((r) => r.ts)).toEqual([1004, 1003]);
      expect((await s.listPulls({ before: newest[1].id, limit: 2 })).map((r) => r.ts)).toEqual([1002, 1001]);
      expect((await verifyChain(s)).problem).toBeUndefined();
    });

    it('finds by decision, code, ecosystem, name and page exactly the rows a filter over the whole record finds (the refusal indexes hold only refusals)', async () => {
      const s = await fresh();
      const ecos = ['pypi', 'oci', 'hf'] as const;
      const codes = [null, 'not_allowlisted', 'advisory', 'too_new'];
      const rows = Array.from({ length: 120 }, (_, i) => {
        const decision = (['allow', 'allow', 'deny', 'allow', 'error'] as const)[i % 5];
        // Allowed rows carry a code too at times (a warning), refusals at times none (rows from before codes).
        return pull(i, { ecosystem: ecos[i % 3], decision, code: codes[(i * 7) % 4] });
      });
      await appendPulls(s, rows);
      const all = await s.listPulls({ limit: 1000 });
      expect(all).toHaveLength(120);
      const pageOf = (f: { decision?: string; code?: string; ecosystem?: string; name?: string; before?: number }) =>
        all
          .filter((r) => (!f.decision || r.decision === f.decision) && (!f.code || r.code === f.code))
          .filter((r) => (!f.ecosystem || r.ecosystem === f.ecosystem) && (!f.name || r.name === f.name) && (f.before === undefined || r.id < f.before))
          .slice(0, 7)
          .map((r) => r.id);
      const mid = all[60].id;
      for (const decision of [undefined, 'allow', 'deny', 'error'] as const)
        for (const code of [undefined, 'not_allowlisted', 'advisory'])
          for (const ecosystem of [undefined, 'oci'] as const)
            for (const before of [undefined, mid]) {
              const f = { decision, code, ecosystem, before };
              const got = (await s.listPulls({ ...f, limit: 7 })).map((r) => r.id);
              expect(got, JSON.stringify(f)).toEqual(pageOf(f));
            }
      expect((await s.listPulls({ decision: 'deny', name: 'p1', limit: 7 })).map((r) => r.id)).toEqual(pageOf({ decision: 'deny', name: 'p1' }));
    });

    it("keeps each row's signature (issue 26), covered by the chain when present, while rows without one hash as before", async () => {
      const s = await fresh();
      const sig = JSON.stringify({
        ok: true,
        identity: 'https://token.actions.githubusercontent.com https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1',
        tlogIndex: '42',
      });
      const bad = JSON.stringify({ ok: false, identity: 'https://issuer other@example.com' });
      await appendPulls(s, [pull(1), pull(2, { signature: sig }), pull(3, { decision: 'deny', code: 'bad_signature', signature: bad }), pull(4)]);
      const rows = (await s.listPulls({})).reverse();
      expect(rows.map((r) => r.signature ?? null)).toEqual([null, sig, bad, null]);
      expect(rows[0]).not.toHaveProperty('signature');
      expect((await verifyChain(s)).problem).toBeUndefined();
      const { rowHash } = await import('../../src/core/chain.js');
      // The signature is chained content: a row rewritten with another signer, or with it removed, no longer matches its hash.
      expect(rowHash(rows[1].prevHash!, { ...rows[1], signature: bad })).not.toBe(rows[1].hash);
      expect(rowHash(rows[1].prevHash!, { ...rows[1], signature: null })).not.toBe(rows[1].hash);
      // A row without one hashes exactly as before the column existed (older rows still verify).
      const legacy = [rows[0].ts, rows[0].client, 'pypi', rows[0].name, '1.0', null, rows[0].sha256, null, 'miss', 'allow', null, null, null, null];
      const { createHash } = await import('node:crypto');
      expect(rows[0].hash).toBe(createHash('sha256').update(GENESIS).update('\n').update(JSON.stringify(legacy)).digest('hex'));
    });

    it('counts rows per UTC day, ecosystem and decision', async () => {
      const s = await fresh();
      const DAY = 86_400_000;
      const at = (d: number, h: number) => 20_000 * DAY + d * DAY + h * 3_600_000;
      await appendPulls(s, [
        pull(5, { ts: at(-3, 0), decision: 'allow' }),
        pull(1, { ts: at(0, 1), decision: 'allow' }),
        pull(3, { ts: at(0, 5), decision: 'deny', ecosystem: 'oci' }),
        pull(2, { ts: at(0, 23), decision: 'allow' }),
        pull(4, { ts: at(1, 0), decision: 'allow' }),
      ]);
      expect(await s.dailyCounts(at(0, 0))).toEqual([
        { day: at(0, 0), ecosystem: 'oci', decision: 'deny', count: 1 },
        { day: at(0, 0), ecosystem: 'pypi', decision: 'allow', count: 2 },
        { day: at(1, 0), ecosystem: 'pypi', decision: 'allow', count: 1 },
      ]);
      // Pruning recounts the days it cut into: the summary always equals a count of the rows.
      await prunePulls(s, at(0, 6), 'test');
      const recount = new Map<string, number>();
      for await (const r of s.scanPulls()) {
        const k = `${Math.floor(r.ts / DAY) * DAY}|${r.ecosystem}|${r.decision}`;
        recount.set(k, (recount.get(k) ?? 0) + 1);
      }
      const summary = await s.dailyCounts(0);
      expect(new Map(summary.map((x) => [`${x.day}|${x.ecosystem}|${x.decision}`, x.count]))).toEqual(recount);
      expect(summary.find((x) => x.day === at(0, 0) && x.ecosystem === 'pypi')!.count).toBe(1);
    });

    it('keeps one chain under concurrent appends', async () => {
      const s = await fresh();
      await Promise.all(Array.from({ length: 20 }, (_, i) => appendPulls(s, [pull(i * 2), pull(i * 2 + 1)])));
      const rep = await verifyChain(s);
      expect(rep.rows).toBe(40);
      expect(rep.problem).toBeUndefined();
    });

    it('writes a batch whole or not at all', async () => {
      const s = await fresh();
      await appendPulls(s, [pull(1)]);
      const failing = s.appendPulls([pull(2), pull(3)], (head, rec) => {
        if (rec.ts === 1003) throw new Error('link failed');
        return { prevHash: head ?? GENESIS, hash: hex('f') };
      });
      await expect(failing).rejects.toThrow('link failed');
      expect((await s.listPulls({})).map((r) => r.ts)).toEqual([1001]);
    });

    it('prunes old rows and appends the anchor in one step, so the rest still verifies', async () => {
      const s = await fresh();
      await appendPulls(s, [pull(1), pull(2), pull(3), pull(4)]);
      expect(await prunePulls(s, 1000, 'test')).toBe(0);
      expect(await prunePulls(s, 1003, 'test')).toBe(2);
      const left = (await s.listPulls({})).map((r) => `${r.ecosystem}:${r.ts}`);
      expect(left.slice(1)).toEqual(['pypi:1004', 'pypi:1003']);
      expect(left[0]).toMatch(/^audit:/);
      expect((await verifyChain(s)).problem).toBeUndefined();
    });

    it('prunes a batch at a time: the same rows go, each batch leaves its anchor, and the rest verifies after every batch', async () => {
      const s = await fresh();
      await appendPulls(
        s,
        Array.from({ length: 7 }, (_, i) => pull(i + 1)),
      );
      // Rows 1001-1005 are past retention: batches of two remove 1001-1002, 1003-1004, then 1005 (not full: the last).
      expect(await prunePulls(s, 1006, 'test', 2)).toBe(5);
      const left = await s.listPulls({});
      expect(left.filter((r) => r.ecosystem === 'pypi').map((r) => r.ts)).toEqual([1007, 1006]);
      const anchors = left.filter((r) => r.ecosystem === 'audit').reverse();
      expect(anchors.map((r) => /retention: (\d+) records/.exec(r.reason ?? '')?.[1])).toEqual(['2', '2', '1']);
      expect((await verifyChain(s)).problem).toBeUndefined();
      // The size budget, in batches of three: the oldest rows go until the record is within it.
      await appendPulls(
        s,
        Array.from({ length: 20 }, (_, i) => pull(i + 10, { reason: 'x'.repeat(100) })),
      );
      const full = await s.pullSize();
      const removed = await prunePullsToSize(s, Math.floor(full.bytes / 2), 'test', 3);
      expect(removed).toBeGreaterThan(3);
      expect((await s.pullSize()).bytes).toBeLessThanOrEqual(Math.floor(full.bytes / 2) + 5 * 1000); // the anchors on top
      const budget = (await s.listPulls({ ecosystem: 'audit', limit: 100 })).filter((r) => /size budget/.test(r.reason ?? ''));
      expect(budget.length).toBe(Math.ceil(removed / 3));
      expect((await verifyChain(s)).problem).toBeUndefined();
    });

    it('keeps a folded row (a count and the last time) in the chain: it verifies, counts its events per day, and a changed count is found', async () => {
      const s = await fresh();
      const folded = pull(2, { decision: 'deny', code: 'not_allowlisted', count: 41, lastTs: 9000 });
      await appendPulls(s, [pull(1, { decision: 'deny', code: 'not_allowlisted' }), folded, pull(3)]);
      const rows = await s.listPulls({});
      expect(rows.map((r) => [r.count ?? null, r.lastTs ?? null])).toEqual([
        [null, null],
        [41, 9000],
        [null, null],
      ]);
      expect(rows[2]).not.toHaveProperty('count');
      expect((await verifyChain(s)).problem).toBeUndefined();
      expect(await s.dailyCounts(0)).toEqual([
        { day: 0, ecosystem: 'pypi', decision: 'allow', count: 1 },
        { day: 0, ecosystem: 'pypi', decision: 'deny', count: 42 },
      ]);
      // The count is chained content: a row rewritten with another count no longer matches its hash.
      const { rowHash } = await import('../../src/core/chain.js');
      const stored = rows[1];
      expect(rowHash(stored.prevHash!, { ...stored, count: 1 })).not.toBe(stored.hash);
      expect(rowHash(stored.prevHash!, stored)).toBe(stored.hash);
    });

    it('measures its size as rows are written and pruned, and prunes the oldest rows to a size with an anchor, so the rest still verifies', async () => {
      const s = await fresh();
      expect(await s.pullSize()).toEqual({ rows: 0, bytes: 0 });
      await appendPulls(
        s,
        Array.from({ length: 50 }, (_, i) => pull(i, { reason: 'x'.repeat(100) })),
      );
      const full = await s.pullSize();
      expect(full.rows).toBe(50);
      expect(full.bytes).toBeGreaterThan(50 * 400);
      expect(await prunePullsToSize(s, full.bytes, 'test')).toBe(0); // within the budget: nothing removed, no anchor
      const removed = await prunePullsToSize(s, Math.floor(full.bytes / 2), 'test');
      expect(removed).toBeGreaterThanOrEqual(25);
      expect(removed).toBeLessThan(30);
      const left = await s.listPulls({ limit: 100 });
      expect(left[0].ecosystem).toBe('audit');
      expect(left[0].reason).toMatch(/size budget/);
      // The oldest went: what is left is the newest rows, in order.
      expect(left.slice(1).map((r) => r.ts)).toEqual(Array.from({ length: 50 - removed }, (_, i) => 1049 - i));
      const after = await s.pullSize();
      expect(after.rows).toBe(50 - removed + 1);
      expect(after.bytes).toBeLessThanOrEqual(Math.floor(full.bytes / 2) + 1000); // the anchor row on top
      expect((await verifyChain(s)).problem).toBeUndefined();
    });
  });
}

export function ociStoreContract(name: string, fresh: () => Promise<OciStore>): void {
  describe(`OciStore contract: ${name}`, () => {
    it('keeps manifests and their links per repository, and finds parents', async () => {
      const s = await fresh();
      const idx = `sha256:${hex('1')}`;
      const man = `sha256:${hex('2')}`;
      const layer = `sha256:${hex('3')}`;
      expect(await s.getOciManifest(idx)).toBeNull();
      await s.putOciManifest('r.io/a', { digest: idx, mediaType: 'application/vnd.oci.image.index.v1+json', size: 100 }, [
        { digest: man, size: 50, kind: 'manifest' },
      ]);
      await s.putOciManifest('r.io/a', { digest: man, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 50 }, [
        { digest: layer, size: 7, kind: 'blob' },
      ]);
      expect(await s.getOciManifest(man)).toEqual({ digest: man, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 50 });
      expect(await s.getOciParents('r.io/a', man)).toEqual([{ parent: idx, size: 50, kind: 'manifest' }]);
      expect(await s.getOciParents('r.io/a', layer)).toEqual([{ parent: man, size: 7, kind: 'blob' }]);
      // Links are per repository: the same digest in another repository has no parents.
      expect(await s.getOciParents('r.io/b', layer)).toEqual([]);
      await s.addOciLinks('r.io/a', man, [{ digest: `sha256:${hex('4')}`, size: 9, kind: 'manifest' }]);
      expect(await s.getOciParents('r.io/a', `sha256:${hex('4')}`)).toEqual([{ parent: man, size: 9, kind: 'manifest' }]);
      // Storing a link twice keeps one.
      await s.addOciLinks('r.io/a', man, [{ digest: `sha256:${hex('4')}`, size: 9, kind: 'manifest' }]);
      expect(await s.getOciParents('r.io/a', `sha256:${hex('4')}`)).toHaveLength(1);
      // A signature object listed by the upstream (referrers, signature tag) keeps its kind: approval through it is narrower.
      await s.addOciLinks('r.io/a', idx, [{ digest: `sha256:${hex('5')}`, size: 11, kind: 'referrer' }]);
      expect(await s.getOciParents('r.io/a', `sha256:${hex('5')}`)).toEqual([{ parent: idx, size: 11, kind: 'referrer' }]);
    });

    it('records when a manifest digest was first seen: the first writer wins, also when racing', async () => {
      const s = await fresh();
      const d = `sha256:${hex('5')}`;
      expect(await s.getOciFirstSeen(d)).toBeNull();
      const got = await Promise.all([3000, 1000, 2000].map((at) => s.recordOciFirstSeen(d, at)));
      expect(new Set(got).size).toBe(1);
      expect([1000, 2000, 3000]).toContain(got[0]);
      expect(await s.recordOciFirstSeen(d, 500)).toBe(got[0]);
      expect(await s.getOciFirstSeen(d)).toBe(got[0]);
      expect(await s.getOciFirstSeen(`sha256:${hex('6')}`)).toBeNull();
      // Times are epoch milliseconds, kept whole.
      expect(await s.recordOciFirstSeen(`sha256:${hex('6')}`, 1_796_256_000_123)).toBe(1_796_256_000_123);
    });
  });
}

export function scanStoreContract(name: string, fresh: () => Promise<ScanStore>): void {
  describe(`ScanStore contract: ${name}`, () => {
    it('keeps one report per blob with its scanner version, listed by digest', async () => {
      const s = await fresh();
      expect(await s.getScan(hex('b'))).toBeNull();
      await s.putScan(hex('b'), 'airlock-scan/1', '{"a":1}');
      await s.putScan(hex('a'), 'airlock-scan/2', '{"b":1}');
      await s.putScan(hex('b'), 'airlock-scan/2', '{"a":2}');
      expect(await s.getScan(hex('b'))).toEqual({ scanner: 'airlock-scan/2', report: '{"a":2}' });
      expect(await s.listScans()).toEqual([
        { sha256: hex('a'), scanner: 'airlock-scan/2' },
        { sha256: hex('b'), scanner: 'airlock-scan/2' },
      ]);
    });
  });
}

export function tokenStoreContract(name: string, fresh: () => Promise<TokenStore>): void {
  describe(`TokenStore contract: ${name}`, () => {
    it('creates, finds by hash, lists and revokes; names and hashes are unique', async () => {
      const s = await fresh();
      await s.createToken({ name: 'ci', hash: hex('c'), admin: false });
      await s.createToken({ name: 'sec', hash: hex('d'), admin: true });
      await expect(s.createToken({ name: 'ci', hash: hex('e'), admin: false })).rejects.toThrow();
      await expect(s.createToken({ name: 'other', hash: hex('c'), admin: false })).rejects.toThrow();
      expect(await s.findToken(hex('d'))).toMatchObject({ name: 'sec', admin: true, revokedAt: null });
      expect(await s.findToken(hex('0'))).toBeNull();
      expect((await s.listTokens()).map((t) => t.name).sort()).toEqual(['ci', 'sec']);
      expect(await s.revokeToken('ci')).toBe(true);
      expect(await s.revokeToken('ci')).toBe(false);
      expect(await s.revokeToken('nobody')).toBe(false);
      expect((await s.findToken(hex('c')))!.revokedAt).toBeGreaterThan(0);
    });
    it("reissues a revoked token's name; the revoked secret stays refused and its row stays listed", async () => {
      const s = await fresh();
      await s.createToken({ name: 'ci', hash: hex('c'), admin: false });
      expect(await s.revokeToken('ci')).toBe(true);
      await s.createToken({ name: 'ci', hash: hex('e'), admin: true });
      expect(await s.findToken(hex('c'))).toMatchObject({ name: 'ci', admin: false });
      expect((await s.findToken(hex('c')))!.revokedAt).toBeGreaterThan(0);
      expect(await s.findToken(hex('e'))).toMatchObject({ name: 'ci', admin: true, revokedAt: null });
      // A live name is still unique, and a revoked secret cannot come back under another name.
      await expect(s.createToken({ name: 'ci', hash: hex('f'), admin: false })).rejects.toThrow();
      await expect(s.createToken({ name: 'other', hash: hex('c'), admin: false })).rejects.toThrow();
      // History: both rows, oldest first; revoking the name ends only the live one.
      expect((await s.listTokens()).map((t) => [t.name, t.hash, t.revokedAt === null])).toEqual([
        ['ci', hex('c'), false],
        ['ci', hex('e'), true],
      ]);
      expect(await s.revokeToken('ci')).toBe(true);
      expect(await s.revokeToken('ci')).toBe(false);
      expect((await s.listTokens()).every((t) => t.revokedAt !== null)).toBe(true);
      await s.createToken({ name: 'ci', hash: hex('a'), admin: false });
      expect((await s.listTokens()).map((t) => t.hash)).toEqual([hex('c'), hex('e'), hex('a')]);
    });
  });
}

export function advisoryStoreContract(name: string, fresh: () => Promise<AdvisoryStore>): void {
  describe(`AdvisoryStore contract: ${name}`, () => {
    it('upserts by id and counts only what is new or changed', async () => {
      const s = await fresh();
      expect(
        await s.putAdvisories([
          { id: 'A', modified: '1', record: '{"id":"A"}' },
          { id: 'B', modified: '1', record: '{"id":"B"}' },
        ]),
      ).toBe(2);
      expect(await s.putAdvisories([{ id: 'A', modified: '1', record: '{"id":"A"}' }])).toBe(0);
      expect(await s.putAdvisories([{ id: 'A', modified: '2', record: '{"id":"A","v":2}' }])).toBe(1);
      expect((await s.listAdvisories()).sort()).toEqual(['{"id":"A","v":2}', '{"id":"B"}']);
    });
    it('reads every record once, a page at a time, whatever the ids (the server reloads them so)', async () => {
      const s = await fresh();
      // Ids as the feeds name them, with case, dashes, dots and underscores that collations order differently.
      const ids = Array.from({ length: 23 }, (_, i) => [`PYSEC-2026-${i}`, `GHSA-${i}x-a_b`, `MAL-2026-${i}`, `debian-${i}.z`, `Cve_${i}`][i % 5]);
      ids[0] = ''; // an id an import by hand may store: the first page starts before it
      await s.putAdvisories(ids.map((id) => ({ id, modified: '1', record: JSON.stringify({ id }) })));
      const seen: string[] = [];
      for await (const page of advisoryPages<{ id: string }>(s, 5)) {
        expect(page.length).toBeLessThanOrEqual(5);
        seen.push(...page.map((r) => r.id));
      }
      expect(seen.sort()).toEqual([...ids].sort());
      const pages: string[][] = [];
      for await (const page of advisoryPages<{ id: string }>(s, 23)) pages.push(page.map((r) => r.id));
      expect(pages.map((p) => p.length)).toEqual([23]);
    });
    it('reads the records of the ids asked for, as stored now, and nothing for an id not stored', async () => {
      const s = await fresh();
      await s.putAdvisories(['', 'A', 'b', 'C.1', 'd_2'].map((id) => ({ id, modified: '1', record: JSON.stringify({ id }) })));
      await s.putAdvisories([{ id: 'b', modified: '2', record: '{"id":"b","v":2}' }]);
      const got = await s.advisoryRecords(['b', 'nope', '', 'd_2', 'b']);
      const byId = new Map(got.map((r) => [r.id, r.record]));
      expect([...byId.keys()].sort()).toEqual(['', 'b', 'd_2']);
      expect(byId.get('b')).toBe('{"id":"b","v":2}');
      expect(byId.get('')).toBe('{"id":""}');
      expect(await s.advisoryRecords([])).toEqual([]);
    });
    it('cuts a page once its records come to maxChars (at least one row), and the reader goes on past the cut', async () => {
      const s = await fresh();
      // Ten records of ~1,000 characters, one of ~5,000.
      const body = (id: string, n: number) => JSON.stringify({ id, details: 'x'.repeat(n) });
      const ids = Array.from({ length: 10 }, (_, i) => `R-${i}`);
      await s.putAdvisories([...ids.map((id) => ({ id, modified: '1', record: body(id, 1000) })), { id: 'Q-big', modified: '1', record: body('Q-big', 5000) }]);
      const first = await s.advisoryPage(null, 250, 2500);
      expect(first.map((r) => r.id)).toEqual(['Q-big']); // alone past the cap: still one row
      const next = await s.advisoryPage('Q-big', 250, 2500);
      expect(next.map((r) => r.id)).toEqual(['R-0', 'R-1', 'R-2']); // 2 x ~1,020 before the third: under 2,500
      const pages: string[][] = [];
      for await (const page of advisoryPages<{ id: string }>(s, 250, 2500)) pages.push(page.map((r) => r.id));
      expect(pages.map((p) => p.length)).toEqual([1, 3, 3, 3, 1]);
      expect(pages.flat().sort()).toEqual(['Q-big', ...ids].sort());
    });
    it('bumps the generation once per import that changed something, and says what changed since a generation and from which source', async () => {
      const s = await fresh();
      expect(await s.advisoryGeneration()).toBe(0);
      await s.putAdvisories([{ id: 'A', modified: '1', record: '{"id":"A"}' }]);
      expect(await s.advisoryGeneration()).toBe(1);
      await s.putAdvisories([{ id: 'A', modified: '1', record: '{"id":"A"}' }]);
      expect(await s.advisoryGeneration()).toBe(1);
      const sync = {
        source: 'osv-pypi',
        startedAt: 10,
        finishedAt: 20,
        outcome: 'changed' as const,
        mode: 'full' as const,
        changed: 0,
        highWater: 'T2',
        error: null,
      };
      // The transaction decides changed or unchanged, whatever the caller guessed.
      expect(await s.recordAdvisorySync([{ id: 'A', modified: '1', record: '{"id":"A"}' }], { ...sync, startedAt: 5, finishedAt: 6 })).toEqual([]);
      const ids = await s.recordAdvisorySync(
        [
          { id: 'A', modified: '1', record: '{"id":"A"}' },
          { id: 'B', modified: '2', record: '{"id":"B"}' },
          { id: 'C', modified: '2', record: '{"id":"C"}' },
        ],
        sync,
      );
      expect(ids.sort()).toEqual(['B', 'C']);
      expect(await s.advisoryGeneration()).toBe(2);
      expect(await s.advisoryChangesSince(1)).toEqual({ ids: ['B', 'C'], sources: ['osv-pypi'], generation: 2 });
      expect(await s.advisoryChangesSince(0)).toEqual({ ids: ['A', 'B', 'C'], sources: ['import', 'osv-pypi'], generation: 2 });
      expect(await s.advisoryChangesSince(2)).toEqual({ ids: [], sources: [], generation: 2 });
      // What was told to the hooks: it only moves forward.
      expect(await s.advisoriesTold()).toBe(0);
      await s.markAdvisoriesTold(2);
      await s.markAdvisoriesTold(1);
      expect(await s.advisoriesTold()).toBe(2);
      // A failed sync imports nothing and bumps nothing, but is recorded with its error.
      const failed = { ...sync, startedAt: 30, finishedAt: 31, outcome: 'failed' as const, mode: 'incremental' as const, highWater: null, error: 'zip: bad' };
      expect(await s.recordAdvisorySync([], failed)).toEqual([]);
      await s.recordAdvisorySync([], { ...failed, source: 'osv-debian' });
      expect(await s.advisoryGeneration()).toBe(2);
      const all = await s.advisorySyncs({ limit: 10 });
      expect(all.map((x) => [x.source, x.outcome, x.changed, x.generation])).toEqual([
        ['osv-debian', 'failed', 0, 0],
        ['osv-pypi', 'failed', 0, 0],
        ['osv-pypi', 'changed', 2, 2],
        ['osv-pypi', 'unchanged', 0, 0],
      ]);
      const mine = await s.advisorySyncs({ source: 'osv-pypi', limit: 1 });
      expect(mine).toEqual([{ id: mine[0].id, ...failed, changed: 0, generation: 0 }]);
      expect((await s.advisorySyncs({ source: 'osv-pypi', limit: 5 }))[1]).toMatchObject({
        startedAt: 10,
        finishedAt: 20,
        mode: 'full',
        highWater: 'T2',
        error: null,
      });
      // `good`: the syncs that did not fail, past any number that did (the freshness and the mark).
      for (let i = 0; i < 120; i++) await s.recordAdvisorySync([], { ...failed, startedAt: 40 + i, finishedAt: 41 + i });
      expect((await s.advisorySyncs({ source: 'osv-pypi', limit: 100 })).every((x) => x.outcome === 'failed')).toBe(true);
      const good = await s.advisorySyncs({ source: 'osv-pypi', limit: 5, good: true });
      expect(good.map((x) => [x.outcome, x.highWater])).toEqual([
        ['changed', 'T2'],
        ['unchanged', good[1].highWater],
      ]);
      expect((await s.advisorySyncs({ limit: 1, good: true }))[0]).toMatchObject({ source: 'osv-pypi', outcome: 'changed' });
    });
    it("tells a sync's batches as its source's, and records the sync with the batches' count beside its last transaction's", async () => {
      const s = await fresh();
      await s.putAdvisories([{ id: 'H', modified: '1', record: '{"id":"H"}' }]);
      expect(await s.putAdvisories([{ id: 'A', modified: '1', record: '{"id":"A"}' }], 'osv-pypi')).toBe(1);
      expect(await s.putAdvisories([{ id: 'B', modified: '1', record: '{"id":"B"}' }], 'osv-pypi')).toBe(1);
      // A batch that changed nothing bumps nothing and names no source.
      expect(await s.putAdvisories([{ id: 'B', modified: '1', record: '{"id":"B"}' }], 'osv-pypi')).toBe(0);
      expect(await s.advisoryGeneration()).toBe(3);
      expect(await s.advisoryChangesSince(1)).toEqual({ ids: ['A', 'B'], sources: ['osv-pypi'], generation: 3 });
      expect(await s.advisoryChangesSince(0)).toEqual({ ids: ['A', 'B', 'H'], sources: ['import', 'osv-pypi'], generation: 3 });
      // The last transaction changed nothing: the sync still changed the 2 of its batches.
      const sync = {
        source: 'osv-pypi',
        startedAt: 1,
        finishedAt: 2,
        outcome: 'changed' as const,
        mode: 'full' as const,
        changed: 2,
        highWater: 'T',
        error: null,
      };
      expect(await s.recordAdvisorySync([{ id: 'A', modified: '1', record: '{"id":"A"}' }], sync)).toEqual([]);
      expect((await s.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ outcome: 'changed', changed: 2, generation: 0, highWater: 'T' });
      // ...and when it did, both counted; its generation is the source's too.
      expect(await s.recordAdvisorySync([{ id: 'C', modified: '1', record: '{"id":"C"}' }], { ...sync, startedAt: 3, finishedAt: 4, changed: 1 })).toEqual([
        'C',
      ]);
      expect((await s.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ outcome: 'changed', changed: 2, generation: 4 });
      await s.putAdvisories([{ id: 'D', modified: '1', record: '{"id":"D"}' }], 'osv-debian');
      expect(await s.advisoryChangesSince(3)).toEqual({ ids: ['C', 'D'], sources: ['osv-debian', 'osv-pypi'], generation: 5 });
      // A failed sync counts what its batches wrote before it failed, and stays failed.
      await s.recordAdvisorySync([], { ...sync, startedAt: 5, finishedAt: 6, outcome: 'failed', changed: 7, error: 'disk full' });
      expect((await s.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ outcome: 'failed', changed: 7, generation: 0 });
    });
    it('imports a sync whole: a record that cannot be written leaves neither records nor the generation changed', async () => {
      const s = await fresh();
      await s.putAdvisories([{ id: 'A', modified: '1', record: '{"id":"A"}' }]);
      const sync = { source: 'x', startedAt: 1, finishedAt: 2, outcome: 'changed' as const, mode: 'full' as const, changed: 0, highWater: null, error: null };
      await expect(
        s.recordAdvisorySync(
          [
            { id: 'B', modified: '1', record: '{"id":"B"}' },
            { id: 'C', modified: '1', record: null as unknown as string },
          ],
          sync,
        ),
      ).rejects.toThrow();
      expect(await s.listAdvisories()).toEqual(['{"id":"A"}']);
      expect(await s.advisoryGeneration()).toBe(1);
      expect(await s.advisorySyncs({ limit: 5 })).toEqual([]);
    });
    it("keeps a source's newest 1,000 syncs, its newest good one (with a mark) and those naming a generation in use; prunes the rest", async () => {
      const s = await fresh();
      const base = { source: 'osv-pypi', startedAt: 1, finishedAt: 2, mode: 'incremental' as const, changed: 0, error: null };
      // Old good syncs: one with a mark, one that changed B (written over by hand since), one that
      // changed A (its generation in use, and the newest mark); then the newest good sync, with no mark.
      await s.recordAdvisorySync([], { ...base, outcome: 'unchanged', highWater: 'T1' });
      await s.recordAdvisorySync([{ id: 'B', modified: '1', record: '{"id":"B"}' }], { ...base, outcome: 'changed', highWater: 'T2' });
      await s.putAdvisories([{ id: 'B', modified: '2', record: '{"id":"B","v":2}' }]);
      await s.recordAdvisorySync([{ id: 'A', modified: '1', record: '{"id":"A"}' }], { ...base, outcome: 'changed', highWater: 'T3' });
      await s.recordAdvisorySync([], { ...base, outcome: 'unchanged', highWater: null });
      await s.recordAdvisorySync([], { ...base, source: 'osv-debian', outcome: 'failed', highWater: null, error: 'down' });
      for (let i = 0; i < 1010; i++) await s.recordAdvisorySync([], { ...base, outcome: 'failed', highWater: 'T3', error: 'down' });
      const all = await s.advisorySyncs({ source: 'osv-pypi', limit: 2000 });
      expect(all.filter((x) => x.outcome === 'failed')).toHaveLength(1000);
      expect(all.filter((x) => x.outcome !== 'failed').map((x) => [x.outcome, x.highWater])).toEqual([
        ['unchanged', null],
        ['changed', 'T3'],
      ]);
      const good = await s.advisorySyncs({ source: 'osv-pypi', limit: 100, good: true });
      expect(good.find((x) => x.highWater)?.highWater).toBe('T3');
      expect(await s.advisorySyncs({ source: 'osv-debian', limit: 5 })).toHaveLength(1);
      expect((await s.advisoryChangesSince(0)).sources).toEqual(['import', 'osv-pypi']);
    }, 60_000);
  });
}

export function trustRootStoreContract(name: string, fresh: () => Promise<TrustRootStore>): void {
  describe(`TrustRootStore contract: ${name}`, () => {
    it('answers null before any import, then the most recently imported root (a re-import makes an older root the newest again)', async () => {
      const s = await fresh();
      expect(await s.latestTrustRoot()).toBeNull();
      const before = Date.now();
      await s.putTrustRoot({ sha256: 'a'.repeat(64), root: '{"v":"a"}' });
      const a = await s.latestTrustRoot();
      expect(a).toMatchObject({ sha256: 'a'.repeat(64), root: '{"v":"a"}' });
      expect(a!.importedAt).toBeGreaterThanOrEqual(before);
      expect(a!.importedAt).toBeLessThanOrEqual(Date.now());
      await s.putTrustRoot({ sha256: 'b'.repeat(64), root: '{"v":"b"}' });
      expect((await s.latestTrustRoot())!.sha256).toBe('b'.repeat(64));
      await s.putTrustRoot({ sha256: 'a'.repeat(64), root: '{"v":"a"}' });
      expect((await s.latestTrustRoot())!.root).toBe('{"v":"a"}');
    });
  });
}

export function signerStoreContract(name: string, fresh: () => Promise<SignerStore>): void {
  describe(`SignerStore contract: ${name}`, () => {
    it('records the first signer of a project (the first wins, also when racing), per ecosystem, and replaces or forgets it on acceptance', async () => {
      const s = await fresh();
      expect(await s.getSigner('pypi', 'x')).toBeNull();
      const got = await Promise.all(['a', 'b', 'c'].map((id) => s.recordSigner('pypi', 'x', { identity: id, version: '1' })));
      expect(new Set(got.map((g) => g.identity)).size).toBe(1);
      expect(await s.getSigner('pypi', 'x')).toMatchObject({ identity: got[0].identity, version: '1' });
      expect(await s.recordSigner('pypi', 'x', { identity: 'z', version: '2' })).toMatchObject({ identity: got[0].identity, version: '1' });
      expect(await s.getSigner('oci', 'x')).toBeNull();
      await s.recordSigner('oci', 'x', { identity: 'o', version: null });
      expect(await s.getSigner('oci', 'x')).toMatchObject({ identity: 'o', version: null });
      expect(await s.setSigner('pypi', 'x', { identity: 'new', version: '3' })).toBe(true);
      expect(await s.getSigner('pypi', 'x')).toMatchObject({ identity: 'new', version: '3' });
      expect(await s.setSigner('pypi', 'x', null)).toBe(true);
      expect(await s.getSigner('pypi', 'x')).toBeNull();
      expect(await s.setSigner('pypi', 'x', null)).toBe(false);
      expect((await s.getSigner('oci', 'x'))!.recordedAt).toBeGreaterThan(0);
    });
    it('answers the signer recorded even when a forget (`airlock trust accept`) races the recording', async () => {
      const s = await fresh();
      for (let i = 0; i < 200; i++) {
        const [rec] = await Promise.all([s.recordSigner('pypi', 'race', { identity: `id${i}`, version: null }), s.setSigner('pypi', 'race', null)]);
        // This one's, or the one before it when the forget came after: a record, never none.
        expect([`id${i}`, `id${i - 1}`]).toContain(rec?.identity);
      }
    });
  });
}

export function aliasStoreContract(name: string, fresh: () => Promise<AliasStore>): void {
  describe(`AliasStore contract: ${name}`, () => {
    it('maps (kind, key) to a sha256, per kind, replacing', async () => {
      const s = await fresh();
      expect(await s.getAlias('git-blob', 'abc')).toBeNull();
      await s.putAlias('git-blob', 'abc', hex('1'));
      await s.putAlias('other', 'abc', hex('2'));
      expect(await s.getAlias('git-blob', 'abc')).toBe(hex('1'));
      expect(await s.getAlias('other', 'abc')).toBe(hex('2'));
      await s.putAlias('git-blob', 'abc', hex('3'));
      expect(await s.getAlias('git-blob', 'abc')).toBe(hex('3'));
    });
  });
}

export function leaseStoreContract(name: string, fresh: () => Promise<LeaseStore>): void {
  describe(`LeaseStore contract: ${name}`, () => {
    it("gives a blob's lease to one owner at a time, again to the same owner, and to another once released", async () => {
      const s = await fresh();
      expect(await s.takeLease(hex('a'), 'replica-1', 10_000)).toBe(true);
      expect(await s.takeLease(hex('a'), 'replica-2', 10_000)).toBe(false);
      expect(await s.takeLease(hex('a'), 'replica-1', 10_000)).toBe(true);
      expect(await s.takeLease(hex('b'), 'replica-2', 10_000)).toBe(true);
      await s.releaseLease(hex('a'), 'replica-2'); // not its lease: nothing happens
      expect(await s.takeLease(hex('a'), 'replica-2', 10_000)).toBe(false);
      await s.releaseLease(hex('a'), 'replica-1');
      expect(await s.takeLease(hex('a'), 'replica-2', 10_000)).toBe(true);
    });

    it('lets a lease whose holder stopped renewing it be taken over', async () => {
      const s = await fresh();
      expect(await s.takeLease(hex('c'), 'dead', 10_000)).toBe(true);
      await new Promise((r) => setTimeout(r, 60));
      expect(await s.takeLease(hex('c'), 'alive', 10_000)).toBe(false);
      await s.renewLease(hex('c'), 'dead');
      expect(await s.takeLease(hex('c'), 'alive', 50)).toBe(false); // just renewed
      await new Promise((r) => setTimeout(r, 80));
      expect(await s.takeLease(hex('c'), 'alive', 50)).toBe(true); // stale: taken over
    });

    it('says who holds a lease and where it serves the fill; a takeover replaces both', async () => {
      const s = await fresh();
      expect(await s.leaseHolder(hex('f'))).toBeNull();
      expect(await s.takeLease(hex('f'), 'filler', 10_000, 'http://10.0.0.5:8080')).toBe(true);
      expect(await s.leaseHolder(hex('f'))).toEqual({ owner: 'filler', addr: 'http://10.0.0.5:8080' });
      expect(await s.takeLease(hex('g'), 'command', 10_000)).toBe(true);
      expect(await s.leaseHolder(hex('g'))).toEqual({ owner: 'command', addr: null });
      await new Promise((r) => setTimeout(r, 60));
      expect(await s.takeLease(hex('f'), 'other', 50, 'http://10.0.0.6:8080')).toBe(true);
      expect(await s.leaseHolder(hex('f'))).toEqual({ owner: 'other', addr: 'http://10.0.0.6:8080' });
      await s.releaseLease(hex('f'), 'other');
      expect(await s.leaseHolder(hex('f'))).toBeNull();
    });

    it('wakes a waiter when the lease is released, and gives up after its timeout', async () => {
      const s = await fresh();
      await s.awaitRelease(hex('d'), 1000); // nobody holds it: at once
      await s.takeLease(hex('d'), 'filler', 10_000);
      const t0 = Date.now();
      setTimeout(() => void s.releaseLease(hex('d'), 'filler'), 150);
      await s.awaitRelease(hex('d'), 5000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      expect(Date.now() - t0).toBeLessThan(1500);
      await s.takeLease(hex('e'), 'stuck', 10_000);
      const t1 = Date.now();
      await s.awaitRelease(hex('e'), 200);
      expect(Date.now() - t1).toBeGreaterThanOrEqual(190);
    });

    it('stops waiting soon after its signal aborts, the lease still held', async () => {
      const s = await fresh();
      await s.takeLease(hex('h'), 'filler', 10_000);
      const stop = new AbortController();
      const t0 = Date.now();
      setTimeout(() => stop.abort(), 100);
      await s.awaitRelease(hex('h'), 5000, stop.signal);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect((await s.leaseHolder(hex('h')))?.owner).toBe('filler');
      const t1 = Date.now();
      await s.awaitRelease(hex('h'), 5000, stop.signal); // already aborted: at once
      expect(Date.now() - t1).toBeLessThan(200);
    });
  });
}
