import { affected as findAffected, type AffectedReport } from '../../audit/affected.js';
import { loadConfig } from '../../config/load.js';
import { fail, withMeta, type Command } from './shared.js';

/**
 * `airlock affected ID|PURL`: every pull (and every cached image) of what an advisory or a package
 * URL names (../../audit/affected.ts), as a readable report or JSON.
 */

function print(rep: AffectedReport): void {
  if (rep.advisory) {
    const a = rep.advisory;
    process.stdout.write(`${a.id}${a.aliases.length ? ` (${a.aliases.join(', ')})` : ''}: ${a.summary || 'no summary'}\n`);
    if (a.withdrawn) process.stdout.write('withdrawn: it matches nothing\n');
    else process.stdout.write(`packages: ${a.packages.join(', ') || '(none Airlock matches)'}\n`);
  }
  if (rep.images.length) {
    process.stdout.write(`${rep.images.length} image${rep.images.length === 1 ? '' : 's'} contain an affected package:\n`);
    for (const img of rep.images) {
      const names = [...img.tags, ...img.repositories.filter((r) => !img.tags.some((t) => t.startsWith(`${r}:`)))];
      process.stdout.write(`  ${img.digest}${names.length ? ` (${names.join(', ')})` : ''}: ${img.packages.map((p) => `${p.name} ${p.version}`).join(', ')}\n`);
    }
  }
  const c = rep.counts;
  process.stdout.write(`${c.pulls} pulls (${c.served} served, ${c.pulls - c.served} refused), ${c.clientsServed} clients served\n`);
  if (rep.pulls.length) process.stdout.write(['time', 'client', 'ecosystem', 'name', 'version', 'file', 'sha256', 'cache', 'decision'].join('\t') + '\n');
  for (const p of rep.pulls) {
    process.stdout.write(
      [
        new Date(p.ts).toISOString(),
        p.client,
        p.ecosystem,
        p.name,
        p.version ?? '-',
        p.filename ?? '-',
        p.sha256 ?? '-',
        p.cache,
        p.decision,
        ...(p.count != null ? [`x${p.count} until ${new Date(p.lastTs ?? p.ts).toISOString()}`] : []),
      ].join('\t') + '\n',
    );
  }
}

export const affected: Command = {
  summary: [
    {
      synopsis: 'airlock affected ID|PURL [--config FILE] [--json]',
      text: ['every pull of what an advisory (or a package URL)', 'names: client, time, file, digest, cache'],
    },
  ],
  async run({ rest, values, configFile }) {
    const [query] = rest;
    if (!query)
      fail('usage: airlock affected ID|PURL (an advisory id or alias, or pkg:pypi/NAME@VERSION, pkg:huggingface/ORG/NAME@COMMIT, pkg:oci/NAME@sha256:...)');
    const loaded = loadConfig(configFile);
    await withMeta(loaded, false, async (meta) => {
      const rep = await findAffected(meta, query, loaded.policy);
      if (values.json) process.stdout.write(JSON.stringify(rep, null, 2) + '\n');
      else print(rep);
    });
  },
};
