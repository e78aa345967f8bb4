import { parseArgs } from 'node:util';
import { openMeta } from '../../backends.js';
import type { LoadedConfig } from '../../config/load.js';
import type { MetaStore } from '../../storage/meta-store.js';

/**
 * What every CLI command shares: the one option grammar (node:util parseArgs; an unknown option is
 * a one-line error in main.ts), the context a command runs with, the shape of a command-table entry
 * (its lines in the usage text and its runner), and the two helpers commands use: fail (one line
 * on stderr, then exit with the given code; no stack trace) and withMeta (open the metadata store
 * for the command and close it after).
 */

/** Parse the whole command line: positionals (the command and its words) and every option any command takes. */
export function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c', default: 'config/airlock.yaml' },
      name: { type: 'string' },
      ecosystem: { type: 'string' },
      decision: { type: 'string' },
      code: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean', default: false },
      print: { type: 'boolean', default: false },
      'accept-lookalike': { type: 'boolean', default: false },
      'accept-new': { type: 'boolean', default: false },
      requirement: { type: 'string', short: 'r', multiple: true },
      file: { type: 'string', short: 'f', multiple: true },
      rewrite: { type: 'boolean', default: false },
      all: { type: 'boolean', default: false },
      client: { type: 'string' },
      admin: { type: 'boolean', default: false },
      output: { type: 'string', short: 'o' },
      'fail-on': { type: 'string' },
      repository: { type: 'string' },
      identity: { type: 'string' },
      repair: { type: 'boolean', default: false },
      replace: { type: 'boolean', default: false },
      from: { type: 'string' },
      to: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}

export type Values = ReturnType<typeof parseCommandLine>['values'];

export interface CommandContext {
  /** The command as typed (two names can share a runner: store and scrub). */
  cmd: string;
  /** The positional words after the command. */
  rest: string[];
  values: Values;
  configFile: string;
}

/**
 * One form of a command in the usage text: the synopsis (a long one on several lines, the later
 * ones indented to line up under the first) and what it does, line by line.
 */
export interface UsageEntry {
  synopsis: string | string[];
  text?: string[];
}

export interface Command {
  summary: UsageEntry[];
  run(ctx: CommandContext): Promise<void>;
}

/** One line on stderr ("airlock: ..."), then exit with code (2: bad usage or configuration; 1: the operation failed). */
export function fail(msg: string, code = 2): never {
  process.stderr.write(`airlock: ${msg}\n`);
  process.exit(code);
}

/** Open the configured metadata store for one command and close it after (create: make the data directory first). */
export async function withMeta<T>(loaded: LoadedConfig, create: boolean, fn: (meta: MetaStore) => Promise<T>): Promise<T> {
  const meta = await openMeta(loaded, { create });
  try {
    return await fn(meta);
  } finally {
    await meta.close();
  }
}
