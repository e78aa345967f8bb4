#!/usr/bin/env node
// Regenerates share/popular/{pypi,hf,oci}.txt, the popular names `airlock pin` compares new names
// against (src/names/lookalike.ts). Sources and how to refresh: share/popular/README.md.
//
//   node share/popular/refresh.mjs --pypi GITDIR --oci GITDIR --hf GITDIR [--pypi-top 10000]
//
// Each GITDIR is a clone (or bare mirror) of the source repository; the file is read at its HEAD
// with `git show`, and the repository's commit is written in the data file's header.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv
    .slice(2)
    .join(' ')
    .split('--')
    .filter(Boolean)
    .map((a) => a.trim().split(/\s+/)),
);
const git = (dir, ...a) => execFileSync('git', ['-C', dir, ...a], { encoding: 'utf8', maxBuffer: 1 << 28 });
const head = (dir) => git(dir, 'rev-parse', 'HEAD').trim();
const pep503 = (n) => n.replace(/[-_.]+/g, '-').toLowerCase();

function write(file, header, names) {
  const unique = [...new Set(names)];
  writeFileSync(join(OUT, file), [...header.map((h) => `# ${h}`), ...unique].join('\n') + '\n');
  console.log(`${file}: ${unique.length} names`);
}

if (args.pypi) {
  const top = Number(args['pypi-top'] ?? 10000);
  const j = JSON.parse(git(args.pypi, 'show', 'HEAD:top-pypi-packages.min.json'));
  const names = j.rows.slice(0, top).map((r) => pep503(r.project));
  write('pypi.txt', [`top ${top} PyPI projects by downloads in 30 days (${j.last_update}), most downloaded first, PEP 503 normalised`, `from github.com/hugovk/top-pypi-packages top-pypi-packages.min.json at ${head(args.pypi)}`], names);
}

if (args.oci) {
  const names = git(args.oci, 'ls-tree', '--name-only', 'HEAD:library')
    .split('\n')
    .filter(Boolean)
    .map((n) => `docker.io/library/${n}`);
  write('oci.txt', [`Docker Hub official images (docker.io/library/NAME), alphabetical`, `from github.com/docker-library/official-images library/ at ${head(args.oci)}`], names.sort());
}

if (args.hf) {
  // Every model and dataset named under "Top/Trending Models" and "Top/Trending Datasets" in the
  // daily newsletters, the most often listed first (datasets keep their datasets/ prefix).
  const files = git(args.hf, 'ls-tree', '-r', '--name-only', 'HEAD', 'newsletters/').split('\n').filter((f) => f.endsWith('.md'));
  const counts = new Map();
  for (const f of files) {
    let on = false;
    for (const line of git(args.hf, 'show', `HEAD:${f}`).split('\n')) {
      if (line.startsWith('## ')) on = /^## (Top|Trending) (Models|Datasets)/.test(line);
      const m = on && /\]\(https:\/\/(?:hf\.co|huggingface\.co)\/([^)\s]+)\)/.exec(line);
      if (m) counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
    }
  }
  const names = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([n]) => n);
  write('hf.txt', [`Hugging Face models and datasets listed as top or trending in ${files.length} daily newsletters, most often listed first`, `from github.com/hyeonseo2/daily-huggingface newsletters/ at ${head(args.hf)}`], names);
}
