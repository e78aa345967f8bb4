// The node flags Airlock is started with in every bench row: those the Dockerfile and `npm start`
// use (src/obs/malloc.ts NODE_FLAGS, from the build measured), or BENCH_NODE_FLAGS="<flags>" to
// measure others ("" for none).
import { join } from 'node:path';

export async function airlockNodeFlags(dist) {
  if (process.env.BENCH_NODE_FLAGS !== undefined) return process.env.BENCH_NODE_FLAGS.split(/\s+/).filter(Boolean);
  const { NODE_FLAGS } = await import(join(dist, 'obs', 'malloc.js'));
  return NODE_FLAGS ?? [];
}
