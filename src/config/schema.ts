import { isIP } from 'node:net';
import { z } from 'zod';
import { advisoriesSchema } from './advisories-schema.js';
import { notifySchema } from './notify-schema.js';
import { policySchema } from './policy-schema.js';

export { policySchema };

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:8080')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port out of range: expected 0 to 65535');

/** Whether `entry` is an address or a CIDR block (`10.0.0.0/8`, `fd00::/8`): the form of trusted_proxies. */
function isAddressOrCidr(entry: string): boolean {
  const [addr, bits, ...rest] = entry.split('/');
  const family = isIP(addr);
  if (family === 0 || rest.length > 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'expected an http(s) URL');

const indexUrl = httpUrl.refine((s) => s.endsWith('/'), 'expected the index URL to end with "/" (e.g. https://pypi.org/simple/)');

const hostPattern = z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/, 'expected a host name (optionally *.domain, optionally with :port)');

const ociRegistry = z
  .object({
    /** Where the registry's /v2/ API lives. */
    url: httpUrl.refine((s) => !/\/v2\/?$/.test(new URL(s).pathname), 'give the registry root, without /v2/'),
    /** Hosts the registry may redirect blob downloads to (its CDN); nothing else is fetched. */
    blob_hosts: z.array(hostPattern).default([]),
    /** Hosts allowed as the Bearer token realm besides the registry's own host. */
    auth_hosts: z.array(hostPattern).default([]),
    /** Environment variables holding upstream credentials (never written in the file). */
    username_env: z.string().optional(),
    password_env: z.string().optional(),
  })
  .strict();

/** Public registries known out of the box; a config that lists `registries` replaces this set. */
export const DEFAULT_OCI_REGISTRIES = {
  'docker.io': {
    url: 'https://registry-1.docker.io',
    blob_hosts: ['production.cloudflare.docker.com', 'production.cloudfront.docker.com'],
    auth_hosts: ['auth.docker.io'],
  },
  'ghcr.io': { url: 'https://ghcr.io', blob_hosts: ['pkg-containers.githubusercontent.com'], auth_hosts: [] },
  'quay.io': { url: 'https://quay.io', blob_hosts: ['*.quay.io'], auth_hosts: [] },
  'nvcr.io': { url: 'https://nvcr.io', blob_hosts: [], auth_hosts: [] },
};

