import { readFileSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { startAirlock, type TestAirlock } from './airlock.js';
import { FakeHub, hfUpstream, type HubFile } from './fake-hub.js';

/** The real-world corpus (test/corpus): files written by the real libraries, with reference verdicts. */
export const corpus = JSON.parse(readFileSync(new URL('../corpus/verdicts.json', import.meta.url), 'utf8')) as {
  judge: Record<string, string>;
  files: Record<string, { verdict: 'serve' | 'refuse'; judge: string; sha256: string }>;
};

export const corpusFile = (rel: string) => readFileSync(new URL(`../corpus/real/${rel}`, import.meta.url));

/** Corpus paths with this reference verdict, datasets (archives) or the rest. */
export const corpusPick = (verdict: 'serve' | 'refuse', datasets: boolean) =>
  Object.entries(corpus.files)
    .filter(([rel, v]) => v.verdict === verdict && rel.startsWith('datasets/') === datasets)
    .map(([rel]) => rel);

/** Git files are what the Hub keeps out of LFS: small JSON; everything else is an LFS file. */
const asHub = (rels: string[]): HubFile[] => rels.map((rel) => ({ path: rel, bytes: corpusFile(rel), lfs: !rel.endsWith('.json') }));

/**
 * The corpus as four pinned repositories on a fake Hub, behind an Airlock with the default scan
 * policy: corpus/checkpoints and corpus/data (datasets) hold what the judge serves,
 * corpus/refused (hf.allow[1]) and corpus/poisoned (datasets) what it refuses.
 */
export async function corpusMirror(hub: FakeHub): Promise<TestAirlock> {
  const models = hub.commit('model', 'corpus/checkpoints', asHub(corpusPick('serve', false)));
  const refused = hub.commit('model', 'corpus/refused', asHub(corpusPick('refuse', false)));
  const data = hub.commit('dataset', 'corpus/data', asHub(corpusPick('serve', true)));
  const poisoned = hub.commit('dataset', 'corpus/poisoned', asHub(corpusPick('refuse', true)));
  return startAirlock(`
${hfUpstream(hub)}policy:
  hf:
    allow:
      - { repo: corpus/checkpoints, refs: { main: "${models}" } }
      - { repo: corpus/refused, refs: { main: "${refused}" } }
      - { repo: corpus/data, type: dataset, refs: { main: "${data}" } }
      - { repo: corpus/poisoned, type: dataset, refs: { main: "${poisoned}" } }
`);
}

/** For a describe block: a fake Hub with the corpus and an Airlock in front of it, started before and stopped after. Returns the Airlock getter. */
export function useCorpusMirror(): () => TestAirlock {
  const hub = new FakeHub();
  let a: TestAirlock | undefined;
  beforeAll(async () => {
    await hub.start();
    a = await corpusMirror(hub);
  });
  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });
  return () => a!;
}
