import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/image/inventory.js';
import { readLayer } from '../../src/image/layer.js';
import { END, header, member, padded, pax } from '../helpers/tar-bytes.js';

/**
 * Layers built byte by byte where tar readers disagree on where an entry starts, checked against
 * Go's archive/tar (what containerd and Docker extract layers with; test/helpers/go-tar-judge,
 * built here when Go is on the machine): whenever Go extracts the dpkg database, the image gate's
 * reading must see its packages too, or refuse the layer as unreadable. Never a clean inventory.
 */
const GO = spawnSync('go', ['version']).status === 0;
const JUDGE_DIR = new URL('../helpers/go-tar-judge/', import.meta.url).pathname;

function goJudge(): (tar: Buffer) => { name?: string; head?: string; error?: string }[] {
  const out = join(tmpdir(), 'airlock-go-tar-judge');
  mkdirSync(out, { recursive: true });
  const bin = join(out, 'judge');
  execFileSync('go', ['build', '-o', bin, '.'], { cwd: JUDGE_DIR, env: { ...process.env, GOCACHE: join(out, 'cache'), GOFLAGS: '-mod=mod' } });
  return (tar) => JSON.parse(execFileSync(bin, { input: tar }).toString());
}

const status = Buffer.from('Package: openssl\nStatus: install ok installed\nVersion: 1.1.1n-0+deb11u1\nArchitecture: amd64\n\n');
const statusEntry = member({ name: 'var/lib/dpkg/status' }, status);

const layers: [string, Buffer][] = [
  ['a plain dpkg database (the control)', Buffer.concat([statusEntry, END])],
  // Go reads no data for links, devices and fifos, whatever their size says: the next header follows.
  ['a symlink whose size covers the next entry', Buffer.concat([header({ name: 'x', type: '2', linkname: 'y', size: statusEntry.length }), statusEntry, END])],
  [
    'a hard link whose size covers the next entry',
    Buffer.concat([header({ name: 'x', type: '1', linkname: 'y', size: statusEntry.length }), statusEntry, END]),
  ],
  ['a fifo whose size covers the next entry', Buffer.concat([header({ name: 'x', type: '6', size: statusEntry.length }), statusEntry, END])],
  // Go ignores global records; a reader that merges them into the next extended header renames the entry.
  ['a global PAX path', Buffer.concat([pax([['path', 'other/file']], 'g'), pax([['mtime', '1']]), statusEntry, END])],
  // A global header between an entry's records and the entry: Go drops the records, a reader that keeps them renames it.
  ['a global header after an extended one', Buffer.concat([pax([['path', 'other/file']]), pax([['comment', 'x']], 'g'), statusEntry, END])],
  // A GNU sparse 1.0 entry: Go names it by GNU.sparse.name and hands out the data after the map.
  [
    'a GNU sparse entry named by its PAX records',
    Buffer.concat([
      pax([
        ['GNU.sparse.major', '1'],
        ['GNU.sparse.minor', '0'],
        ['GNU.sparse.name', 'var/lib/dpkg/status'],
        ['GNU.sparse.realsize', String(status.length)],
      ]),
      member({ name: 'GNUSparseFile.0/status' }, Buffer.concat([padded(Buffer.from(`1\n0\n${status.length}\n`)), status])),
      END,
    ]),
  ],
];

describe("what Go's archive/tar extracts of a layer, the image gate reads", () => {
  const judge = GO ? goJudge() : null;
  for (const [what, tar] of layers) {
    it(`${what}: its packages are read, or the layer is refused`, async () => {
      if (judge) expect(judge(tar).some((e) => e.name === 'var/lib/dpkg/status' && e.head?.startsWith('Package: openssl'))).toBe(true);
      const facts = await readLayer(Readable.from([tar]), 'sha256:l').catch((e: Error) => e);
      if (facts instanceof Error) expect(facts.message).toMatch(/sha256:l: the layer could not be read/);
      else expect(applyLayers([facts]).packages.map((p) => `${p.name} ${p.version}`)).toEqual(['openssl 1.1.1n-0+deb11u1']);
    });
  }
});
