import { ConfigError } from '../../config/load.js';
import type { RefuseLevel } from '../../policy/advisories.js';
import { fail, type Command } from './shared.js';

/**
 * `airlock image check`: judge an image's OS and Python packages against the imported advisories
 * (../image.ts does the work), and its signatures when its rule requires them. Exit 1 when a
 * platform is refused at --fail-on or the signature check refuses, 2 when the image
 * cannot be checked (one line; a configuration error is reported as such).
 */
export const image: Command = {
  summary: [
    {
      synopsis: 'airlock image check IMAGE [--config FILE] [--fail-on critical|high|medium|low|all] [--json]',
      text: [
        "judge an image's OS and Python packages against the",
        'imported advisories: oci:DIR[:TAG],',
        'docker-archive:FILE, or docker://REGISTRY/NAME:TAG',
        'through the mirror (and its signatures when the rule',
        'requires signed/attested: the signer or the refusal);',
        'exit 1 on a finding at or above --fail-on (default:',
        "the policy's level) or a signature refused, 2 if the",
        'image cannot be checked',
      ],
    },
  ],
  async run({ rest, values, configFile }) {
    const [sub, ref] = rest;
    if (sub !== 'check' || !ref) fail('usage: airlock image check IMAGE (oci:DIR[:TAG], docker-archive:FILE, docker://REGISTRY/NAME:TAG)');
    const failOn = values['fail-on'];
    if (failOn !== undefined && !['critical', 'high', 'medium', 'low', 'all', 'none'].includes(failOn))
      fail('--fail-on: expected critical, high, medium, low, all or none');
    const { checkImage, formatReport } = await import('../image.js');
    let rep;
    try {
      rep = await checkImage(configFile, ref, { failOn: failOn as RefuseLevel | undefined, repository: values.repository });
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`image check: ${(e as Error).message}`);
    }
    process.stdout.write(values.json ? JSON.stringify(rep, null, 2) + '\n' : formatReport(rep));
    if (rep.platforms.some((p) => !p.verdict.decision.allow) || rep.signature?.ok === false) process.exit(1);
  },
};
