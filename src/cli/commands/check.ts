import { loadConfig } from '../../config/load.js';
import { preflight } from '../../config/preflight.js';
import { fail, type Command } from './shared.js';

/**
 * `airlock check`: load the configuration and the policy and run the same preflight serve runs,
 * then exit; every problem on one line (exit 2), a note when the listen address is already in use.
 */
export const check: Command = {
  summary: [{ synopsis: 'airlock check   [--config FILE]', text: ['validate the configuration and policy, then exit'] }],
  async run({ configFile }) {
    const loaded = loadConfig(configFile);
    const pre = await preflight(loaded);
    if (pre.problems.length) fail(`${loaded.configFile}: ${pre.problems.join('; ')}`);
    if (pre.inUse) process.stderr.write(`airlock: note: ${pre.inUse}\n`);
    process.stdout.write(
      `${loaded.configFile}: OK (${loaded.policy.pypi.size} PyPI allow entries, ${loaded.policy.oci.size} OCI repositories, ${loaded.policy.hf.size} Hugging Face repositories; policy in ${loaded.policyFile})\n`,
    );
  },
};