export const configSchema = z
  .object({
    listen: hostPort.default('127.0.0.1:8080'),
    /**
     * Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For names the client: the
     * rightmost entry that is not itself trusted. Empty: the socket's peer is the client.
     */
    trusted_proxies: z.array(z.string().refine(isAddressOrCidr, 'expected an IP address or a CIDR block (10.0.0.0/8, fd00::/8)')).default([]),
    data_dir: z.string().min(1).default('./data'),
    /**
     * The URL clients reach Airlock at (e.g. https://airlock.example.com/). PyPI pages link the
     * provenance Airlock verified (PEP 740) only when it is https, as the simple API requires.
     */
    public_url: httpUrl.optional(),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Seconds transfers under way may take to finish after SIGTERM before they are cut. */
    shutdown_grace: z.number().min(0).default(10),
    pypi: z
      .object({
        upstream: indexUrl.default('https://pypi.org/simple/'),
        internal: indexUrl.optional(),
        file_hosts: z.array(z.string().regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'expected a host name, optionally with :port')).default(['files.pythonhosted.org']),
        index_ttl: z.number().int().min(0).default(600),
        max_page_bytes: z
          .number()
          .int()
          .min(1024)
          .default(64 * 1024 * 1024),
        timeout: z.number().positive().default(30),
        /**
         * The upstream's PEP 740 integrity API (provenance for require: attested rules), ending in "/".
         * Unset: derived from `upstream` (https://pypi.org/simple/ gives https://pypi.org/integrity/).
         */
        integrity_url: httpUrl.refine((s) => s.endsWith('/'), 'expected the integrity API URL to end with "/" (e.g. https://pypi.org/integrity/)').optional(),
      })
      .strict()
      .prefault({}),
    oci: z
      .object({
        /** Registry for names with no registry prefix and no ?ns= (Docker's registry-mirrors traffic). */
        default_registry: z.string().default('docker.io'),
        registries: z
          .record(z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/, 'expected a registry host name as clients write it (e.g. ghcr.io)'), ociRegistry)
          .default(DEFAULT_OCI_REGISTRIES),
        max_manifest_bytes: z
          .number()
          .int()
          .min(1024)
          .default(4 * 1024 * 1024),
        /**
         * When layers are read for image inventories: as they pass through a fill (default; no
         * second read), or only when an image is judged (the gate, image check), from the cache.
         */
        inventory: z.enum(['on-fill', 'on-demand']).default('on-fill'),
        timeout: z.number().positive().default(30),
        /**
         * The answer to a blob of an allowed repository that no approved manifest references: 403
         * DENIED (default: containerd tries its next host, the upstream itself, on a 404), or the
         * spec's 404 BLOB_UNKNOWN (issue 30; docs/images.md).
         */
        unknown_blob_status: z.union([z.literal(403), z.literal(404)], { error: 'expected 403 or 404' }).default(403),
      })
      .strict()
      .prefault({}),
    hf: z
      .object({
        /** The Hub (or another Hub-compatible server). */
        upstream: httpUrl.default('https://huggingface.co'),
        /** Hosts file downloads may be redirected to (LFS CDN, the Xet bridge); nothing else is fetched. */
        file_hosts: z
          .array(hostPattern)
          .default([
            'cdn-lfs.huggingface.co',
            'cdn-lfs-us-1.huggingface.co',
            'cdn-lfs-eu-1.huggingface.co',
            'cas-bridge.xethub.hf.co',
            'cdn-lfs.hf.co',
            'cdn-lfs-us-1.hf.co',
            'cdn-lfs-eu-1.hf.co',
          ]),
        /** Environment variable holding the one upstream service token (gated repos). */
        token_env: z.string().optional(),
        /** Largest file served. huggingface_hub refuses plain-HTTP downloads over 50 GB. */
        max_file_bytes: z.number().int().positive().default(50_000_000_000),
        /** Largest listing or metadata response accepted from upstream. */
        max_metadata_bytes: z
          .number()
          .int()
          .min(1024)
          .default(256 * 1024 * 1024),
        timeout: z.number().positive().default(30),
        /**
         * After a scanner upgrade, cached model files judged by the old scanner are judged again in
         * the background at most this many a minute (0: only on their next pull or `airlock rescan`).
         */
        rescan_per_minute: z.number().min(0).default(30),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Per front-end: anonymous pulls allowed (recorded by address), or a client token required. */
        pypi: z.enum(['anonymous', 'token']).default('anonymous'),
        hf: z.enum(['anonymous', 'token']).default('anonymous'),
        oci: z.enum(['anonymous', 'token']).default('anonymous'),
        /** The /-/ admin endpoints (records, SBOM): an admin token, or open (loopback setups, tests). */
        admin: z.enum(['token', 'open']).default('token'),
      })
      .strict()
      .prefault({}),
    /** Where metadata and blobs live (src/backends.ts picks the backends from this). */
    storage: z
      .object({
        /** sqlite: airlock.db in data_dir (the embedded default); postgres: a shared PostgreSQL, for replicas. */
        meta: z.enum(['sqlite', 'postgres']).default('sqlite'),
        /** Environment variable holding the PostgreSQL connection string (never written in the file). */
        postgres_url_env: z.string().default('AIRLOCK_POSTGRES_URL'),
        /** A schema to keep Airlock's tables in (created if absent); the connection's default when unset. */
        postgres_schema: z
          .string()
          .regex(/^[a-z_][a-z0-9_]*$/, 'expected a lower-case SQL identifier')
          .optional(),
        /** Connections per process. */
        postgres_pool: z.number().int().min(1).default(10),
        /** Seconds after which a fill lease its replica stopped renewing is taken over (PostgreSQL). */
        lease_stale: z.number().positive().default(15),
        /**
         * Replicas on PostgreSQL stream a fill under way to each other (core/peer-stream.ts): a
         * replica whose client asks for a blob another replica is filling streams it from that
         * replica as it arrives, verifying it itself, instead of waiting for the commit. Off
         * unless secret_env is set.
         */
        peers: z
          .object({
            /** Environment variable holding the fleet's shared secret (at least 32 characters; the same on every replica). */
            secret_env: z.string().optional(),
            /** How the other replicas reach this one (http://host:port); default: the listen address, when it names a host. */
            advertise: httpUrl.optional(),
          })
          .strict()
          .prefault({}),
        /** fs: blobs under data_dir (the embedded default); s3: any S3-compatible store, shared by replicas. */
        blobs: z.enum(['fs', 's3']).default('fs'),
        s3: z
          .object({
            /** The store's endpoint (MinIO, Garage, Ceph, R2...); AWS when unset. */
            endpoint: httpUrl.optional(),
            region: z.string().default('us-east-1'),
            bucket: z.string().min(3),
            /** Key prefix inside the bucket, e.g. "airlock/". */
            prefix: z.string().default(''),
            /** Path-style URLs (most S3-compatible servers want them). */
            path_style: z.boolean().default(false),
            /** Environment variables with the credentials (the SDK's own chain when they are unset). */
            access_key_env: z.string().default('AWS_ACCESS_KEY_ID'),
            secret_key_env: z.string().default('AWS_SECRET_ACCESS_KEY'),
            /** Seconds a connection to the store may sit idle (a stalled read or upload) before it is cut. */
            timeout: z.number().positive().default(30),
          })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        /** Bytes the cache may hold (0: no limit); past it the least recently used blobs are evicted. */
        max_bytes: z.number().int().min(0).default(0),
        /** Hash whole cache hits as they are served (the opt-out costs the check; README Reliability). */
        verify_hits: z.boolean().default(true),
        /**
         * Re-verify the whole store in the background at this many MiB/s (0: off; `airlock store verify`
         * runs it once). It also writes the chunk lists of blobs cached before them. 20 MiB/s is ~3% of
         * one core's SHA-256 and reads 1.7 TiB a day.
         */
        scrub_rate: z.number().min(0).default(20),
        /** Seconds between the ends of two background scrubs. */
        scrub_every: z.number().positive().default(86_400),
        /** A file larger than this share of max_bytes is served (verified) but not kept (one pull cannot flush the cache). */
        max_file_share: z.number().gt(0).max(1).default(0.5),
        /** Rotted blobs kept for inspection: at most this many bytes (0: none kept), oldest removed first. */
        quarantine_max_bytes: z
          .number()
          .int()
          .min(0)
          .default(2 ** 30),
        /** ... and for at most this many days. */
        quarantine_max_days: z.number().min(0).default(7),
        /**
         * Free bytes kept on the filesystem of the blob store (storage.blobs fs; not applied to s3):
         * least recently used blobs are evicted to keep them, and a new fill that would take the disk
         * below is refused (503) while warm hits are served. The reserve is left to the record (SQLite
         * on the same disk, which nothing evicts) and to the spool of fills under way whose size is not
         * known. 1 GiB: ~1M refusal rows, or hours of them under the refusal rate limit. 0: no reserve.
         */
        min_free_bytes: z
          .number()
          .int()
          .min(0)
          .default(2 ** 30),
      })
      .strict()
      .prefault({}),
    /**
     * Warm bodies served by something cheaper than Node, after the policy decision and the pull
     * record: nginx (X-Accel-Redirect to an internal location over the filesystem store) or the
     * object store (a redirect to a presigned URL). Offloaded hits are not hashed as they are
     * served: nginx is handed no Range (Airlock serves ranges from verified chunks) and a whole
     * file only once Airlock hashed it (core/handover.ts); the scrub covers presigned objects.
     */
    offload: z
      .object({
        mode: z.enum(['none', 'nginx', 'presigned']).default('none'),
        /** nginx's internal location aliased to <data_dir>/blobs/sha256/. */
        nginx_location: z
          .string()
          .regex(/^\/.*\/$/, 'expected a location path starting and ending with "/"')
          .default('/_airlock_blobs/'),
        /** Lifetime of a presigned URL, seconds. */
        presign_seconds: z.number().int().min(10).max(604_800).default(300),
        /**
         * nginx: a file is hashed before it is handed over unless this process hashed it within this
         * many seconds and it was not written since (0: before every handover).
         */
        recheck_after: z.number().min(0).default(600),
      })
      .strict()
      .prefault({}),
    /** What upstream downloads may cost (src/core/fill.ts FillBudget, src/core/slots.ts). */
    transfers: z
      .object({
        /** Minimum upstream rate, bytes per second averaged over rate_window; a slower body is cut (0: none). */
        min_rate: z
          .number()
          .int()
          .min(0)
          .default(32 * 1024),
        rate_window: z.number().positive().default(30),
        /** Longest a single upstream body may take, seconds (0: no limit). */
        deadline: z
          .number()
          .min(0)
          .default(4 * 3600),
        /** Seconds a download may run with no client reading it before it is cancelled (0: never). */
        abandon_after: z.number().min(0).default(2),
        /** An abandoned download with at most this many bytes left is finished instead. */
        finish_bytes: z
          .number()
          .int()
          .min(0)
          .default(16 * 1024 * 1024),
        /**
         * Seconds a client may take none of the bytes queued for it before its connection is closed
         * (nginx's send_timeout; src/http/send-watch.ts); 0: never.
         */
        send_timeout: z.number().min(0).default(60),
        /** New upstream downloads under way per client (token, or address when anonymous); 0: no limit. */
        per_client: z.number().int().min(0).default(16),
        /** Seconds a client over per_client waits for one of its own downloads to end before a 429. */
        queue_wait: z.number().positive().default(30),
        /** Connections to one upstream host, per ecosystem (src/upstream/host-slots.ts). */
        host_connections: z.number().int().min(2).default(64),
        /** Of which at most this many carry large bodies; the others are kept for pages, manifests, tokens and small files. */
        host_large: z.number().int().min(1).default(48),
        /** A file of known size up to this many bytes is a small request (never queues behind large bodies). */
        small_bytes: z
          .number()
          .int()
          .min(0)
          .default(1024 * 1024),
        /** Seconds a request waits for one of its host's connections before a 503 (0: as long as its client waits). Not a host failure. */
        host_queue_wait: z.number().min(0).default(120),
      })
      .strict()
      .refine((t) => t.host_large < t.host_connections, {
        path: ['host_large'],
        message: 'must be below transfers.host_connections: small requests (pages, manifests, tokens) need connections of their own',
      })
      .prefault({}),
    records: z
      .object({
        /** Days pull records are kept; 0 keeps them for ever. Pruning is itself a chained event. */
        retention_days: z.number().int().min(0).default(0),
        /**
         * The record's size budget (estimated bytes, airlock_record_bytes); past it the oldest rows are
         * pruned (a chained audit/prune event) and a warning is logged and shown by /-/readyz. 0: none.
         */
        max_bytes: z
          .number()
          // A number of bytes: `max_bytes: 16` meant as GiB would prune the whole record every minute.
          // Checked first, so that 0.5 (GiB) or -1 is told it is bytes too, not only "expected int".
          .refine((n) => n === 0 || n >= 1024 ** 2, {
            message: 'is a number of bytes; under 1 MiB (1048576) the record would keep fewer than ~5,000 rows: 16 GiB is 17179869184 (0: no budget)',
          })
          .int()
          .min(0)
          .default(16 * 1024 ** 3),
        /** Seconds identical refusals (client, ecosystem, name, version, code, rule) are folded into one row with a count; 0: a row each. */
        fold_window_seconds: z.number().min(0).max(86_400).default(60),
        /** Fold windows open at once at most (bounded memory); opening one more closes (writes) the oldest. */
        fold_max_windows: z.number().int().min(1).default(10_000),
        /**
         * Refusals a client (a token's name, or an anonymous client's address) may have recorded: a
         * token bucket of per_second with bursts of burst. Past it, refusals are answered 429 with
         * Retry-After and counted in one folded rate_limited row. per_second 0: no limit.
         */
        refusal_limit: z
          .object({
            per_second: z.number().min(0).default(20),
            burst: z.number().int().min(1).default(200),
            /** Clients whose allowance is remembered at most (an LRU): bounded memory whatever the number of addresses. */
            clients: z.number().int().min(1).default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Advisory feeds kept fresh by Airlock itself (issue 28; src/config/advisories-schema.ts). */
    advisories: advisoriesSchema,
    /** Alerts about newly affected artefacts (issue 28; notify-schema.ts). */
    notify: notifySchema,
    policy: policySchema.optional(),
    policy_file: z.string().optional(),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
