import { crc32, deflateRawSync } from 'node:zlib';

export interface ZipInput {
  name: string;
  data: Buffer | string;
}

/**
 * A plain zip (no ZIP64, no data descriptors), written in-process so a test controls what Python's
 * zipfile would not let it: the central directory in another order than the entries' data (`order`:
 * indexes into `entries`), the same record under two paths, entries that are not JSON. Deflated
 * unless `stored`. Synchronous: make it before measuring anything.
 */
export function writeZip(entries: ZipInput[], opts: { order?: number[]; stored?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let at = 0;
  const meta: { name: Buffer; crc: number; csize: number; size: number; offset: number; method: number }[] = [];
  for (const e of entries) {
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
    const method = opts.stored ? 0 : 8;
    const body = method === 8 ? deflateRawSync(data) : data;
    const name = Buffer.from(e.name);
    const crc = crc32(data) >>> 0;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(0, 28);
    parts.push(lh, name, body);
    meta.push({ name, crc, csize: body.length, size: data.length, offset: at, method });
    at += 30 + name.length + body.length;
  }
  const cdOffset = at;
  for (const i of opts.order ?? meta.map((_, i) => i)) {
    const m = meta[i];
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0, 8);
    ch.writeUInt16LE(m.method, 10);
    ch.writeUInt32LE(m.crc, 16);
    ch.writeUInt32LE(m.csize, 20);
    ch.writeUInt32LE(m.size, 24);
    ch.writeUInt16LE(m.name.length, 28);
    ch.writeUInt32LE(m.offset, 42);
    central.push(ch, m.name);
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  const count = (opts.order ?? meta).length;
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([...parts, cd, end]);
}
