import type { AdvisoryStore } from './meta-store.js';

/**
 * A page of the reader of every stored advisory: at most this many records, and no more once they
 * come to PAGE_CHARS of JSON. The server re-reads them all when any changed (a feed sync, an
 * import): 20,000 records (83 MB of JSON) read, parsed and indexed at once stopped its event loop
 * for 0.9-1.2 s, and every client with it, on every change. In pages of 250 the longest stall was
 * 22-44 ms (a collection included; 500: up to 73 ms), and the whole read no slower (0.6-0.8 s
 * against 0.9-1.2 s). Records that list many versions cost more to index than their size says
 * (250 of 10 KB took 144 ms; of 100 KB, 1.85 s), so a page also stops at PAGE_CHARS: 1,500
 * records, one in ten of 50 KB, read with a longest stall of 39-60 ms against 158-427 without it.
 */
const PAGE = 250;
const PAGE_CHARS = 512 * 1024;

/**
 * Every stored advisory, parsed (an OsvRecord: storage names no policy type), a page at a time (in
 * id order), with a turn of the event loop between pages. Not one snapshot: a record changed while
 * the pages are read may be seen as it was or as it is; its change bumped the store's generation,
 * so the reader's caller, which took the generation before reading, applies it again on its next
 * look (advisories/sync.ts).
 */
export async function* advisoryPages<R>(meta: Pick<AdvisoryStore, 'advisoryPage'>, size = PAGE, chars = PAGE_CHARS, signal?: AbortSignal): AsyncGenerator<R[]> {
  // The first page from the start, not after '': an import by hand may store a record whose id is '' (read once, before 2721d80; never, after).
  for (let after: string | null = null; ;) {
    // Aborted (the feeds stopped, the store about to close): no page more.
    signal?.throwIfAborted();
    const rows = await meta.advisoryPage(after, size, chars);
    if (rows.length > 0) yield rows.map((r) => JSON.parse(r.record) as R);
    // The last page: short of both caps (one cut by its characters is followed by another).
    if (rows.length < size && rows.reduce((n, r) => n + r.record.length, 0) < chars) return;
    after = rows[rows.length - 1].id;
    await new Promise<void>((r) => setImmediate(r));
  }
}

/**
 * Rows per write transaction of advisories (a feed sync, `airlock advisories import`). One
 * transaction for a whole 20,000-record export held SQLite's write lock, and on the server's own
 * connection its event loop, for 0.3-0.75 s (1.4 s beside a running server, for an import). A
 * batch holds it for milliseconds, and the writer gives the others a turn between batches. Each
 * batch is a generation of its own: a server may apply a sync or an import in parts, never a torn record.
 */
const WRITE_BATCH = 250;
/** ...and no more than this many characters of JSON (records listing thousands of versions run to 100 KB). */
const WRITE_BATCH_CHARS = 1024 * 1024;

/** `rows` in write batches: up to WRITE_BATCH rows, stopping once they come to WRITE_BATCH_CHARS (at least one row each). */
export function* advisoryBatches<T extends { record: string }>(rows: T[], size = WRITE_BATCH, chars = WRITE_BATCH_CHARS): Generator<T[]> {
  for (let at = 0; at < rows.length;) {
    let end = at + 1;
    let n = rows[at].record.length;
    while (end < rows.length && end - at < size && n < chars) n += rows[end++].record.length;
    yield rows.slice(at, end);
    at = end;
  }
}
