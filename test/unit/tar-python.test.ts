import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { contentDecision } from '../../src/hf/inspection.js';
import { HfPolicy } from '../../src/policy/hf.js';
import { scan } from '../../src/scan/index.js';
import { sourceBlocks, walkTarBlocks } from '../../src/scan/tar.js';
import { bufferSource } from '../../src/scan/source.js';
import { R, hex } from '../helpers/model-files.js';
import { END, header, member, padded, pax, paxRecords } from '../helpers/tar-bytes.js';

/**
 * Tars built byte by byte where two readers could disagree on where a member starts or what its
 * bytes are, each checked against Python's tarfile (what `datasets` and WebDataset read shards
 * with, run here by test/helpers/tar_judge.py): whenever Python reads a pickle out of the tar,
 * the walk must refuse it, whether it finds the pickle or refuses the tar's form.
 */
const policy = new HfPolicy({ allow: [{ repo: 'org/d', commits: ['d'.repeat(40)] }] }, ['hf']);
const JUDGE = new URL('../helpers/tar_judge.py', import.meta.url).pathname;
const PICKLE = hex(R.R2);
/** A protocol 0 pickle that opens with NONE, POP: pickle.load runs it; no sniff of a header sees it. */
const PICKLE0 = Buffer.from("N0cos\nsystem\n(S'id'\ntR.", 'latin1');

interface PyMember {
  name?: string;
  type?: string;
  head?: string;
  error?: string;
}

