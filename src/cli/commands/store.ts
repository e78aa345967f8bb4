import { fail, type Command, type CommandContext } from './shared.js';

/**
 * `airlock store verify [--repair]` and `airlock scrub` (store verify --repair): read every cached
 * blob back and check it against its digest (../store.ts); exit 1 if any is corrupt or missing.
 */
async function verify({ cmd, rest, values, configFile }: CommandContext): Promise<void> {
  if (cmd === 'store' && rest[0] !== 'verify') fail('usage: airlock store verify [--repair]');
  const { verifyStore } = await import('../store.js');
  const r = await verifyStore(configFile, { repair: values.repair || cmd === 'scrub' });
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    process.stdout.write(
      `checked ${r.checked} blobs (${(r.bytes / 2 ** 20).toFixed(1)} MiB): ${r.corrupt.length} do not match their digest, ${r.missing.length} missing${r.repaired && r.corrupt.length + r.missing.length ? ' (quarantined and forgotten: they are fetched and verified again on their next pull)' : ''}\n`,
    );
    for (const c of r.corrupt) process.stdout.write(`  CORRUPT sha256:${c.sha256} (hashes to ${c.got}, ${c.actual} of ${c.size} bytes)\n`);
    for (const m of r.missing) process.stdout.write(`  MISSING sha256:${m}\n`);
  }
  if (r.corrupt.length || r.missing.length) process.exitCode = 1;
}

export const store: Command = {
  summary: [
    {
      synopsis: 'airlock store verify [--config FILE] [--repair] [--json]',
      text: [
        'read every cached blob back and check it against',
        'its digest; --repair quarantines bad ones (fetched',
        'and verified again on the next pull); exit 1 if any',
      ],
    },
  ],
  run: verify,
};

export const scrub: Command = {
  summary: [
    { synopsis: 'airlock scrub [--config FILE] [--json]', text: ['store verify --repair (the server can also scrub in', 'the background: cache.scrub_rate)'] },
  ],
  run: verify,
};
