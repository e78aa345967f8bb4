import { loadConfig } from '../../config/load.js';
import { ImportCutShort, importAdvisories } from '../advisories.js';
import { fail, withMeta, type Command } from './shared.js';

/** `airlock advisories import PATH`: load OSV records into the store (../advisories.ts); a running server applies them within advisories.poll seconds (or on SIGHUP). */
export const advisories: Command = {
  summary: [
    {
      synopsis: 'airlock advisories import PATH [--replace] [--config FILE]',
      text: [
        'import OSV records (a directory, a .json, or the',
        'per-ecosystem zip osv.dev exports); servers apply them;',
        'a record older than the stored copy is left out unless --replace',
      ],
    },
  ],
  async run({ rest, values, configFile }) {
    const [sub, path] = rest;
    if (sub !== 'import' || !path) fail('usage: airlock advisories import PATH [--replace]');
    const loaded = loadConfig(configFile);
    try {
      await withMeta(loaded, true, async (meta) => {
        const r = await importAdvisories(meta, path, { replace: values.replace });
        const older = r.older ? `, ${r.older} left out (older than the copy stored; --replace imports them)` : '';
        process.stdout.write(
          `read ${r.read} OSV records from ${path}: ${r.changed} new or changed, ${r.withdrawn} withdrawn (kept, never matched)${older}${r.skipped.length ? `, ${r.skipped.length} skipped` : ''}\n` +
            `running servers apply them within advisories.poll seconds (or at once on SIGHUP); policy advisories.refuse is ${loaded.policy.advisoryLevel} (MAL- records always refuse)\n`,
        );
        for (const sk of r.skipped.slice(0, 20)) process.stderr.write(`  skipped ${sk}\n`);
      });
    } catch (e) {
      if (e instanceof ImportCutShort) fail(`advisories import ${path}: ${e.message}`, 1);
      throw e;
    }
  },
};
