import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HfPolicy } from '../../src/policy/hf.js';
import { scan, type ScanReport } from '../../src/scan/index.js';
import { contentDecision } from '../../src/hf/inspection.js';
import { bufferSource } from '../../src/scan/source.js';
import { strictJson } from '../../src/scan/formats.js';
import { R, R10_STORAGE, gguf, hex, makeZip, npy, safetensors, torchZip } from '../helpers/model-files.js';

const C = 'a'.repeat(40);
const policy = new HfPolicy({ allow: [{ repo: 'org/m', commits: [C] }] }, ['hf']);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function judge(bytes: Buffer, path = 'pytorch_model.bin', p = policy): Promise<{ report: ScanReport; allow: boolean; reason: string }> {
  const report = await scan(bufferSource(bytes), path);
  const d = contentDecision(p, 'model', 'org/m', path, sha(bytes), report);
  return { report, allow: d.allow, reason: d.allow ? '' : d.reason };
}

describe('pickle scanning (corpus built from bytes, never unpickled)', () => {
  const malicious: [keyof typeof R, RegExp][] = [
    ['R1', /os\.system/],
    ['R2', /posix\.system/],
    ['R3', /posix\.system/],
    ['R4', /os\.system/],
    ['R5', /os\.system/],
    ['R6', /os\.system/],
    ['R7', /builtins\.__import__, builtins\.getattr/],
    ['R8', /truncated|unknown opcode/],
    ['R9', /posix\.system/],
    ['R11', /os\.system/],
    ['R12', /os\.system/],
  ];
  for (const [name, why] of malicious) {
    it(`refuses ${name} with the offending import named`, async () => {
      const r = await judge(hex(R[name]));
      expect(r.report.pickle).toBe(true);
      expect(r.allow).toBe(false);
      expect(r.reason).toMatch(why);
    });
  }
  it('finds the real global behind memo indirection, not the decoy strings', async () => {
    const r = await judge(hex(R.R4));
    expect(r.report.globals).toEqual(['os.system']);
  });
  it('reports what the broken pickle imported before breaking', async () => {
    const r = await judge(hex(R.R8));
    expect(r.report.globals).toEqual(['posix.system']);
    expect(r.report.findings.some((f) => f.code === 'pickle_invalid')).toBe(true);
  });
  it('accepts the benign torch state_dict (R10) as a raw pickle and as torch.save zip', async () => {
    const raw = await judge(hex(R.R10));
    expect(raw.report.globals).toEqual(['collections.OrderedDict', 'torch.FloatStorage', 'torch._utils._rebuild_tensor_v2']);
    expect(raw.allow).toBe(true);
    const zip = await judge(torchZip(hex(R.R10)));
    expect(zip.report.format).toBe('torch-zip');
    expect(zip.report.findings).toEqual([]);
    expect(zip.allow).toBe(true);
  });
  it('maps protocol<3 module names (__builtin__ -> builtins) and treats EXT codes as unknown', async () => {
    const legacyEval = Buffer.concat([Buffer.from("c__builtin__\neval\n(S'1'\ntR.", 'latin1')]);
    expect((await judge(legacyEval)).reason).toMatch(/builtins\.eval/);
    const ext = hex('8002820128' + '2e');
    const r = await judge(Buffer.concat([hex('800282012e')]));
    expect(r.allow).toBe(false);
    expect(r.reason).toMatch(/EXT1|unknown/);
    void ext;
  });
  it('refuses importlib, runpy, pip, subprocess and anything off the profile', async () => {
    for (const [mod, name] of [
      ['importlib', 'import_module'],
      ['runpy', '_run_code'],
      ['pip', 'main'],
      ['subprocess', 'Popen'],
      ['torch', 'load'],
      ['numpy', 'load'],
    ]) {
      const p = Buffer.from(`\x80\x02c${mod}\n${name}\nX\x01\x00\x00\x00x\x85R.`, 'latin1');
      const r = await judge(p);
      expect(r.allow, `${mod}.${name}`).toBe(false);
      expect(r.reason).toContain(`${mod}.${name}`);
    }
  });
  it('refuses a persistent id that is not a torch storage, and out-of-band buffers', async () => {
    const pid = Buffer.from('\x80\x02X\x04\x00\x00\x00evilQ.', 'latin1');
    expect((await judge(pid)).reason).toMatch(/persistent id/);
    const oob = hex('8005972e');
    expect((await judge(oob)).reason).toMatch(/out-of-band/);
  });
  it('refuses bytes after the last pickle (joblib arrays or a hidden payload)', async () => {
    const r = await judge(Buffer.concat([hex(R.R10), Buffer.from('trailing')]));
    expect(r.allow).toBe(false);
    expect(r.reason).toMatch(/after the last pickle/);
  });
  it('follows the pickle profile switches and sha256 exceptions', async () => {
    const numpyPickle = Buffer.from('\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00.', 'latin1');
    expect((await judge(numpyPickle)).allow).toBe(false);
    const numpyPolicy = new HfPolicy({ allow: [{ repo: 'org/m', commits: [C], scan: { profile: 'torch-numpy' } }] }, ['hf']);
    expect((await judge(numpyPickle, 'rng_state.pth', numpyPolicy)).allow).toBe(true);
    const noPickles = new HfPolicy({ scan: { pickle: 'deny' }, allow: [{ repo: 'org/m', commits: [C] }] }, ['hf']);
    expect((await judge(hex(R.R10), 'x.bin', noPickles)).reason).toMatch(/pickle-based file .* hf\.scan\.pickle is deny/);
    const pinned = new HfPolicy({ allow: [{ repo: 'org/m', commits: [C], scan: { sha256: [sha(hex(R.R2))] } }] }, ['hf']);
    expect((await judge(hex(R.R2), 'x.bin', pinned)).allow).toBe(true);
  });
});

