// Section 1b. Cold pull-through, OCI: the same big file as a layer, through the /v2/ front-end, and
// as an LFS file of a pinned Hugging Face model.
import { median } from '../lib/proc.mjs';
import { curl, get } from '../lib/http.mjs';
import { reviewedVsOci } from '../hf-reviewed.mjs';

export async function run(ctx) {
  const { S, files, WARMUP, up, UP, startAirlock, row, target } = ctx;
  const f = files[0];
  const direct = [];
  const through = [];
  for (let r = 0; r < S.reps; r++) {
    direct.push(await curl(`${UP}/v2/bench/img/blobs/sha256:${up.info.files[f.name].sha256}`));
    const a = await startAirlock();
    await get(a.manifestUrl);
    await curl(a.blobUrl(WARMUP));
    through.push(await curl(a.blobUrl(f)));
    await a.stop();
  }
  const d = median(direct.map((x) => x.mibps));
  const t = median(through.map((x) => x.mibps));
  row('cold OCI layer, unthrottled', 'direct from upstream /v2/', { mibps: d, ttfbMs: median(direct.map((x) => x.ttfb)) * 1000 });
  row('cold OCI layer, unthrottled', 'Airlock /v2/ (verify + cache)', { mibps: t, ttfbMs: median(through.map((x) => x.ttfb)) * 1000, ratio: t / d });
  // Issue 29: "the OCI cold row" a cold reviewed HF file is measured against (bench/lib/issue29.mjs).
  ctx.issue29.ociCold = { mibps: t, perRound: through.map((x) => x.mibps), upstream: 'unthrottled' };
  // The same file as an LFS file of a pinned Hugging Face model.
  const hfThrough = [];
  for (let r = 0; r < S.reps; r++) {
    const a = await startAirlock();
    await get(a.manifestUrl);
    await curl(a.blobUrl(WARMUP));
    await fetch(a.hfUrl, { method: 'HEAD' });
    hfThrough.push(await curl(a.hfUrl));
    await a.stop();
  }
  const h = median(hfThrough.map((x) => x.mibps));
  row('cold HF LFS file, unthrottled', 'Airlock /hf/ (verify + cache)', { mibps: h, ttfbMs: median(hfThrough.map((x) => x.ttfb)) * 1000, ratio: h / d });
  // Issue 29: the same file reviewed (scan.sha256), paired round by round with the OCI cold pull
  // (bench/hf-reviewed.mjs); the paired ratios are the target, not the medians of two sections.
  const named = (name, ok, detail, extra) => target(`issue 29: ${name}`, ok, detail, extra);
  ctx.issue29.reviewedHfPaired = await reviewedVsOci({
    reps: S.reps,
    startAirlock,
    curl,
    get,
    median,
    row,
    target: named,
    name: f.name,
    sha256: up.info.files[f.name].sha256,
    warmup: WARMUP,
  });
}
