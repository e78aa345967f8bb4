// Issue 29: a cold reviewed Hugging Face file against the OCI cold row. The same big file is
// pulled cold as an OCI layer (/v2/) and as the LFS file of the pinned model with its sha256
// listed under scan.sha256 (reviewed: not inspected, only verified), each round through fresh
// servers, the two in alternating order, so the ratio is taken round by round on the same bytes.

/**
 * `h`: the bench's helpers { reps, startAirlock, curl, get, median, row, target, name,
 * sha256, warmup }: the file's name and sha256 (for the review list), a small blob pulled first as 1b does). Adds the reviewed row and the target; returns the per-round ratios.
 */
export async function reviewedVsOci(h) {
  const oci = [];
  const hf = [];
  const pull = async (kind) => {
    const a = await h.startAirlock(kind === 'hf' ? { reviewed: h.sha256 } : {});
    try {
      await h.get(a.manifestUrl);
      await h.curl(a.blobUrl(h.warmup));
      if (kind === 'hf') await fetch(a.hfUrl, { method: 'HEAD' });
      return await h.curl(kind === 'hf' ? a.hfUrl : a.blobUrl({ name: h.name }));
    } finally {
      await a.stop();
    }
  };
  for (let r = 0; r < h.reps; r++) {
    for (const kind of r % 2 ? ['hf', 'oci'] : ['oci', 'hf']) (kind === 'hf' ? hf : oci).push(await pull(kind));
  }
  const ratios = hf.map((x, i) => x.mibps / oci[i].mibps);
  const t = { mibps: h.median(hf.map((x) => x.mibps)), ttfbMs: h.median(hf.map((x) => x.ttfb)) * 1000 };
  h.row('cold HF LFS file, unthrottled', 'Airlock /hf/, the file reviewed (scan.sha256), paired with Airlock /v2/', {
    ...t,
    ratioVsOci: h.median(ratios),
    ratiosVsOci: ratios.map((x) => Number(x.toFixed(2))),
    ociMibps: oci.map((x) => Number(x.mibps.toFixed(0))),
  });
  h.target(
    'cold reviewed HF file >= 0.9x the OCI cold row (paired rounds)',
    ratios.every((x) => x >= 0.9),
    ratios.map((x) => `${x.toFixed(2)}x`).join(' '),
  );
  return ratios;
}