describe('containers', () => {
  const evil = hex(R.R2);
  it('Z2: a malicious data.pkl in a torch zip', async () => {
    expect((await judge(torchZip(evil, {}))).reason).toMatch(/posix\.system/);
  });
  it('Z3: local header name differs from the central directory (CVE-2025-1944)', async () => {
    const z = makeZip([
      { name: 'archive/data.pkl', localName: 'archive/datap.kl', data: hex(R.R10) },
      { name: 'archive/data/0', data: R10_STORAGE },
    ]);
    expect((await judge(z)).reason).toMatch(/local header names "archive\/datap\.kl"/);
  });
  for (const flag of [0x1, 0x20, 0x40]) {
    it(`Z4-6: flag bits 0x${flag.toString(16)} (CVE-2025-1945)`, async () => {
      const z = makeZip([{ name: 'archive/data.pkl', data: hex(R.R10), flags: flag }]);
      expect((await judge(z)).reason).toMatch(/general-purpose flags/);
    });
  }
  it('Z7: a CRC mismatch (CVE-2025-10156)', async () => {
    const z = makeZip([{ name: 'archive/data.pkl', data: hex(R.R10), crc: 1234 }]);
    expect((await judge(z)).reason).toMatch(/CRC/);
  });
  it('Z8: a pickle hidden under another name (CVE-2025-1889)', async () => {
    const z = makeZip([
      { name: 'archive/data.pkl', data: hex(R.R10) },
      { name: 'archive/data/0', data: R10_STORAGE },
      { name: 'archive/notes.txt', data: evil },
    ]);
    expect((await judge(z)).reason).toMatch(/posix\.system/);
  });
  it('Z9: a raw pickle named .bin is sniffed by content (CVE-2025-10155)', async () => {
    const r = await judge(evil, 'model.safetensors');
    expect(r.report.format).toBe('pickle');
    expect(r.allow).toBe(false);
  });
  it('Z10: 7z and other archives are refused without parsing', async () => {
    const r = await judge(Buffer.concat([hex('377abcaf271c'), Buffer.alloc(100)]));
    expect(r.report.format).toBe('archive');
    expect(r.allow).toBe(false);
  });
  it('Z11: the archive name comes from the first central-directory entry, as in PyTorch', async () => {
    const z = makeZip([
      { name: 'evil/x', data: Buffer.from('x') },
      { name: 'evil/data.pkl', data: evil },
      { name: 'archive/data.pkl', data: hex(R.R10) },
    ]);
    const r = await judge(z);
    expect(r.report.format).toBe('torch-zip');
    expect(r.reason).toMatch(/evil\/data\.pkl.*|posix\.system/);
  });
  it('Z12: duplicate names; Z13: prepended bytes; nested archives', async () => {
    const dup = makeZip([
      { name: 'archive/data.pkl', data: hex(R.R10) },
      { name: 'archive/data.pkl', data: evil },
    ]);
    expect((await judge(dup)).reason).toMatch(/duplicate entry/);
    const pre = makeZip([{ name: 'archive/data.pkl', data: hex(R.R10) }], { prepend: Buffer.from('MZ stub') });
    expect((await judge(pre)).allow).toBe(false);
    // An archive inside is opened and judged by the same rules, naming the member the import is in.
    const nested = makeZip([{ name: 'inner.zip', data: makeZip([{ name: 'a', data: evil }]) }]);
    expect((await judge(nested)).reason).toMatch(/posix\.system \(in member inner\.zip\/a\)/);
  });
  it('Z14: a data descriptor with zero sizes in the local header is read from the central directory', async () => {
    const z = makeZip(
      [
        { name: 'archive/data.pkl', data: hex(R.R10) },
        { name: 'archive/data/0', data: R10_STORAGE },
      ],
      { descriptorZeros: true },
    );
    expect((await judge(z)).allow).toBe(true);
  });
  it('checks torch storages exist and are large enough (CVE-2026-24747)', async () => {
    expect((await judge(torchZip(hex(R.R10), {}))).reason).toMatch(/refers to storage 0, which the archive lacks/);
    expect((await judge(torchZip(hex(R.R10), { '0': Buffer.alloc(8) }))).reason).toMatch(/smaller than the 16/);
  });
  it('legacy torch files: five pickles, then raw storages', async () => {
    // The benign file is what torch.save(_use_new_zipfile_serialization=False) wrote (test/corpus).
    const real = readFileSync(new URL('../corpus/real/torch-2.13/tensor-legacy.pt', import.meta.url));
    const r = await judge(real);
    expect(r.report.format).toBe('torch-legacy');
    expect(r.allow).toBe(true);
    const magic = hex('80028a0a6cfc9c46f9206aa850192e');
    const proto = hex('80024de9032e');
    const sys = hex('80027d71002e');
    const keys = hex('80025d71005801000000307101612e');
    // A 5-tuple storage id is the zip format's; torch's legacy loader unpacks six.
    expect((await judge(Buffer.concat([magic, proto, sys, hex(R.R10), keys, Buffer.alloc(8), R10_STORAGE]))).reason).toMatch(/not a 6-tuple/);
    const bad = Buffer.concat([magic, proto, sys, evil, keys]);
    expect((await judge(bad)).reason).toMatch(/posix\.system/);
  });
  it('npy with object dtype is a pickle; numeric npy is not', async () => {
    const n1 = npy('|O', evil);
    const r = await judge(n1, 'arr.npy');
    expect(r.report.format).toBe('numpy');
    expect(r.reason).toMatch(/posix\.system/);
    const ok = await judge(npy('<f4', Buffer.alloc(4)), 'arr.npy');
    expect(ok.allow).toBe(true);
    expect(ok.report.pickle).toBe(false);
    const npz = makeZip([{ name: 'a.npy', data: n1 }]);
    expect((await judge(npz, 'x.npz')).reason).toMatch(/posix\.system/);
  });
  it('Keras Lambda layers and repository code need remote_code', async () => {
    const keras = makeZip([
      { name: 'config.json', data: Buffer.from('{"class_name": "Functional", "config": {"layers": [{"class_name": "Lambda", "config": {}}]}}') },
      { name: 'metadata.json', data: Buffer.from('{}') },
    ]);
    const r = await judge(keras, 'model.keras');
    expect(r.report.format).toBe('keras');
    expect(r.reason).toMatch(/Lambda/);
    expect((await judge(Buffer.from('import os\nos.system("id")\n'), 'modeling_evil.py')).reason).toMatch(/Python source/);
    const autoMap = Buffer.from(JSON.stringify({ model_type: 'x', auto_map: { AutoModel: 'modeling_x.XModel' } }));
    expect((await judge(autoMap, 'config.json')).reason).toMatch(/auto_map/);
    const trusting = new HfPolicy({ allow: [{ repo: 'org/m', commits: [C], scan: { remote_code: 'allow' } }] }, ['hf']);
    expect((await judge(autoMap, 'config.json', trusting)).allow).toBe(true);
    expect((await judge(Buffer.from('{"model_type": "gpt2"}'), 'config.json')).allow).toBe(true);
  });
});

