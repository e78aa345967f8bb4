// Policy evaluation cost, in this process: 10 vs 10,000 entries (runs whatever --only says).
import { join } from 'node:path';

export async function run(ctx) {
  const { ROOT, S, row, target } = ctx;
  const { Policy } = await import(join(ROOT, 'dist', 'policy', 'index.js'));
  const mk = (n) => new Policy({ pypi: { allow: Array.from({ length: n }, (_, i) => ({ name: `pkg-${i}`, versions: '>=1,<2' })) } }).pypi;
  const cost = (p, n) => {
    const N = 200_000;
    for (let i = 0; i < 10_000; i++) p.decideFile(`pkg-${i % n}`, '1.5', undefined);
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) p.decideFile(`pkg-${i % n}`, '1.5', undefined);
    return Number(process.hrtime.bigint() - t) / N;
  };
  const small = cost(mk(10), 10);
  const large = cost(mk(S.policy), S.policy);
  row('scale: policy decideFile', '10 entries', { nsPerDecision: small });
  row('scale: policy decideFile', `${S.policy} entries`, { nsPerDecision: large, ratio: large / small });
  // A linear scan would cost 1000x; a map lookup stays flat (the residue is cache misses).
  target(
    `policy evaluation O(1) in entries (${S.policy / 10}x the entries cost < 3x)`,
    large / small < 3,
    `${(large / small).toFixed(2)}x (${small.toFixed(0)} vs ${large.toFixed(0)} ns)`,
  );
}
