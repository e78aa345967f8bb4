// Section 1d. Image inventory on a cold layer: a real gzip'd layer (bench/make-layer.sh) pulled cold
// through Airlock reading it for its inventory as it passes (oci.inventory: on-fill, the default)
// and through Airlock not reading it (on-demand), alternating, so the cost is measured on the same
// bytes. Then the first pull of a gated image, which waits for the whole layer to be judged, and
// manifest requests of the judged image.
import { execFileSync } from 'node:child_process';
import { median, nginxBinary } from '../lib/proc.mjs';
import { gatedFirstPull } from '../gated-first-pull.mjs';
import { curl, get } from '../lib/http.mjs';

export async function run(ctx) {
  const { S, QUICK, WARMUP, LAYER, up, UP, startAirlock, load, row, target } = ctx;
  const direct = [];
  const through = [];
  const without = [];
  const judged = [];
  const layerDirect = `${UP}/v2/bench/layered/blobs/sha256:${up.info.files[LAYER.name].sha256}`;
  await curl(layerDirect); // the upstream's page cache holds the file for every row alike
  for (let r = 0; r < S.reps; r++) {
    direct.push(await curl(layerDirect));
    for (const [mode, out] of [
      ['on-fill', through],
      ['on-demand', without],
    ]) {
      const a = await startAirlock({ inventory: mode });
      await get(a.manifestUrl);
      await curl(a.blobUrl(WARMUP));
      await get(a.layeredManifestUrl);
      out.push(await curl(a.layerUrl));
      await a.stop();
      execFileSync('sync');
    }
    const g = await startAirlock({ gate: true });
    await get(g.manifestUrl);
    await curl(g.blobUrl(WARMUP));
    const t0 = performance.now();
    await get(g.layeredManifestUrl);
    judged.push((performance.now() - t0) / 1000);
    await g.stop();
    execFileSync('sync');
  }
  const d = median(direct.map((x) => x.mibps));
  const t = median(through.map((x) => x.mibps));
  const w = median(without.map((x) => x.mibps));
  row('cold OCI layer, inventory', 'direct from upstream /v2/', { mibps: d, ttfbMs: median(direct.map((x) => x.ttfb)) * 1000 });
  row('cold OCI layer, inventory', 'Airlock, layer not read (on-demand)', { mibps: w, ttfbMs: median(without.map((x) => x.ttfb)) * 1000, ratio: w / d });
  row('cold OCI layer, inventory', 'Airlock, inventory read as it fills (on-fill)', {
    mibps: t,
    ttfbMs: median(through.map((x) => x.ttfb)) * 1000,
    ratio: t / d,
    ratioVsNotRead: t / w,
  });
  target('cold layer with inventory within 10% of the cold pull without it', t / w >= 0.9, `${(t / w).toFixed(2)}x (${t.toFixed(0)} vs ${w.toFixed(0)} MiB/s)`);
  const pullS = median(through.map((x) => x.total));
  row('first pull of a gated image (1 layer)', 'manifest GET: layer fetched and judged', { totalS: median(judged), ratioVsLayerPull: median(judged) / pullS });
  // Manifest requests of the judged image keep their rate (the verdict is kept per policy).
  const g = await startAirlock({ gate: true });
  await get(g.layeredManifestUrl);
  const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
  for (const method of ['HEAD', 'GET']) {
    const ungated = await load(g.manifestUrl, { accept }, 32, method);
    const gated = await load(g.layeredManifestUrl, { accept }, 32, method);
    row(`small: OCI manifest ${method}, judged image`, 'Airlock, repository not gated', { rps: ungated.rps, p99Ms: ungated.p99 });
    row(`small: OCI manifest ${method}, judged image`, 'Airlock, gated and judged', { rps: gated.rps, p99Ms: gated.p99, ratio: gated.rps / ungated.rps });
    target(`manifest ${method} of a judged image >= 0.9x an ungated one`, gated.rps / ungated.rps >= 0.9, `${(gated.rps / ungated.rps).toFixed(2)}x`);
  }
  await g.stop();
  // Issue 29: the first gated pull as a client waits for it (manifest + layer) beside
  // distribution's pull-through cache, in its own processes (bench/gated-first-pull.mjs).
  const named = (name, ok, detail, extra) => target(`issue 29: ${name}`, ok, detail, extra);
  if (nginxBinary) gatedFirstPull({ quick: QUICK, sizeMiB: S.big / (1 << 20), row, target: named });
  else named('first pull of a gated image >= 0.5x distribution', null, 'nginx is not installed here');
}
