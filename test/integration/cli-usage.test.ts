import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';

/**
 * The usage text is built from the command table (src/cli/main.ts, one module per command under
 * src/cli/commands/): every command is listed and every listed command runs, descriptions line up
 * in one column, and an unknown command is a one-line error followed by the usage, exit 2.
 */
describe('airlock --help', () => {
  it('lists every command in one aligned layout, and an unknown command gets it with exit 2', async () => {
    const help = await airlockCli(['--help']);
    expect(help.code).toBe(0);
    const lines = help.stdout.split('\n');
    expect(lines[0]).toBe('airlock: an approved internal registry mirror for PyPI, Hugging Face and OCI');
    expect(lines.at(-2)).toBe('--config defaults to config/airlock.yaml.');
    const listed = new Set(lines.filter((l) => l.startsWith('  airlock ')).map((l) => l.split(/\s+/)[2]));
    expect([...listed]).toEqual([
      'serve',
      'check',
      'records',
      'pin',
      'image',
      'advisories',
      'affected',
      'sbom',
      'audit',
      'store',
      'migrate',
      'scrub',
      'token',
      'rescan',
      'trust',
    ]);
    // Every command module is in the table (store.ts holds store and scrub; shared.ts is no command).
    const modules = readdirSync(new URL('../../src/cli/commands/', import.meta.url)).map((f) => f.replace(/\.ts$/, ''));
    expect(modules.filter((m) => m !== 'shared').every((m) => listed.has(m))).toBe(true);
    // A description beside a synopsis, or on a line of its own, starts in column 50.
    expect(help.stdout).toContain('  airlock serve   [--config FILE]                 start the server\n');
    expect(help.stdout).toContain('  airlock scrub [--config FILE] [--json]          store verify --repair');
    for (const l of lines.filter((l) => /^ {20,}\S/.test(l))) expect(l.search(/\S/)).toBe(50);

    const unknown = await airlockCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split('\n')[0]).toBe('airlock: unknown command "frobnicate"');
    expect(unknown.stderr).toContain('  airlock token create --name NAME [--admin]      issue a client token');
    // A name every object has is no command either.
    expect((await airlockCli(['constructor'])).code).toBe(2);
  });
});