describe('safetensors', () => {
  const ok = (extra = {}) => ({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });
  it('S1: a valid file passes', async () => {
    const r = await judge(safetensors(ok({ __metadata__: { format: 'pt' } }), Buffer.alloc(8)), 'model.safetensors');
    expect(r.report.format).toBe('safetensors');
    expect(r.allow).toBe(true);
  });
  const bad: [string, Buffer, RegExp][] = [
    [
      'S3 header past the end',
      (() => {
        const b = safetensors(ok(), Buffer.alloc(8));
        b.writeBigUInt64LE(4000n, 0);
        return b;
      })(),
      /runs past the end|trailing or missing/,
    ],
    ['S4 header not an object', safetensors('["a"]', Buffer.alloc(0)), /does not start with|not an object|named like safetensors/],
    [
      'S5 invalid UTF-8',
      Buffer.concat([
        (() => {
          const l = Buffer.alloc(8);
          l.writeBigUInt64LE(4n);
          return l;
        })(),
        Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
      ]),
      /UTF-8/,
    ],
    [
      'S6 duplicate keys',
      safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Buffer.alloc(8)),
      /duplicate key/,
    ],
    [
      'S7 gap',
      safetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, Buffer.alloc(20)),
      /gap or an overlap/,
    ],
    [
      'S8 overlap',
      safetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12)),
      /gap or an overlap/,
    ],
    ['S9 size disagrees with shape', safetensors({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)), /dtype and shape say 12/],
    ['S10 trailing byte', safetensors(ok(), Buffer.alloc(9)), /trailing or missing/],
    ['S11 non-string metadata', safetensors(ok({ __metadata__: { n: 1 } }), Buffer.alloc(8)), /not a string/],
    ['S12 unknown dtype', safetensors({ a: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, Buffer.alloc(16)), /unknown dtype/],
    ['S13 shape overflow', safetensors({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, Buffer.alloc(8)), /dtype and shape say/],
    ['S14 number above 2^53', safetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,9007199254740993]}}', Buffer.alloc(8)), /larger than 2\^53/],
  ];
  for (const [name, bytes, why] of bad) {
    it(`refuses ${name}`, async () => {
      const r = await judge(bytes, 'model.safetensors');
      expect(r.allow).toBe(false);
      expect(r.reason).toMatch(why);
    });
  }
  it('S2: a header over the 100 MB limit is refused from its length alone', async () => {
    const b = Buffer.concat([Buffer.alloc(8), Buffer.from('{}')]);
    b.writeBigUInt64LE(200_000_000n);
    const r = await judge(b, 'model.safetensors');
    expect(r.allow).toBe(false);
  });
  it('strict JSON: duplicate keys and huge integers are errors', () => {
    expect(() => strictJson('{"a":1,"a":2}')).toThrow(/duplicate key/);
    expect(() => strictJson('[9007199254740993]')).toThrow(/2\^53/);
    expect(strictJson('{"a":[1,2.5,"x",null,true]}')).toEqual({ a: [1, 2.5, 'x', null, true] });
  });
});

