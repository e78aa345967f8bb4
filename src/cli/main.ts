#!/usr/bin/env node
import { ConfigError } from '../config/load.js';
import { systemMessage } from '../config/preflight.js';
import { advisories } from './commands/advisories.js';
import { affected } from './commands/affected.js';
import { audit } from './commands/audit.js';
import { check } from './commands/check.js';
import { image } from './commands/image.js';
import { migrate } from './commands/migrate.js';
import { pin } from './commands/pin.js';
import { records } from './commands/records.js';
import { rescan } from './commands/rescan.js';
import { sbom } from './commands/sbom.js';
import { serve } from './commands/serve.js';
import { fail, parseCommandLine, type Command } from './commands/shared.js';
import { scrub, store } from './commands/store.js';
import { token } from './commands/token.js';
import { trust } from './commands/trust.js';

/**
 * The airlock command line: parse the options, find the command in the table and run it. Each
 * command lives in its own module under commands/ (what it does, and its lines in the usage text,
 * which is built from this table in this order). Errors an operator can act on end as one line on
 * stderr with exit code 2 (bad usage or configuration) or 1 (the operation failed); only a bug
 * shows a stack trace.
 */
const COMMANDS: Record<string, Command> = { serve, check, records, pin, image, advisories, affected, sbom, audit, store, migrate, scrub, token, rescan, trust };

/** The column the descriptions start at in the usage text. */
const TEXT_COLUMN = 50;

function usage(): string {
  const lines: string[] = [];
  for (const { summary } of Object.values(COMMANDS)) {
    for (const { synopsis, text = [] } of summary) {
      const syn = (Array.isArray(synopsis) ? synopsis : [synopsis]).map((s) => `  ${s}`);
      const rest = [...text];
      // A short one-line synopsis takes the first line of the text beside it.
      if (syn.length === 1 && rest.length && syn[0].length < TEXT_COLUMN - 1) syn[0] = syn[0].padEnd(TEXT_COLUMN) + rest.shift();
      lines.push(...syn, ...rest.map((t) => ' '.repeat(TEXT_COLUMN) + t));
    }
  }
  return `airlock: an approved internal registry mirror for PyPI, Hugging Face and OCI\n\nusage:\n${lines.join('\n')}\n\n--config defaults to config/airlock.yaml.`;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(argv);
  const [cmd, ...rest] = positionals;
  if (values.help || !cmd) {
    process.stdout.write(usage() + '\n');
    return;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) fail(`unknown command ${JSON.stringify(cmd)}\n\n${usage()}`);
  await command.run({ cmd, rest, values, configFile: values.config! });
}

// `airlock affected ... | head`: a closed pipe ends the output, not the program with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).catch((e) => {
  if (e instanceof ConfigError) fail(e.message);
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string' && (e as Error).name === 'AirlockError') {
    fail((e as Error).message);
  }
  if ((e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') fail((e as Error).message);
  // A system error (permissions, a full or read-only disk): one line, no stack trace.
  if (/^E[A-Z]+$/.test((e as { code?: string }).code ?? '')) fail(`${systemMessage(e)}: ${(e as Error).message}`, 1);
  process.stderr.write(`airlock: unexpected error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
