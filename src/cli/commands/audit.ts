import { loadConfig } from '../../config/load.js';
import { verifyChain } from '../../core/chain.js';
import { fail, withMeta, type Command } from './shared.js';

/** `airlock audit verify`: walk the hash-chained pull record and name the first altered, inserted or deleted row (exit 1). */
export const audit: Command = {
  summary: [
    { synopsis: 'airlock audit verify [--config FILE] [--json]', text: ['walk the hash-chained record; name the first', 'altered, inserted or deleted row'] },
  ],
  async run({ rest, values, configFile }) {
    if (rest[0] !== 'verify') fail('usage: airlock audit verify');
    const loaded = loadConfig(configFile);
    await withMeta(loaded, false, async (meta) => {
      const rep = await verifyChain(meta);
      if (values.json) process.stdout.write(JSON.stringify(rep, null, 2) + '\n');
      else if (rep.problem) process.stdout.write(`BROKEN at row ${rep.problem.id}: ${rep.problem.message}\n`);
      else
        process.stdout.write(
          `OK: ${rep.rows} records, chain intact${rep.unchained ? ` (${rep.unchained} older rows predate the chain)` : ''}; head ${rep.head ?? '(empty)'}\n`,
        );
      if (rep.problem) process.exitCode = 1;
    });
  },
};