function python(tar: Buffer): PyMember[] {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-tarpy-'));
  try {
    writeFileSync(join(dir, 't'), tar);
    return JSON.parse(execFileSync('python3', [JUDGE, join(dir, 't')], { maxBuffer: 1 << 20 }).toString()) as PyMember[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The members whose bytes, as Python's tarfile hands them out, open with the pickle. */
const pythonPickles = (tar: Buffer, pickle = PICKLE) =>
  python(tar)
    .filter((m) => m.head?.startsWith(pickle.subarray(0, 16).toString('hex')))
    .map((m) => m.name);

async function judge(bytes: Buffer, path = 'data.tar') {
  const report = await scan(bufferSource(bytes), path);
  const d = contentDecision(policy, 'dataset', 'org/d', path, createHash('sha256').update(bytes).digest('hex'), report);
  return { allow: d.allow, reason: d.allow ? '' : d.reason };
}

/** The pickle member with no magic: Python reads it as any header, and bytes starting with it sniff as data. */
const hidden = member({ name: 'sample.pyd', magic: 'none' }, PICKLE);

describe("what Python's tarfile reads, the walk judges", () => {
  it('reads every member Python writes and reads, the same bytes, whatever the read window (headers straddling windows)', async () => {
    // Python's tarfile writes them (PAX and GNU formats, long names, sizes around the block size).
    const write = `
import io, sys, tarfile
fmt = tarfile.PAX_FORMAT if sys.argv[1] == "pax" else tarfile.GNU_FORMAT
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
    for i, n in enumerate([0, 1, 511, 512, 513, 5000, 70000, 1 << 20, 3]):
        data = bytes((i * 7 + j) % 251 for j in range(n))
        info = tarfile.TarInfo(("d" * 120 + "/" if i % 3 == 0 else "") + f"m{i}.bin")
        info.size = n
        t.addfile(info, io.BytesIO(data))
sys.stdout.buffer.write(out.getvalue())`;
    for (const format of ['pax', 'gnu']) {
      const t = execFileSync('python3', ['-c', write, format], { maxBuffer: 1 << 24 });
      const py = python(t).map((m) => m.name);
      for (const window of [513, 1000, 4096, 1 << 20]) {
        const seen: string[] = [];
        const bytes = { size: t.length, read: async (pos: number, len: number) => t.subarray(pos, pos + len) };
        await walkTarBlocks(sourceBlocks(bytes, window), async (h, body) => {
          const data = await body.take(h.size);
          expect(data.length).toBe(h.size);
          // The bytes are the member's: the generator's pattern, from its first byte.
          const i = Number(/m(\d+)\.bin$/.exec(h.name)![1]);
          expect(data.every((x, j) => x === (i * 7 + j) % 251)).toBe(true);
          seen.push(h.name);
        });
        expect(seen).toEqual(py);
      }
    }
  });

  it('the control: a plain pickle member is found by both', async () => {
    const t = Buffer.concat([member({ name: 'ok.txt' }, Buffer.from('hi\n')), member({ name: 'evil.pkl' }, PICKLE), END]);
    expect(pythonPickles(t)).toEqual(['evil.pkl']);
    expect((await judge(t)).reason).toMatch(/posix\.system \(in member evil\.pkl\)/);
  });

  const attacks: [string, () => Buffer][] = [
    // Python's int(s, 8) reads "00_00001000" as 512; a parse that stops at "_" reads 0.
    [
      'an octal size with an underscore',
      () => Buffer.concat([header({ name: 'cover.txt', sizeField: '00_00001000\0' }), header({ name: 'wrap.txt', size: hidden.length }), hidden, END]),
    ],
    // Python cuts the field at its first NUL (size 0); skipping leading NULs reads the digits after.
    [
      'a size field opening with NUL',
      () => Buffer.concat([header({ name: 'cover.txt', sizeField: `\0${hidden.length.toString(8).padStart(10, '0')}\0` }), hidden, END]),
    ],
    // PAX size "1_024": Python's int() reads 1024.
    [
      'a PAX size with an underscore',
      () =>
        Buffer.concat([
          pax([['size', '1_024']]),
          header({ name: 'cover.txt', size: 1 }),
          Buffer.alloc(512, 0x20),
          header({ name: 'wrap.txt', size: hidden.length }),
          hidden,
          END,
        ]),
    ],
    // PAX "size=" (empty): Python's int('') fails and the size is 0, the next header right after.
    ['an empty PAX size', () => Buffer.concat([pax([['size', '']]), header({ name: 'cover.txt', size: hidden.length }), hidden, END])],
    // Two extended headers: Python applies the first (outer) one last.
    [
      'two PAX headers for one member',
      () => Buffer.concat([pax([['size', '0']]), pax([['size', String(hidden.length)]]), header({ name: 'cover.txt', size: 7 }), hidden, END]),
    ],
    // A record Python's parser stops at ("8x" is no length), the size record after it unread by Python.
    [
      'a PAX record Python stops at',
      () => {
        const p = Buffer.from(`8x a=bc\n${paxRecords([['size', String(hidden.length)]])}`, 'latin1');
        return Buffer.concat([member({ name: 'PaxHeader', type: 'x' }, p), header({ name: 'cover.txt', size: 0 }), hidden, END]);
      },
    ],
    // A global size: Python applies it to every later member's size without moving the next header.
    [
      'a global PAX size',
      () => Buffer.concat([pax([['size', '600']], 'g'), header({ name: 'a.txt', size: 0 }), member({ name: hex(R.R1) }, Buffer.from('x')), END]),
    ],
    // GNU.sparse.realsize: the member is read past its own blocks.
    [
      'a PAX sparse real size',
      () => Buffer.concat([pax([['GNU.sparse.realsize', '600']]), header({ name: 'a.txt', size: 0 }), member({ name: hex(R.R1) }, Buffer.from('x')), END]),
    ],
    // A GNU sparse 1.0 member: its data opens with the sparse map, Python hands out what follows.
    [
      'a GNU sparse 1.0 member',
      () =>
        Buffer.concat([
          pax([
            ['GNU.sparse.major', '1'],
            ['GNU.sparse.minor', '0'],
            ['GNU.sparse.name', 'evil.pkl'],
            ['GNU.sparse.realsize', String(PICKLE.length)],
          ]),
          member({ name: 'GNUSparseFile.0/evil.pkl' }, Buffer.concat([padded(Buffer.from(`1\n0\n${PICKLE.length}\n`)), PICKLE])),
          END,
        ]),
    ],
    // Type 'N' is no long name to Python: an unknown type, read as a regular file.
    ['a member of type N', () => Buffer.concat([member({ name: 'evil.pkl', type: 'N' }, PICKLE), member({ name: 'ok.txt' }, Buffer.from('hi')), END])],
    // A V7 tar (no magic): Python reads it; it must not pass as opaque data.
    ['a V7 tar without magic', () => Buffer.concat([member({ name: 'evil.pkl', magic: 'none' }, PICKLE), END])],
  ];
  for (const [what, build] of attacks) {
    it(`${what}: Python reads the pickle, the walk refuses (plain and gzip)`, async () => {
      const t = build();
      const pickle = what.includes('global') || what.includes('real size') ? hex(R.R1) : PICKLE;
      expect(pythonPickles(t, pickle)).toHaveLength(1);
      for (const [path, bytes] of [
        ['data.tar', t],
        ['data.tar.gz', gzipSync(t)],
      ] as const) {
        const r = await judge(bytes, path);
        expect(r.allow, `${what} (${path})`).toBe(false);
      }
    });
  }

  it('gzip members with NUL padding between them: Python reads on past the padding, so the walk must too or refuse', async () => {
    const part1 = member({ name: 'ok.txt' }, Buffer.from('hi\n'));
    const part2 = Buffer.concat([member({ name: 'evil.pkl' }, PICKLE), END]);
    const gz = Buffer.concat([gzipSync(part1), Buffer.alloc(4), gzipSync(part2)]);
    expect(pythonPickles(gz)).toEqual(['evil.pkl']);
    expect((await judge(gz, 'data.tar.gz')).allow).toBe(false);
    // A compressed pickle alike: an empty member, NUL padding, then the pickle (gzip.open(...).read() is the pickle).
    const pkl = Buffer.concat([gzipSync(Buffer.alloc(0)), Buffer.alloc(8), gzipSync(PICKLE)]);
    expect(
      execFileSync('python3', ['-c', 'import gzip, sys; sys.stdout.write(gzip.decompress(sys.stdin.buffer.read()).hex())'], { input: pkl }).toString(),
    ).toBe(PICKLE.toString('hex'));
    expect((await judge(pkl, 'model.pkl.gz')).allow).toBe(false);
    // Padding at the very end is read alike by both and passes.
    const tail = Buffer.concat([gzipSync(Buffer.concat([part1, END])), Buffer.alloc(16)]);
    expect(python(tail).map((m) => m.name)).toEqual(['ok.txt']);
    expect((await judge(tail, 'data.tar.gz')).allow).toBe(true);
  });

  it('a headerless pickle behind a prefix of opcodes longer than the trial decode reads is a pickle (pickle.load reads on)', async () => {
    // NONE, POP over 1.2 MB, or a 2 MiB string then POP: pickle.load gets to the import either way.
    const prefixes = [
      Buffer.from('N0'.repeat(600_000), 'latin1'),
      Buffer.concat([Buffer.from([0x58, 0, 0, 0x20, 0]), Buffer.alloc(2 << 20, 0x61), Buffer.from('0')]),
    ];
    for (const prefix of prefixes) {
      const file = Buffer.concat([prefix, PICKLE0.subarray(2)]);
      expect(
        execFileSync(
          'python3',
          ['-c', 'import pickletools, sys; print([a for o, a, p in pickletools.genops(sys.stdin.buffer.read()) if o.name == "GLOBAL"])'],
          { input: file },
        ).toString(),
      ).toContain('os system');
      expect((await judge(file, 'data.bin')).reason).toMatch(/os\.system/);
      // In a tar, as a member of its own, and as the head of a member over 64 MiB.
      expect((await judge(Buffer.concat([member({ name: 'x.bin' }, file), END]))).reason).toMatch(/os\.system \(in member x\.bin\)/);
      const big = Buffer.alloc((64 << 20) + 10, 0x20);
      file.copy(big, 0, 0, Math.min(file.length, big.length));
      expect((await judge(Buffer.concat([member({ name: 'big.bin' }, big), END]))).reason).toMatch(/big\.bin.*too large to inspect/);
    }
  });

  it('a member over 64 MiB opening with a headerless pickle is refused (pickle.load runs it whatever follows)', async () => {
    const big = Buffer.alloc((64 << 20) + 10, 0x20);
    PICKLE0.copy(big, 0);
    const t = Buffer.concat([member({ name: 'big.bin' }, big), END]);
    expect(pythonPickles(t, PICKLE0)).toEqual(['big.bin']);
    expect((await judge(t)).reason).toMatch(/big\.bin.*too large to inspect/);
    big.fill(0x20, 0, PICKLE0.length);
    expect((await judge(Buffer.concat([member({ name: 'big.bin' }, big), END]))).allow).toBe(true);
  });
});