describe('GGUF', () => {
  const arch: ['general.architecture', 'string', string] = ['general.architecture', 'string', 'llama'];
  it('G1: a minimal valid file passes and its chat template is surfaced', async () => {
    const r = await judge(
      gguf([arch, ['tokenizer.chat_template', 'string', '{% for m in messages %}{{ m.content }}{% endfor %}']], [{ name: 'w', dims: [8] }]),
      'm.gguf',
    );
    expect(r.report.format).toBe('gguf');
    expect(r.allow).toBe(true);
    expect(r.report.findings[0]).toMatchObject({ code: 'chat_template', severity: 'info' });
  });
  const cases: [string, Buffer, RegExp][] = [
    ['G2 bad magic', Buffer.concat([Buffer.from('GGUX'), Buffer.alloc(40)]), /.*/],
    ['G3 absurd KV count', gguf([arch], [], { kvCount: 1n << 63n }), /counts larger than the file/],
    ['G4 string past the end', Buffer.concat([gguf([arch]).subarray(0, 24), Buffer.from([0x10, 0, 0, 0, 0, 0, 0, 0x10])]), /out of bounds|truncated/],
    ['G6 five dimensions', gguf([arch], [{ name: 'w', dims: [1, 1, 1, 1, 1] }]), /dimensions/],
    ['G7 unaligned offset', gguf([arch], [{ name: 'w', dims: [8], offset: 4 }]), /not aligned/],
    ['G8 dims overflow', gguf([arch], [{ name: 'w', dims: [2 ** 40, 2 ** 40] }]).subarray(0, 200), /overflows|truncated|past the end/],
    ['G9 template injection', gguf([arch, ['tokenizer.chat_template', 'string', "{{ ''.__class__.__mro__[1].__subclasses__() }}"]]), /template injection/],
    ['unknown tensor type', gguf([arch], [{ name: 'w', dims: [8], type: 4 }]), /removed ggml type 4/],
    ['missing architecture', gguf([]), /general\.architecture/],
  ];
  for (const [name, bytes, why] of cases) {
    it(`refuses ${name}`, async () => {
      const r = await judge(bytes, 'm.gguf');
      expect(r.allow).toBe(false);
      expect(r.reason).toMatch(why);
    });
  }
  it('G5: deeply nested arrays are refused', async () => {
    // ARRAY of ARRAY of ARRAY of ARRAY ...: type 9, elem type 9, count 1, repeated.
    const nest = Buffer.concat(Array.from({ length: 10 }, () => Buffer.concat([Buffer.from([9, 0, 0, 0]), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])])));
    const b = gguf([arch, ['x', 'raw', 9, nest.subarray(4)]]);
    expect((await judge(b, 'm.gguf')).allow).toBe(false);
  });
});
