import { createReadStream } from 'node:fs';
import { mkdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { AirlockError } from '../core/errors.js';
import { DEFAULT_QUARANTINE, quarantinedAt, quarantineExcess, SHA256_HEX, type BlobStore, type ByteRange, type QuarantineLimits } from './blob-store.js';

export interface S3BlobStoreOptions {
  endpoint?: string;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket ("airlock/"), so one bucket can hold other things. */
  prefix: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Local spool directory: fills are written and verified here, then uploaded. */
  spoolDir: string;
  /** Milliseconds a connection to the store may sit idle (a stalled read or upload) before it is cut. */
  idleTimeoutMs?: number;
  /** How much quarantine is kept (default 1 GiB, 7 days). */
  quarantine?: QuarantineLimits;
}

/** Multipart parts of 16 MiB, 4 in flight: a 1 GiB blob is 64 parts, ~64 MiB of buffers at most. */
const PART_SIZE = 16 << 20;
const QUEUE_SIZE = 4;

/**
 * Blobs in any S3-compatible store (AWS SDK v3). A blob appears at its content address only once
 * verified: the fill's verified, fsynced spool file is uploaded (multipart above one part) and S3
 * makes an object visible only when its upload completes, so no partial object is ever at a final
 * key. A missing object is a miss (NOT_FOUND: the caller forgets it and fetches again); bytes that
 * no longer match are caught where every store's are (hits are hashed as served, the scrub).
 */
export class S3BlobStore implements BlobStore {
  readonly spoolDir: string;

  private constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    spoolDir: string,
    private readonly quarantineLimits: QuarantineLimits = DEFAULT_QUARANTINE,
  ) {
    this.spoolDir = spoolDir;
  }

  static async create(o: S3BlobStoreOptions, opts: { cleanSpool?: boolean } = {}): Promise<S3BlobStore> {
    const s3 = new S3Client({
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      credentials: o.credentials,
      // An idle limit, not a total one: a 50 GB blob may take long, a silent store may not.
      requestHandler: { connectionTimeout: 5_000, socketTimeout: o.idleTimeoutMs ?? 30_000 },
    });
    if (opts.cleanSpool !== false) await rm(o.spoolDir, { recursive: true, force: true });
    await mkdir(o.spoolDir, { recursive: true });
    return new S3BlobStore(s3, o.bucket, o.prefix, o.spoolDir, o.quarantine);
  }

  private key(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new AirlockError('BAD_REQUEST', `not a sha256 digest: ${JSON.stringify(sha256)}`);
    return `${this.prefix}blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  async stat(sha256: string): Promise<{ size: number } | null> {
    try {
      const r = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) }));
      return { size: r.ContentLength ?? 0 };
    } catch (e) {
      if (isMissing(e)) return null;
      throw storeError(e);
    }
  }

  async open(sha256: string, range?: ByteRange): Promise<Readable> {
    try {
      const r = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(sha256), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      return r.Body as Readable;
    } catch (e) {
      if (isMissing(e)) throw new AirlockError('NOT_FOUND', `blob sha256:${sha256} is not in the store`);
      throw storeError(e);
    }
  }

  async putFile(sha256: string, localPath: string): Promise<void> {
    try {
      await new Upload({
        client: this.s3,
        params: {
          Bucket: this.bucket,
          Key: this.key(sha256),
          Body: createReadStream(localPath, { highWaterMark: 1 << 20 }),
          ContentType: 'application/octet-stream',
        },
        partSize: PART_SIZE,
        queueSize: QUEUE_SIZE,
        leavePartsOnError: false,
      }).done();
    } catch (e) {
      throw storeError(e);
    }
    await unlink(localPath).catch(() => {});
  }

  async delete(sha256: string): Promise<void> {
    try {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) }));
    } catch (e) {
      if (!isMissing(e)) throw storeError(e);
    }
  }

  /** A GET URL signed for `seconds` (offload.mode: presigned): the client reads the verified object itself. */
  async presign(sha256: string, seconds: number): Promise<string> {
    return getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) }), { expiresIn: seconds });
  }

  /** Copied to <prefix>quarantine/<hex>.<ms>, then removed from its content address. */
  async quarantine(sha256: string): Promise<string | null> {
    const to = `${this.prefix}quarantine/${sha256}.${Date.now()}`;
    try {
      await this.s3.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: `${this.bucket}/${this.key(sha256)}` }));
    } catch (e) {
      if (isMissing(e)) return null;
      throw storeError(e);
    }
    await this.delete(sha256);
    const removed = await this.pruneQuarantine();
    return removed.includes(to) ? null : `s3://${this.bucket}/${to}`;
  }

  /** Remove what the quarantine limits no longer allow (oldest first); returns the keys removed. */
  async pruneQuarantine(now = Date.now()): Promise<string[]> {
    const entries: { key: string; size: number; at: number }[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}quarantine/`, ContinuationToken: token }));
        for (const o of r.Contents ?? [])
          if (o.Key) entries.push({ key: o.Key, size: o.Size ?? 0, at: quarantinedAt(o.Key) || (o.LastModified?.getTime() ?? now) });
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      const out = quarantineExcess(entries, this.quarantineLimits, now);
      for (const e of out) await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: e.key }));
      return out.map((e) => e.key);
    } catch (e) {
      throw storeError(e);
    }
  }
}

function isMissing(e: unknown): boolean {
  const x = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return x.name === 'NotFound' || x.name === 'NoSuchKey' || x.$metadata?.httpStatusCode === 404;
}

function storeError(e: unknown): AirlockError {
  if (e instanceof AirlockError) return e;
  return new AirlockError('INTERNAL', `S3 store: ${(e as Error).name ?? 'error'}: ${(e as Error).message}`, { cause: e });
}

/** The spool directory of an S3 store: in the data directory (local disk, fills are spooled here). */
export const s3SpoolDir = (dataDir: string): string => join(dataDir, 'spool');
