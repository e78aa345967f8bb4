import { describe, expect, it } from 'vitest';
import { HfPolicy } from '../../src/policy/hf.js';
import { scan } from '../../src/scan/index.js';
import { bufferSource } from '../../src/scan/source.js';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { R, R10_STORAGE, gguf, hex, makeTar, makeZip, safetensors, torchZip } from '../helpers/model-files.js';

/**
 * Seeded random-mutation fuzzing of the pickle decoder, the zip, safetensors and GGUF parsers, and
 * the archive walk (real tar, gzip, bzip2, xz and zstd files from test/corpus, and tars of payloads).
 * `npm test` runs it for a few seconds (FUZZ_SECONDS, default 4); `npm run fuzz` for longer.
 * Properties: the scanner never throws or hangs on any input, and a mutated malicious sample is
 * accepted only when no import of the original payload can still be reached.
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 4);
const SEED = Number(process.env.FUZZ_SEED ?? 20261125);

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function mutate(b: Buffer, rand: () => number): Buffer {
  const out = Buffer.from(b);
  const n = 1 + Math.floor(rand() * 4);
  let cur = out;
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rand() * Math.max(1, cur.length));
    switch (Math.floor(rand() * 6)) {
      case 0: // flip a byte
        if (cur.length) cur[pos] = Math.floor(rand() * 256);
        break;
      case 1: // insert a byte
        cur = Buffer.concat([cur.subarray(0, pos), Buffer.from([Math.floor(rand() * 256)]), cur.subarray(pos)]);
        break;
      case 2: // delete a run
        cur = Buffer.concat([cur.subarray(0, pos), cur.subarray(pos + 1 + Math.floor(rand() * 8))]);
        break;
      case 3: // truncate
        cur = cur.subarray(0, pos);
        break;
      case 4: // duplicate a run
        cur = Buffer.concat([cur.subarray(0, pos), cur.subarray(pos, pos + 16), cur.subarray(pos)]);
        break;
      default: // an interesting byte: opcodes that change structure
        if (cur.length) cur[pos] = [0x93, 0x94, 0x63, 0x28, 0x2e, 0x52, 0x51, 0x80, 0x30, 0x68, 0x71][Math.floor(rand() * 11)];
    }
  }
  return cur;
}

const C = 'a'.repeat(40);
const policy = new HfPolicy({ allow: [{ repo: 'org/m', commits: [C] }] }, ['hf']);
const MALICIOUS_NAMES = /system|getattr|__import__|eval/;

const seeds: { name: string; bytes: Buffer; malicious: boolean }[] = [
  ...(['R1', 'R2', 'R3', 'R4', 'R5', 'R6', 'R7', 'R9', 'R11', 'R12'] as const).map((k) => ({ name: k, bytes: hex(R[k]), malicious: true })),
  { name: 'zip-R2', bytes: torchZip(hex(R.R2), {}), malicious: true },
  { name: 'R10', bytes: hex(R.R10), malicious: false },
  { name: 'zip-R10', bytes: torchZip(hex(R.R10)), malicious: false },
  { name: 'zip-plain', bytes: makeZip([{ name: 'a.txt', data: R10_STORAGE }]), malicious: false },
  { name: 'safetensors', bytes: safetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, R10_STORAGE), malicious: false },
  { name: 'gguf', bytes: gguf([['general.architecture', 'string', 'llama']], [{ name: 'w', dims: [8] }]), malicious: false },
  ...[
    'datasets/train.jsonl.gz',
    'datasets/train.jsonl.bz2',
    'datasets/train.jsonl.xz',
    'datasets/train.jsonl.zst',
    'datasets/weights.tar',
    'torch-2.13/tensor.pt',
  ].map((rel) => ({
    name: rel,
    bytes: readFileSync(new URL(`../corpus/real/${rel}`, import.meta.url)),
    malicious: false,
  })),
];

describe(`scanner fuzzing (${SECONDS} s, seed ${SEED})`, () => {
  it(
    'never crashes or hangs, and never accepts a reachable malicious import',
    async () => {
      const evilTar = await makeTar([
        { name: 'a.txt', data: Buffer.from('hi\n') },
        { name: 'x.pyd', data: hex(R.R2) },
      ]);
      seeds.push({ name: 'tar-R2', bytes: evilTar, malicious: true }, { name: 'tar.gz-R2', bytes: gzipSync(evilTar), malicious: true });
      const rand = rng(SEED);
      const end = Date.now() + SECONDS * 1000;
      let runs = 0;
      let accepted = 0;
      while (Date.now() < end) {
        const s = seeds[runs % seeds.length];
        const m = mutate(s.bytes, rand);
        const t0 = Date.now();
        const report = await scan(bufferSource(m));
        expect(Date.now() - t0, `${s.name} mutant took too long`).toBeLessThan(2000);
        const d = policy.decideContent('model', 'org/m', 'model.bin', 'f'.repeat(64), report);
        if (d.allow && s.malicious) {
          accepted++;
          // Accepting a mutant is right only when it imports nothing off the profile: the payload's
          // GLOBAL/INST/STACK_GLOBAL can no longer reach the dangerous name.
          expect(
            report.globals.every((g) => !MALICIOUS_NAMES.test(g)),
            `${s.name} mutant ${m.toString('hex')} accepted with ${report.globals}`,
          ).toBe(true);
          if (report.pickle) {
            const text = m.toString('latin1');
            const stillImports = /[ci](os|posix|nt|builtins|__builtin__)\n(system|getattr|eval)\n/.test(text);
            expect(stillImports, `${s.name} mutant ${m.toString('hex')} accepted while it still imports the payload`).toBe(false);
          }
        }
        runs++;
      }
      expect(runs).toBeGreaterThan(100);
      console.log(`fuzz: ${runs} mutants, ${accepted} mutated malicious samples accepted (each checked to import nothing dangerous)`);
    },
    (SECONDS + 30) * 1000,
  );
});
