import { SCANNER_VERSION } from '../../scan/index.js';
import { rescan as rescanFiles } from '../rescan.js';
import type { Command } from './shared.js';

/** `airlock rescan`: re-judge cached model files with this scanner version (../rescan.ts), with a progress bar on stderr. */
export const rescan: Command = {
  summary: [
    {
      synopsis: 'airlock rescan  [--config FILE] [--all] [--json]',
      text: ['re-judge cached model files with this scanner', 'version (--all: every inspected file)'],
    },
  ],
  async run({ values, configFile }) {
    const tty = process.stderr.isTTY;
    const res = await rescanFiles(configFile, {
      all: values.all,
      progress: (done, total) => {
        const width = 30;
        const filled = total ? Math.round((done / total) * width) : width;
        const bar = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}`;
        if (tty) process.stderr.write(`\r${bar}${done === total ? '\n' : ''}`);
        else if (done === total || done % 100 === 0) process.stderr.write(`${bar}\n`);
      },
    });
    if (values.json) {
      process.stdout.write(JSON.stringify(res, null, 2) + '\n');
      return;
    }
    process.stdout.write(
      `rescanned ${res.rescanned} of ${res.total} files with ${SCANNER_VERSION}${res.missing ? ` (${res.missing} no longer cached)` : ''}${res.corrupt ? ` (${res.corrupt} corrupt on disk: quarantined, fetched again on their next pull)` : ''}; ${res.changed.length} changed\n`,
    );
    for (const ch of res.changed) process.stdout.write(`  sha256:${ch.sha256} ${ch.format}\n    before: ${ch.before}\n    after:  ${ch.after}\n`);
  },
};
