import type { PullFilter, PullLog, StoredPullRecord } from './meta-store.js';

/** The most rows one listPulls answers (pull-rows.ts pullSearchSql); a search that may match more reads pages. */
export const MAX_PULL_PAGE = 100_000;

/** Rows per page of pullPages: what is held at once (a parsed row is under 1 KB). */
export const PULL_PAGE = 10_000;

/**
 * Every row matching `filter`, newest first, a page at a time. "Who pulled it", the alerts and the
 * SBOM must see every row, where one listPulls answers at most MAX_PULL_PAGE: a popular release
 * pulled by CI passes that within days. Each page starts below the last id read (`before`), so a row
 * written meanwhile (a newer id) is not read, no row is read twice, and a row pruned meanwhile is
 * not read. `filter.limit`, when given, caps the total; `filter.before` is where the first page starts.
 */
export async function* pullPages(log: Pick<PullLog, 'listPulls'>, filter: PullFilter, page = PULL_PAGE): AsyncGenerator<StoredPullRecord[]> {
  let left = filter.limit ?? Number.POSITIVE_INFINITY;
  let before = filter.before;
  let from = filter.from;
  while (left > 0) {
    const want = Math.min(page, left, MAX_PULL_PAGE);
    const rows = await log.listPulls({ ...filter, before, from, limit: want });
    if (rows.length > 0) yield rows;
    if (rows.length < want) return;
    left -= rows.length;
    before = rows[rows.length - 1].id;
    // A time window read page by page goes back by id (pullSearchSql): the page that reaches the
    // window's oldest row would read on through every older row of the record to find no more
    // (312 ms at 2,000,000 rows). The oldest matching row, asked once, is where the pages stop.
    if (filter.since !== undefined && from === undefined) {
      const [oldest] = await log.listPulls({ ...filter, before: undefined, limit: 1, oldestFirst: true });
      if (!oldest) return;
      from = oldest.id;
    }
    // The next page after the event loop's turn: SQLite reads a page synchronously, and an answer of
    // 500,000 rows read without one (the impact of an advisory, in the server) stopped it for 6.9 s.
    await new Promise((r) => setImmediate(r));
  }
}

/** Call `visit` with every row matching `filter`, newest first (pullPages). */
export async function eachPull(log: Pick<PullLog, 'listPulls'>, filter: PullFilter, visit: (r: StoredPullRecord) => void): Promise<void> {
  for await (const rows of pullPages(log, filter)) for (const r of rows) visit(r);
}
