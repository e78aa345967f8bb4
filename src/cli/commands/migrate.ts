import { loadConfig } from '../../config/load.js';
import { fail, withMeta, type Command } from './shared.js';

/**
 * `airlock migrate`: bring the metadata schema up to date (opening the store does it, as serve
 * does on start), or with --from sqlite --to postgres copy the record, tokens and advisories
 * into PostgreSQL (../migrate.ts).
 */
export const migrate: Command = {
  summary: [
    {
      synopsis: 'airlock migrate [--config FILE] [--from sqlite --to postgres]',
      text: [
        'bring the metadata schema up to date (serve does it',
        'on start); --from/--to copies the record (with its',
        'chain), tokens and advisories into PostgreSQL',
      ],
    },
  ],
  async run({ values, configFile }) {
    const loaded = loadConfig(configFile);
    if (values.from || values.to) {
      if (values.from !== 'sqlite' || values.to !== 'postgres') fail('usage: airlock migrate [--from sqlite --to postgres]');
      const { moveSqliteToPostgres } = await import('../migrate.js');
      const r = await moveSqliteToPostgres(loaded);
      process.stdout.write(
        `moved ${r.pulls} pull records (the chain verifies in PostgreSQL, head ${r.head ?? 'none'}), ${r.tokens} tokens, ${r.advisories} advisories; caches refill on the next pulls\n`,
      );
      return;
    }
    // Opening the store brings its schema up to date (what serve does on start).
    await withMeta(loaded, true, async () => undefined);
    process.stdout.write(`${loaded.config.storage.meta === 'postgres' ? 'PostgreSQL' : 'SQLite'} schema is up to date\n`);
  },
};
