import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { scan, type ScanReport } from '../../src/scan/index.js';
import { bufferSource } from '../../src/scan/source.js';
import { followTorchZip } from '../../src/scan/torch.js';
import { readZip } from '../../src/scan/zip.js';

/**
 * Attacks on real torch.save output (test/corpus): bytes a tool wrote, changed by hand where an
 * attacker would change them. Each is judged twice: whole (a cached file, rescan) and followed as
 * it downloads (the `cleared` path, which checks storage CRCs as they pass).
 */
const real = (rel: string) => Buffer.from(readFileSync(new URL(`../corpus/real/${rel}`, import.meta.url)));
const refusals = (r: ScanReport) => r.findings.filter((f) => f.severity === 'refuse').map((f) => f.message);

async function both(bytes: Buffer): Promise<string[][]> {
  const whole = await scan(bufferSource(bytes));
  let cleared = false;
  const followed = await scan(bufferSource(bytes), 'the file', { cleared: () => void (cleared = true) });
  return [refusals(whole), refusals(followed), [String(cleared)]];
}

describe('torch.save zips, read forwards and whole', () => {
  it('the forward walk checks every member of a real checkpoint as it passes', async () => {
    for (const rel of ['torch-2.13/checkpoint.pt', 'torch-1.13/pytorch_model.bin', 'torch-2.13/dtypes.pt']) {
      const bytes = real(rel);
      const checked = await followTorchZip(bufferSource(bytes), async () => {});
      const entries = await readZip(bufferSource(bytes));
      expect(checked, rel).not.toBeNull();
      expect([...checked!.values()].map((c) => c.name).sort(), rel).toEqual(entries.map((e) => e.name).sort());
      for (const e of entries) expect(checked!.get(e.localOffset), `${rel} ${e.name}`).toMatchObject({ crc: e.crc, size: e.size });
    }
  });

  it('a storage byte changed is refused either way (its CRC)', async () => {
    const bytes = real('torch-2.13/pytorch_model.bin');
    const storage = (await readZip(bufferSource(bytes))).find((e) => /\/data\/\d+$/.test(e.name) && e.size > 16)!;
    bytes[storage.dataOffset + 7] ^= 0x01;
    const [whole, followed, cleared] = await both(bytes);
    expect(whole.join()).toMatch(/fails its CRC check/);
    expect(followed.join()).toMatch(/fails its CRC check/);
    expect(cleared).toEqual(['true']);
  });

  it('a data descriptor that disagrees with the central directory is refused', async () => {
    const bytes = real('torch-2.13/tensor.pt');
    const e = (await readZip(bufferSource(bytes)))[0];
    const dd = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x07, 0x08]), e.dataOffset + e.size);
    bytes.writeUInt32LE(e.size + 1, dd + 8);
    const [whole, followed] = await both(bytes);
    expect(whole.join()).toMatch(/data descriptor's sizes or CRC differ/);
    expect(followed.join()).toMatch(/data descriptor's sizes or CRC differ/);
  });

  it('a local name that differs from the central directory is refused (CVE-2025-1944 on real bytes)', async () => {
    const bytes = real('torch-2.13/tensor.pt');
    const at = bytes.indexOf('tensor/data.pkl');
    bytes.write('tensor/datap.kl', at, 'latin1');
    const [whole, followed, cleared] = await both(bytes);
    expect(whole.join()).toMatch(/local header names "tensor\/datap\.kl"/);
    expect(followed.join()).toMatch(/local header names/);
    expect(cleared).toEqual(['false']);
  });

  it('a ZIP64 end record that disagrees with the end record is refused', async () => {
    const bytes = real('torch-2.13/tensor.pt');
    const z64 = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]));
    bytes.writeUInt32LE(bytes.readUInt32LE(z64 + 32) + 1, z64 + 32);
    bytes.writeUInt32LE(bytes.readUInt32LE(z64 + 24) + 1, z64 + 24);
    const [whole] = await both(bytes);
    expect(whole.join()).toMatch(/end record and the ZIP64 end record disagree/);
  });

  it('bytes hidden between two entries are refused, with every offset fixed up around them', async () => {
    const bytes = real('torch-2.13/tensor.pt');
    const entries = (await readZip(bufferSource(bytes))).sort((x, y) => x.localOffset - y.localOffset);
    const at = entries[1].localOffset;
    const out = Buffer.concat([bytes.subarray(0, at), Buffer.from('EVIL'), bytes.subarray(at)]);
    // Shift what points past the insertion: central-directory local offsets, the ZIP64 end
    // record's directory offset, the locator's pointer to it, and the end record's offset.
    const z64 = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]));
    const cdAt = Number(out.readBigUInt64LE(z64 + 48)) + 4;
    out.writeBigUInt64LE(BigInt(cdAt), z64 + 48);
    out.writeBigUInt64LE(BigInt(z64), out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07])) + 8);
    const eocd = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (out.readUInt32LE(eocd + 16) !== 0xffffffff) out.writeUInt32LE(cdAt, eocd + 16);
    for (let p = cdAt; out.readUInt32LE(p) === 0x02014b50; p += 46 + out.readUInt16LE(p + 28) + out.readUInt16LE(p + 30) + out.readUInt16LE(p + 32)) {
      if (out.readUInt32LE(p + 42) >= at) out.writeUInt32LE(out.readUInt32LE(p + 42) + 4, p + 42);
    }
    const [whole, followed] = await both(out);
    expect(whole.join()).toMatch(/4 bytes hidden before tensor\/\.format_version/);
    expect(followed.join()).toMatch(/4 bytes hidden before/);
  });
});
