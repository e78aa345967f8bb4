import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import type { QuarantineLimits } from '../../src/storage/blob-store.js';
import { blobStoreContract } from '../contract/blob-store.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

/** The S3 blob store held to the BlobStore contract the filesystem store passes, on s3rver. */
let s3: TestS3;
let seq = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.stop();
});
const fresh = (opts: { quarantine?: QuarantineLimits } = {}) =>
  S3BlobStore.create({
    ...opts,
    endpoint: s3.endpoint,
    region: 'us-east-1',
    bucket: s3.bucket,
    prefix: `contract-${seq++}/`,
    forcePathStyle: true,
    credentials: s3.credentials,
    spoolDir: mkdtempSync(join(tmpdir(), 'airlock-s3spool-')),
  });

blobStoreContract('S3 (s3rver)', fresh);

describe('S3 blob store', () => {
  it('uploads a blob larger than one part as a multipart upload, and reads ranges across parts', async () => {
    const store = await fresh();
    const bytes = randomBytes((16 << 20) * 2 + 12345);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const tmp = join(store.spoolDir, `${sha}.part`);
    writeFileSync(tmp, bytes);
    await store.putFile(sha, tmp);
    expect(await store.stat(sha)).toEqual({ size: bytes.length });
    const read = async (start: number, end: number) => {
      const parts: Buffer[] = [];
      for await (const c of await store.open(sha, { start, end })) parts.push(c as Buffer);
      return Buffer.concat(parts);
    };
    const mid = 16 << 20;
    expect((await read(mid - 10, mid + 9)).equals(bytes.subarray(mid - 10, mid + 10))).toBe(true);
    const all: Buffer[] = [];
    for await (const c of await store.open(sha)) all.push(c as Buffer);
    expect(createHash('sha256').update(Buffer.concat(all)).digest('hex')).toBe(sha);
  }, 60_000);
});
