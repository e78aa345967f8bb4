/**
 * The longest time the event loop did not turn while `fn` ran: a timer every millisecond, and one
 * more tick after the work (a stretch at the very end is only seen by a tick after it).
 */
export async function longestStall<T>(fn: () => Promise<T>): Promise<{ value: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const t = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 1);
  try {
    const value = await fn();
    await new Promise((r) => setTimeout(r, 10));
    return { value, stallMs };
  } finally {
    clearInterval(t);
  }
}
