/**
 * Tars written byte by byte, for the attacks no tar tool writes: a header's fields as given (a
 * size field's 12 bytes as written, any magic or type flag), its checksum computed.
 */
const block = (n: number) => Math.ceil(n / 512) * 512;
export const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc(block(b.length) - b.length)]);
export const END = Buffer.alloc(1024);

export interface Hdr {
  name: string | Buffer;
  size?: number;
  /** The 12 bytes of the size field as written, for sizes readers parse differently. */
  sizeField?: string;
  type?: string;
  linkname?: string;
  /** 'ustar' (POSIX), 'gnu' or 'none' (V7: Python's tarfile never looks at the magic). */
  magic?: 'ustar' | 'gnu' | 'none';
}

export function header({ name, size = 0, sizeField, type = '0', linkname = '', magic = 'ustar' }: Hdr): Buffer {
  const h = Buffer.alloc(512);
  (typeof name === 'string' ? Buffer.from(name, 'latin1') : name).copy(h, 0);
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(sizeField ?? `${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write(linkname, 157, 'latin1');
  if (magic === 'ustar') h.write('ustar\x0000', 257, 'latin1');
  if (magic === 'gnu') h.write('ustar  \0', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

export const member = (h: Hdr, data: Buffer) => Buffer.concat([header({ size: data.length, ...h }), padded(data)]);

/** PAX records "<len> <key>=<value>\n". */
export function paxRecords(records: [string, string][]): string {
  let s = '';
  for (const [k, v] of records) {
    const rest = ` ${k}=${v}\n`;
    let n = rest.length + 1;
    while (String(n).length + rest.length !== n) n++;
    s += `${n}${rest}`;
  }
  return s;
}

/** An extended ('x') or global ('g') header and its records. */
export const pax = (records: [string, string][], type = 'x') => member({ name: 'PaxHeader', type }, Buffer.from(paxRecords(records), 'utf8'));
