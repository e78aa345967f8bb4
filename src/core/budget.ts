import type { Readable } from 'node:stream';

/**
 * What one upstream body may cost. A body slower than `minRate` over a window, or longer than
 * `deadlineMs` overall, is cut: a dripping upstream would otherwise hold a connection (and its
 * clients) for ever, as a chunk every few seconds never trips a between-chunks timeout. A fill
 * that no client has read for `abandonMs` is cancelled unless at most `finishBytes` are left
 * (finishing those costs less than a retry's refetch): an anonymous client that opens many cold
 * pulls and hangs up must not keep the upstream busy for nobody. A retry within the grace rejoins
 * the fill.
 */
export interface FillBudget {
  /** Bytes per second, averaged over `windowMs` (0: no minimum). */
  minRate: number;
  windowMs: number;
  /** The whole body's time limit (0: none). */
  deadlineMs: number;
  /** How long a fill may run with no reader before it is cancelled (0: never cancelled). */
  abandonMs: number;
  finishBytes: number;
}

export const DEFAULT_BUDGET: FillBudget = { minRate: 32 * 1024, windowMs: 30_000, deadlineMs: 4 * 3600_000, abandonMs: 2_000, finishBytes: 16 << 20 };

/**
 * Watch one upstream body against the budget: `cut` is called (once) when it averaged less than
 * `minRate` over a window, or ran past its deadline, but not while the fill itself has paused the
 * body because the disk is behind. Returns the stop function.
 */
export function watchBody(b: FillBudget, body: Readable, received: () => number, cut: (by: 'slow' | 'deadline', why: string) => void): () => void {
  if (b.minRate <= 0 && b.deadlineMs <= 0) return () => {};
  const started = Date.now();
  let mark = { at: started, bytes: 0 };
  const every = Math.max(20, Math.min(1000, (b.windowMs || 4000) / 4));
  const timer = setInterval(() => {
    const now = Date.now();
    if (b.deadlineMs > 0 && now - started > b.deadlineMs) {
      clearInterval(timer);
      cut('deadline', `still running after ${Math.round(b.deadlineMs / 1000)} s (transfers.deadline)`);
    } else if (b.minRate > 0 && now - mark.at >= b.windowMs) {
      const rate = (received() - mark.bytes) / ((now - mark.at) / 1000);
      if (rate < b.minRate && !body.isPaused()) {
        clearInterval(timer);
        cut(
          'slow',
          `${Math.round(rate)} bytes/s over the last ${Math.round((now - mark.at) / 1000)} s, below the minimum of ${b.minRate} (transfers.min_rate)`,
        );
        return;
      }
      mark = { at: now, bytes: received() };
    }
  }, every);
  timer.unref();
  return () => clearInterval(timer);
}

/** The abandonment grace of a fill with no reader (`abandonMs`): `fire` runs after it, off the process's liveness. */
export function abandonLater(b: FillBudget, fire: () => void): NodeJS.Timeout {
  const t = setTimeout(fire, b.abandonMs);
  t.unref();
  return t;
}
