/**
 * The memory settings Airlock is meant to run with: glibc's allocator settings and V8's young
 * generation size (below).
 *
 * glibc's allocator settings Airlock is meant to run with (set in the Dockerfile and `npm start`).
 *
 * Why: every upstream body arrives in fresh 64 KiB socket buffers that die young; V8 frees them in
 * bulk at its next collection, and glibc, by default, hands a freed heap top above 128 KiB back to
 * the kernel at once, so the next buffers fault their pages in again. Measured on this kind of
 * machine (a VM whose memory balloon makes each fresh page cost ~20 us): a cold 1 GiB pull went
 * from 135-164 to 262-346 MiB/s and from ~80k to ~11k page faults per GiB with these settings
 * (bench/cold-peers.mjs, AB_MALLOC rows; docs/performance.md). The cost is at most 256 MiB of freed
 * heap kept for reuse instead of returned; peak RSS of a cold pull moved by under 10 MiB.
 * arena_max=1 (issue 29): every thread allocates from the one heap. By default glibc gives each
 * thread that allocates (hash and checkpoint workers, libuv's pool, V8's helpers) an arena of its
 * own, which with the trim threshold above keeps its own high-water mark: one arena took ~11-14 MB
 * off an idle server's RSS and ~10 MB off the 50 concurrent cold pulls' peak, with cold CPU per GiB
 * unchanged (bench/profile-cold.mjs side by side; docs/performance.md).
 * Node has no mallopt(), and glibc reads GLIBC_TUNABLES only when the process starts, hence an
 * environment variable rather than code.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=1';

/** A warning for the start-up log when Airlock runs on glibc without the settings, or undefined. */
export function mallocWarning(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  if (!header?.glibcVersionRuntime) return undefined;
  if ((env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.trim_threshold')) return undefined;
  return `GLIBC_TUNABLES is not set: glibc returns freed memory to the kernel at once, and cold pulls ran up to 2x slower in the benchmark; start Airlock with GLIBC_TUNABLES=${MALLOC_TUNABLES} (as the Dockerfile and npm start do; docs/performance.md)`;
}

/**
 * V8's young generation capped at 4 MiB a semi-space (Node grows it up to 16), on node's command
 * line in the Dockerfile and `npm start` (a heap size is read when the isolate is made, so it cannot
 * be set from code). Why (issue 29): young garbage, the HTTP parser's 64 KiB body copies among it,
 * waits for the next scavenge, and a young generation grown once (loading a 10,000-entry policy
 * grows it to the most) stays grown until V8's memory reducer runs, ~40 s of idle later. Measured:
 * 50 concurrent cold pulls with a 10,000-entry policy peaked at 184-189 MB with the cap against
 * 212-218 without (bench/many-cold.mjs, 4 runs each); a cold 1 GiB pull used 3.13-3.39 CPU-s
 * against 3.19-3.81 (bench/profile-cold.mjs, 6 pulls each way, alternating). A 1 MiB cap cost
 * ~1 CPU-s per cold GiB in GC (docs/performance.md).
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** A warning for the start-up log when node was started without NODE_FLAGS, or undefined. */
export function nodeFlagsWarning(execArgv: readonly string[] = process.execArgv, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (NODE_FLAGS.every((f) => given.some((g) => g.split('=')[0] === f.split('=')[0]))) return undefined;
  return `node was started without ${NODE_FLAGS.join(' ')}: V8's young generation may grow to 4x and hold garbage longer (peak memory ~30 MB higher in the benchmark); start Airlock with node ${NODE_FLAGS.join(' ')} (as the Dockerfile and npm start do; docs/performance.md)`;
}
