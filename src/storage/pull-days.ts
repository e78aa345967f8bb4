import type { PullRecord } from './meta-store.js';

const DAY_MS = 86_400_000;

/** Rows per (day, ecosystem, decision) in a batch: what the running summary adds. */
export function dayTally(recs: PullRecord[]): [number, string, string, number][] {
  const m = new Map<string, [number, string, string, number]>();
  for (const r of recs) {
    const day = Math.floor(r.ts / DAY_MS) * DAY_MS;
    const k = `${day}|${r.ecosystem}|${r.decision}`;
    const t = m.get(k);
    if (t) t[3]++;
    else m.set(k, [day, r.ecosystem, r.decision, 1]);
  }
  return [...m.values()];
}
