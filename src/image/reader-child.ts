/**
 * The image-layer reader as a child process (started by reader-pool.ts, one at the lowest CPU
 * priority for layers nobody waits for, one at normal priority for the image gate's): it follows
 * fills' spool files as the parent reports their progress and answers with each layer's facts.
 * Decompressing a GiB layer costs ~1.2 s of CPU on a quiet machine; at idle priority it takes what
 * the transfers leave, so clients' pulls keep their speed (bench row "cold OCI layer, inventory").
 */
import { FileFollower } from './follow.js';
import { readLayer } from './layer.js';

type Message =
  { type: 'start'; id: number; path: string; size: number; label: string } | { type: 'progress'; id: number; upTo: number } | { type: 'abort'; id: number };

const jobs = new Map<number, FileFollower>();

process.on('message', (m: Message) => {
  if (m.type === 'start') {
    const follower = new FileFollower(m.path, m.size);
    jobs.set(m.id, follower);
    follower
      .decompressed()
      .then(({ body, gunzipped }) => {
        // The spool file is open: the fill may rename it into the store now.
        process.send!({ type: 'opened', id: m.id });
        return readLayer(body, m.label, gunzipped);
      })
      .then(
        (facts) => process.send!({ type: 'done', id: m.id, facts }),
        (e: Error) => process.send!({ type: 'error', id: m.id, message: e.message }),
      )
      .finally(() => jobs.delete(m.id));
  } else if (m.type === 'progress') {
    jobs.get(m.id)?.progress(m.upTo);
  } else if (m.type === 'abort') {
    jobs.get(m.id)?.abort(new Error('the fill failed'));
  }
});
process.on('disconnect', () => process.exit(0));
