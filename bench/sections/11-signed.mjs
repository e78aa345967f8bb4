// Section 11. Signed images (issue 26): the cosign v3 fixture (a keyless attestation bundle) behind the
// referrers API of a minimal registry (bench/signed-registry.mjs), the same image in a repository
// with `require: attested` and in one without a signing rule. The first pull: a fresh server per
// pull (nothing kept from another), alternating which goes first; with the rule it fetches the
// referrers list, the bundle manifest and the bundle, and verifies offline against the pinned
// trusted root before the manifest is served. Warm GETs: two servers side by side, alternating
// rounds (the verdict is kept, so a warm request should pay nothing).
import { join } from 'node:path';
import { median } from '../lib/proc.mjs';
import { SIGNED_SUBJECT } from '../lib/servers.mjs';

export async function run(ctx) {
  const { ROOT, S, startAirlock, load, results, row, target } = ctx;
  const { startSignedRegistry, SUBJECT_DIGEST } = await import(join(ROOT, 'bench', 'signed-registry.mjs'));
  if (SUBJECT_DIGEST !== SIGNED_SUBJECT) throw new Error('section 11: subject digests differ');
  const reg = await startSignedRegistry();
  const accept = { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' };
  const path = (repo) => `/v2/sig.local/${repo}/manifests/${SIGNED_SUBJECT}`;
  const firstPull = async (repo) => {
    const a = await startAirlock({ signed: reg.url });
    const before = reg.counts.referrers ?? 0;
    const t0 = performance.now();
    const r = await fetch(a.url + path(repo), { headers: accept });
    const body = Buffer.from(await r.arrayBuffer());
    const ms = performance.now() - t0;
    await a.stop();
    if (r.status !== 200 || body.length === 0) throw new Error(`section 11: first pull of ${repo}: ${r.status} ${body.toString().slice(0, 300)}`);
    if (repo === 'signed/app' && (reg.counts.referrers ?? 0) === before) throw new Error('section 11: the signed pull did not look up the referrers');
    return ms;
  };
  const plainMs = [];
  const signedMs = [];
  for (let round = 0; round < Math.max(S.reps, 5); round++) {
    if (round % 2) {
      signedMs.push(await firstPull('signed/app'));
      plainMs.push(await firstPull('plain/app'));
    } else {
      plainMs.push(await firstPull('plain/app'));
      signedMs.push(await firstPull('signed/app'));
    }
  }
  row('signed image: first manifest pull', 'no signing rule', { ms: median(plainMs), minMs: Math.min(...plainMs), maxMs: Math.max(...plainMs) });
  row('signed image: first manifest pull', 'require: attested (fetch + verify)', {
    ms: median(signedMs),
    minMs: Math.min(...signedMs),
    maxMs: Math.max(...signedMs),
    ratio: median(signedMs) / median(plainMs),
    extraMs: median(signedMs.map((x, i) => x - plainMs[i])),
  });
  // Warm manifest GETs, side by side.
  const plainA = await startAirlock({ signed: reg.url });
  const signedA = await startAirlock({ signed: reg.url });
  const urlPlain = plainA.url + path('plain/app');
  const urlSigned = signedA.url + path('signed/app');
  const b1 = await (await fetch(urlPlain, { headers: accept })).arrayBuffer();
  const b2 = await (await fetch(urlSigned, { headers: accept })).arrayBuffer();
  if (Buffer.compare(Buffer.from(b1), Buffer.from(b2)) !== 0) throw new Error('section 11: the two servers serve different manifests');
  const refBefore = reg.counts.referrers;
  const without = [];
  const withRule = [];
  // Alternating rounds, and which goes first alternates too.
  for (let round = 0; round < Math.max(S.reps, 3); round++) {
    if (round % 2) {
      withRule.push(await load(urlSigned, accept, 32));
      without.push(await load(urlPlain, accept, 32));
    } else {
      without.push(await load(urlPlain, accept, 32));
      withRule.push(await load(urlSigned, accept, 32));
    }
  }
  if (reg.counts.referrers !== refBefore) throw new Error('section 11: warm GETs looked up the referrers again');
  const med = (xs) => ({ rps: median(xs.map((x) => x.rps)), p99Ms: median(xs.map((x) => x.p99)) });
  const paired = median(withRule.map((x, i) => x.rps / without[i].rps));
  row('signed image: warm manifest GET', 'no signing rule', med(without));
  row('signed image: warm manifest GET', 'require: attested', { ...med(withRule), ratio: med(withRule).rps / med(without).rps, ratioPaired: paired });
  results.signedWarmRounds = without.map((x, i) => ({ withoutRps: x.rps, withRuleRps: withRule[i].rps, ratio: withRule[i].rps / x.rps }));
  target('signed image warm manifest GET within 5% of the rate without a rule', paired >= 0.95, `${paired.toFixed(2)}x (per round; ${without.length} rounds)`);
  await plainA.stop();
  await signedA.stop();
  await reg.stop();
}
