import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import lzma from 'lzma-native';
import { afterEach, describe, expect, it } from 'vitest';
import { compress as zstd } from 'zstd-napi';
import { HfPolicy } from '../../src/policy/hf.js';
import { ARCHIVE_LIMITS } from '../../src/scan/archive.js';
import { scan, type ScanReport } from '../../src/scan/index.js';
import { contentDecision } from '../../src/hf/inspection.js';
import { bufferSource, type ByteSource } from '../../src/scan/source.js';
import { R, hex, makeTar, makeZip } from '../helpers/model-files.js';

const policy = new HfPolicy({ allow: [{ repo: 'org/d', commits: ['d'.repeat(40)] }] }, ['hf']);
const corpus = (rel: string) => readFileSync(new URL(`../corpus/real/${rel}`, import.meta.url));

async function judge(bytes: Buffer, path = 'data.tar'): Promise<{ report: ScanReport; allow: boolean; reason: string }> {
  const report = await scan(bufferSource(bytes), path);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const d = contentDecision(policy, 'dataset', 'org/d', path, sha, report);
  return { report, allow: d.allow, reason: d.allow ? '' : d.reason };
}

/** xz by liblzma's own encoder. */
async function xz(b: Buffer): Promise<Buffer> {
  const enc = lzma.createStream('easyEncoder', {});
  enc.end(b);
  const parts: Buffer[] = [];
  for await (const c of enc) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('archives are opened and every member judged', () => {
  const saved = { ...ARCHIVE_LIMITS };
  afterEach(() => Object.assign(ARCHIVE_LIMITS, saved));

  it('a malicious pickle in a tar is refused with the member named, under any compression', async () => {
    const t = await makeTar([
      { name: 'a/ok.txt', data: Buffer.from('hello\n') },
      { name: 'a/sample.pyd', data: hex(R.R2) },
    ]);
    for (const [label, bytes] of [
      ['tar', t],
      ['tar.gz', gzipSync(t)],
      ['tar.zst', await zstd(t)],
    ] as const) {
      const r = await judge(bytes as Buffer, `data.${label}`);
      expect(r.allow).toBe(false);
      expect(r.reason).toMatch(/posix\.system \(in member a\/sample\.pyd\)/);
      expect(r.report.format).toBe('archive');
    }
  });
  it('a pickle compressed on its own is a pickle (a .pt.gz)', async () => {
    const r = await judge(gzipSync(hex(R.R2)), 'model.pt.gz');
    expect(r.reason).toMatch(/posix\.system \(in member model\.pt\)/);
  });
  it('benign members pass: the real torch checkpoint inside weights.tar, text and images', async () => {
    const r = await judge(corpus('datasets/weights.tar'));
    expect(r.allow).toBe(true);
    expect(r.report.globals).toContain('torch._utils._rebuild_tensor_v2');
  });
  it('refuses members that escape the archive or are not files', async () => {
    expect((await judge(await makeTar([{ name: '../evil.sh', data: Buffer.from('x') }]))).reason).toMatch(/escapes the archive/);
    expect((await judge(await makeTar([{ name: 'link', type: 'symlink', linkname: '/etc/passwd' }]))).reason).toMatch(
      /links to "\/etc\/passwd", outside the archive/,
    );
    expect((await judge(await makeTar([{ name: 'a/link', type: 'symlink', linkname: '../../x' }]))).reason).toMatch(/outside the archive/);
    expect(
      (
        await judge(
          await makeTar([
            { name: 'a/link', type: 'symlink', linkname: '../b/c' },
            { name: 'b/c', data: Buffer.from('ok') },
          ]),
        )
      ).allow,
    ).toBe(true);
    expect((await judge(await makeTar([{ name: 'pipe', type: 'fifo' }]))).reason).toMatch(/is a fifo/);
  });
  it('stops decompression bombs at the expansion limit', async () => {
    ARCHIVE_LIMITS.floor = 1 << 20;
    ARCHIVE_LIMITS.ratio = 100;
    const bomb = gzipSync(Buffer.alloc(64 << 20));
    expect(bomb.length).toBeLessThan(100 << 10);
    expect((await judge(bomb, 'zeros.bin.gz')).reason).toMatch(/decompression bomb/);
  });
  it('limits nesting depth, and refuses 7z and rar without opening them', async () => {
    let inner = await makeTar([{ name: 'x.pkl', data: hex(R.R2) }]);
    for (let i = 0; i < 4; i++) inner = gzipSync(await makeTar([{ name: `level${i}.tar.gz`, data: inner }]));
    expect((await judge(inner, 'deep.tar.gz')).reason).toMatch(/nested more than 3 deep/);
    expect((await judge(Buffer.concat([hex('377abcaf271c'), Buffer.alloc(64)]), 'a.7z')).reason).toMatch(/7z archives are not inspected/);
  });
  it('a member too large to read whole is refused when it could carry code, served when it is data', async () => {
    const big = Buffer.alloc((64 << 20) + 10, 0x61);
    expect((await judge(await makeTar([{ name: 'big.txt', data: big }]))).allow).toBe(true);
    hex(R.R2).copy(big, 0);
    expect((await judge(await makeTar([{ name: 'big.bin', data: big }]))).reason).toMatch(/big\.bin.*too large to inspect/);
  });
  it('corrupt streams and truncated tars are refused', async () => {
    const gz = gzipSync(await makeTar([{ name: 'a.txt', data: Buffer.alloc(100_000, 1) }]));
    expect((await judge(gz.subarray(0, gz.length - 100), 'cut.tar.gz')).allow).toBe(false);
    const x = await xz(Buffer.from('plain text inside xz\n'));
    expect((await judge(x, 'notes.txt.xz')).allow).toBe(true);
    x[x.length - 20] ^= 0xff;
    expect((await judge(x, 'notes.txt.xz')).allow).toBe(false);
  });
  it('zip members that are archives are opened too', async () => {
    const z = makeZip([{ name: 'inner.tar', data: await makeTar([{ name: 'evil.pkl', data: hex(R.R2) }]) }]);
    expect((await judge(z, 'bundle.zip')).reason).toMatch(/in member inner\.tar\/evil\.pkl/);
  });
});

describe('archives too large to hold are walked as they stream', () => {
  it('a tar inside a tar, over the member limit, is opened whole: its last member is judged', async () => {
    const filler = Buffer.alloc((64 << 20) + 4096, 0x20);
    const benignInner = await makeTar([
      { name: 'big.txt', data: filler },
      { name: 'ok.json', data: Buffer.from('{}') },
    ]);
    expect((await judge(await makeTar([{ name: 'inner.tar', data: benignInner }]))).allow).toBe(true);
    const evilInner = await makeTar([
      { name: 'big.txt', data: filler },
      { name: 'late.pkl', data: hex(R.R2) },
    ]);
    const r = await judge(await makeTar([{ name: 'inner.tar', data: evilInner }]));
    expect(r.reason).toMatch(/posix\.system \(in member inner\.tar\/late\.pkl\)/);
  });
});

/** Counts what the scan reads of a plain tar (the walk reads it in place and skips what it need not read). */
function countingSource(bytes: Buffer): { src: ByteSource; read: () => number } {
  let n = 0;
  return {
    src: {
      size: bytes.length,
      read: async (pos, len) => {
        const b = bytes.subarray(pos, Math.min(bytes.length, pos + len));
        n += b.length;
        return b;
      },
    },
    read: () => n,
  };
}

/** A tar written by GNU tar from files on disk (long names as GNU or PAX records). */
function gnuTar(files: Record<string, Buffer>, format: 'gnu' | 'pax'): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-tar-'));
  try {
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(join(dir, 'src', dirname(name)), { recursive: true });
      writeFileSync(join(dir, 'src', name), data);
    }
    execFileSync('tar', [`--format=${format}`, '-cf', join(dir, 'out.tar'), '-C', join(dir, 'src'), ...Object.keys(files)]);
    return readFileSync(join(dir, 'out.tar'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('plain tars are walked in place', () => {
  it('a large data member is skipped, not read, and the members after it are still judged', async () => {
    const big = Buffer.alloc((64 << 20) + 10, 0x61);
    const t = await makeTar([
      { name: 'big.txt', data: big },
      { name: 'late.pkl', data: hex(R.R2) },
    ]);
    const c = countingSource(t);
    const report = await scan(c.src, 'data.tar');
    expect(report.globals).toContain('posix.system');
    expect(report.where?.['posix.system']).toBe('late.pkl');
    // The 64 MiB body was not read (its head was sniffed; the walk reads in 1 MiB windows).
    expect(c.read()).toBeLessThan(t.length - (56 << 20));
  });
  it('a link or a directory carrying data is refused (readers disagree on such data; Python reads a member there)', async () => {
    const hidden = await makeTar([{ name: 'evil.pkl', data: hex(R.R2) }]);
    for (const [flag, linkname, what] of [
      ['2', 'x', 'symlink'],
      ['5', '', 'directory'],
    ]) {
      const t = await makeTar([{ name: 'cover', data: hidden.subarray(0, hidden.length - 1024) }]);
      // Turn the member into a symlink or a directory that keeps its size.
      t.write(flag, 156, 'latin1');
      t.write(linkname, 157, 'latin1');
      t.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += t[i];
      t.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      // Python's tarfile (what datasets and webdataset read shards with) finds the member inside it.
      const python = execFileSync(
        'python3',
        ['-c', 'import sys, tarfile; print(" ".join(m.name for m in tarfile.open(fileobj=sys.stdin.buffer, mode="r|")))'],
        {
          input: t,
        },
      );
      expect(python.toString().trim()).toBe('cover evil.pkl');
      const r = await judge(t);
      expect(r.allow).toBe(false);
      expect(r.reason).toMatch(new RegExp(`member cover is a ${what} carrying \\d+ bytes of data`));
    }
  });
  it('long names as GNU tar writes them (GNU and PAX records) are read, and judged the same compressed or not', async () => {
    const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(60)}`;
    for (const format of ['gnu', 'pax'] as const) {
      const t = gnuTar({ [`${deep}/ok.txt`]: Buffer.from('hello\n'), [`${deep}/sample.pyd`]: hex(R.R2) }, format);
      for (const [label, bytes] of [
        ['tar', t],
        ['tar.gz', gzipSync(t)],
      ] as const) {
        const r = await judge(bytes as Buffer, `data.${label}`);
        expect(r.reason).toContain(`posix.system (in member ${deep}/sample.pyd)`);
      }
    }
  });
});
