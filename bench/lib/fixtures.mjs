// The run's fixtures: the generated files (PyPI files, a torch checkpoint, an image layer, a
// dataset shard), the loopback upstream serving them (bench/upstream.mjs) and the policy allowing them.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get } from './http.mjs';
import { startJsonChild } from './proc.mjs';

const MiB = 1 << 20;

/** Write the files and start the upstream (in this order, printing progress as before). */
export async function prepareFixtures({ ROOT, S, QUICK, DISTINCT }) {
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-'));
  const files = [{ name: 'bench_big-1.0-py3-none-any.whl', project: 'bench-big', size: S.big, seed: 1 }];
  // A small file each fresh Airlock process pulls first, so cold rows measure a running server
  // (JIT, hash worker, upstream connection pool warm), not process start-up.
  const WARMUP = { name: 'bench_warmup-1.0-py3-none-any.whl', project: 'bench-warmup', size: MiB, seed: 2 };
  files.push(WARMUP);
  for (let r = 0; r < S.reps; r++) files.push({ name: `bench_cold${r}-1.0-py3-none-any.whl`, project: `bench-cold${r}`, size: S.big, seed: 100 + r });
  for (let r = 0; r < S.reps; r++) files.push({ name: `bench_wan${r}-1.0-py3-none-any.whl`, project: `bench-wan${r}`, size: S.big, seed: 200 + r });
  files.push({ name: 'bench_coal1-1.0-py3-none-any.whl', project: 'bench-coal1', size: S.coal, seed: 300 });
  files.push({ name: 'bench_coal16-1.0-py3-none-any.whl', project: 'bench-coal16', size: S.coal, seed: 301 });
  files.push({ name: 'bench_coal3r-1.0-py3-none-any.whl', project: 'bench-coal3r', size: S.coal, seed: 302 });
  for (let i = 0; i < DISTINCT; i++) files.push({ name: `bench_d${i}-1.0-py3-none-any.whl`, project: `bench-d${i}`, size: S.distinct, seed: 400 + i });
  // Issue 14's memory case: 50 concurrent cold pulls of different files.
  const MANY = 50;
  for (let i = 0; i < MANY; i++)
    files.push({ name: `bench_m${i}-1.0-py3-none-any.whl`, project: `bench-m${i}`, size: QUICK ? 8 * MiB : 32 * MiB, seed: 600 + i });

  const OCI_CONFIG = { name: 'oci-config.json', project: 'oci-config', size: 1500, seed: 600 };
  files.push(OCI_CONFIG);
  // A real torch.save checkpoint of S.big bytes (bench/make-checkpoint.py), when torch is installed.
  let CHECKPOINT = null;
  try {
    const path = join(work, 'pytorch_model.bin');
    process.stdout.write('writing the torch checkpoint with torch.save... ');
    execFileSync('python3', [join(ROOT, 'bench', 'make-checkpoint.py'), path, String(S.big)], { stdio: ['ignore', 'ignore', 'pipe'] });
    CHECKPOINT = { name: 'pytorch_model.bin', path };
    files.push(CHECKPOINT);
    console.log('done');
  } catch (e) {
    console.log(
      `skipped (no torch here: ${String(e.stderr ?? e.message)
        .trim()
        .split('\n')
        .pop()})`,
    );
  }
  // A WebDataset-style shard of S.big bytes written by Python's tarfile (bench/make-shard.py).
  const SHARD = { name: 'shard-000000.tar', path: join(work, 'shard-000000.tar') };
  // An image layer of S.big bytes written by tar and gzip from a base-image-like root (bench/make-layer.sh).
  const LAYER = { name: 'layer.tar.gz', path: join(work, 'layer.tar.gz') };
  process.stdout.write('writing the image layer with tar and gzip... ');
  execFileSync('sh', [join(ROOT, 'bench', 'make-layer.sh'), LAYER.path, String(S.big)]);
  files.push(LAYER);
  console.log('done');
  process.stdout.write('writing the dataset shard with tarfile... ');
  execFileSync('python3', [join(ROOT, 'bench', 'make-shard.py'), SHARD.path, String(S.big)]);
  files.push(SHARD);
  console.log('done');
  process.stdout.write('preparing upstream (hashing generated files)... ');
  const up = await startJsonChild(join(ROOT, 'bench', 'upstream.mjs'), [
    JSON.stringify({
      files,
      bigPageFiles: S.bigPage,
      oci: { config: OCI_CONFIG.name, layers: [files[0].name, WARMUP.name] },
      layered: { config: OCI_CONFIG.name, layer: LAYER.name },
      hf: { file: files[0].name, checkpoint: CHECKPOINT?.name, shard: SHARD.name },
    }),
  ]);
  const UP = `http://127.0.0.1:${up.info.port}`;
  console.log('ready');
  const setRate = (bps) => get(`${UP}/-/rate?bps=${bps}`);

  // The policy: every bench project, plus filler entries up to S.policy (the scale row).
  const allow = files.map((f) => `      - { name: ${f.project} }`);
  allow.push('      - { name: bigpage }');
  for (let i = allow.length; i < S.policy; i++) allow.push(`      - { name: filler-${i}, versions: ">=1,<2" }`);

  return { work, files, WARMUP, MANY, OCI_CONFIG, CHECKPOINT, SHARD, LAYER, up, UP, setRate, allow };
}
