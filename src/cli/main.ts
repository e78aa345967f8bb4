#!/usr/bin/env node
import { ConfigError } from '../config/load.js';
import { systemMessage } from '../config/preflight.js';
import { fail, parseCommandLine, type Command } from './commands/shared.js';

/**
 * The airlock command line: parse the options, find the command in the table and run it. Each
 * command lives in its own module under commands/ (what it does, and its lines in the usage text,
 * which is built from this table in this order). Only the command asked for is loaded: with every
 * module loaded up front `airlock records` took 0.92 s and `token list` 0.90, against 0.51 and 0.59
 * with their own (the server's and pin's module graphs are large; the usage text loads them all). Errors an
 * operator can act on end as one line on stderr with exit code 2 (bad usage or configuration) or
 * 1 (the operation failed); only a bug shows a stack trace.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.js')).serve,
  check: async () => (await import('./commands/check.js')).check,
  records: async () => (await import('./commands/records.js')).records,
  pin: async () => (await import('./commands/pin.js')).pin,
  image: async () => (await import('./commands/image.js')).image,
  advisories: async () => (await import('./commands/advisories.js')).advisories,
  affected: async () => (await import('./commands/affected.js')).affected,
  sbom: async () => (await import('./commands/sbom.js')).sbom,
  audit: async () => (await import('./commands/audit.js')).audit,
  store: async () => (await import('./commands/store.js')).store,
  migrate: async () => (await import('./commands/migrate.js')).migrate,
  scrub: async () => (await import('./commands/store.js')).scrub,
  token: async () => (await import('./commands/token.js')).token,
  rescan: async () => (await import('./commands/rescan.js')).rescan,
  trust: async () => (await import('./commands/trust.js')).trust,
};

/** The column the descriptions start at in the usage text. */
const TEXT_COLUMN = 50;

async function usage(): Promise<string> {
  const lines: string[] = [];
  for (const load of Object.values(COMMANDS)) {
    const { summary } = await load();
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
    process.stdout.write((await usage()) + '\n');
    return;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? await COMMANDS[cmd]() : undefined;
  if (!command) fail(`unknown command ${JSON.stringify(cmd)}\n\n${await usage()}`);
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
  // An unknown option, one without its value, or a value that starts with a dash (--limit -5): one line.
  if ((e as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS_')) fail((e as Error).message.replace(/\s*\n\s*/g, ' '));
  // A system error (permissions, a full or read-only disk): one line, no stack trace.
  if (/^E[A-Z]+$/.test((e as { code?: string }).code ?? '')) {
    const why = systemMessage(e);
    fail(why === (e as Error).message ? why : `${why}: ${(e as Error).message}`, 1);
  }
  process.stderr.write(`airlock: unexpected error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
