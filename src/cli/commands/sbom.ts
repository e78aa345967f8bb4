import { writeFileSync } from 'node:fs';
import { loadConfig } from '../../config/load.js';
import { parseTime } from '../../core/time.js';
import type { PullFilter } from '../../storage/meta-store.js';
import { VERSION } from '../../version.js';
import { fail, withMeta, type Command } from './shared.js';

/** `airlock sbom`: a CycloneDX 1.6 JSON document of what was served (../../audit/sbom.ts), to stdout or --output. */
export const sbom: Command = {
  summary: [
    {
      synopsis: 'airlock sbom    [--config FILE] [--since T] [--until T] [--client C] [--ecosystem E] [--output F]',
      text: ['CycloneDX 1.6 JSON of what was served'],
    },
  ],
  async run({ values, configFile }) {
    const loaded = loadConfig(configFile);
    await withMeta(loaded, false, async (meta) => {
      const eco = values.ecosystem as PullFilter['ecosystem'];
      if (eco && !['pypi', 'hf', 'oci'].includes(eco)) fail('--ecosystem: expected pypi, hf or oci');
      const { buildSbom } = await import('../../audit/sbom.js');
      const json = await buildSbom(meta, {
        since: parseTime(values.since, '--since'),
        until: parseTime(values.until, '--until'),
        client: values.client,
        ecosystem: eco,
        version: VERSION,
      });
      if (values.output) writeFileSync(values.output, json + '\n');
      else process.stdout.write(json + '\n');
    });
  },
};
