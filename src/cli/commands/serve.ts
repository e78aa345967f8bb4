import { loadConfig } from '../../config/load.js';
import { preflight, systemMessage } from '../../config/preflight.js';
import { mallocWarning, nodeFlagsWarning } from '../../obs/malloc.js';
import { startServer } from '../../server.js';
import { fail, type Command } from './shared.js';

/**
 * `airlock serve`: check what the server needs from the machine (preflight: one line per problem),
 * start it, and wire the signals: SIGINT/SIGTERM stop it gracefully (new connections refused,
 * transfers under way given shutdown_grace), SIGHUP reloads the policy, the advisories and the trusted root, and forgets the recorded signers kept in memory.
 */

/** Why the server could not start, as one line. */
function startError(e: unknown, listen: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') return `listen ${listen}: ${systemMessage(e)}`;
  return /^E[A-Z]+$/.test(code ?? '') ? `${systemMessage(e)}: ${(e as Error).message}` : (e as Error).message;
}

export const serve: Command = {
  summary: [{ synopsis: 'airlock serve   [--config FILE]', text: ['start the server'] }],
  async run({ configFile }) {
    const loaded = loadConfig(configFile);
    // Everything serve needs from the machine, before anything is opened: one line per problem.
    const pre = await preflight(loaded, { listen: false });
    if (pre.problems.length) fail(`cannot start: ${pre.problems.join('; ')}`, 1);
    const { airlock, stop } = await startServer(loaded).catch((e) => fail(`cannot start: ${startError(e, loaded.config.listen)}`, 1));
    for (const w of [mallocWarning(), nodeFlagsWarning()]) if (w) airlock.log.warn(w);
    let stopping = false;
    const shutdown = (sig: string) => {
      if (stopping) return;
      stopping = true;
      airlock.log.info(
        { signal: sig, graceSeconds: loaded.config.shutdown_grace },
        'shutting down: no new connections; transfers under way may finish within the grace',
      );
      stop(loaded.config.shutdown_grace * 1000).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGHUP', () => {
      // Stopping: the stores are closing.
      if (stopping) return;
      airlock.reloadPolicy();
      // Not left unhandled: a read that failed (the store unreachable) ended the process (exit 1); what is in force stays.
      const failed = (what: string) => (e: unknown) => airlock.log.error({ err: (e as Error).message }, `${what} reload failed; the one in force is kept`);
      void airlock.reloadAdvisories().catch(failed('advisories'));
      void airlock.reloadTrust().catch(failed('trusted root'));
    });
  },
};
