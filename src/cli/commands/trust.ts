import { readFileSync, statSync } from 'node:fs';
import { loadConfig } from '../../config/load.js';
import { continuityProject } from '../../signing/continuity.js';
import { importTrustRoot, MAX_ROOT_BYTES, TrustRoots } from '../../signing/trust.js';
import { fail, withMeta, type Command } from './shared.js';

/**
 * `airlock trust import FILE`: check a Sigstore trusted_root.json (a rotation of the public-good
 * root, or a private Sigstore's) and store it in the metadata store, where every replica finds it;
 * the newest imported root wins over the shipped one. `airlock trust show` prints the root in use.
 */
export const trust: Command = {
  summary: [
    {
      synopsis: 'airlock trust import FILE [--config FILE]',
      text: ['import a Sigstore trusted_root.json (validated);', 'the newest import wins over the shipped root'],
    },
    { synopsis: 'airlock trust show [--config FILE]', text: ['the trusted root in use: version, source, age'] },
    {
      synopsis: 'airlock trust accept pypi|oci|hf PROJECT [--identity ID]',
      text: ["accept a project's new signer after review (continuity):", 'record ID, or forget the recorded one'],
    },
  ],
  async run({ rest, values, configFile }) {
    const [sub, file] = rest;
    if (sub === 'import' && file) {
      let text: string;
      try {
        if (statSync(file).size > MAX_ROOT_BYTES) fail(`trust import: ${file}: larger than ${MAX_ROOT_BYTES} bytes; expected a Sigstore trusted_root.json`);
        text = readFileSync(file, 'utf8');
      } catch (e) {
        fail(`trust import: ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const loaded = loadConfig(configFile);
      await withMeta(loaded, true, async (meta) => {
        const r = await importTrustRoot(meta, text);
        if (!r.ok) fail(`trust import: ${file}: ${r.reason}`);
        process.stdout.write(
          `imported trusted root ${r.root.version} (${r.root.cas} certificate authorit${r.root.cas === 1 ? 'y' : 'ies'}, ${r.root.tlogs} transparency log${r.root.tlogs === 1 ? '' : 's'}); ` +
            'it is used from the next start or reload (SIGHUP) of each server\n',
        );
      });
      return;
    }
    if (sub === 'show') {
      const loaded = loadConfig(configFile);
      await withMeta(loaded, true, async (meta) => {
        const roots = new TrustRoots(meta);
        const root = await roots.refresh();
        if (!root) fail(`no usable trusted root: ${roots.problem ?? 'unknown'}`, 1);
        const age = roots.ageSeconds() ?? 0;
        process.stdout.write(
          `trusted root ${root.version} (${root.source}${root.importedAt ? `, imported ${new Date(root.importedAt).toISOString()}` : ''}), age ${Math.floor(age / 86400)} days\n`,
        );
      });
      return;
    }
    if (sub === 'accept') {
      const [, eco, name] = rest;
      if (!['pypi', 'oci', 'hf'].includes(eco) || !name || rest.length > 3) fail('usage: airlock trust accept pypi|oci|hf PROJECT [--identity ID]');
      const identity = values.identity?.trim();
      if (values.identity !== undefined && !identity) fail('trust accept: --identity is empty');
      const project = continuityProject(eco, name);
      await withMeta(loadConfig(configFile), true, async (meta) => {
        const before = await meta.getSigner(eco, project);
        await meta.setSigner(eco, project, identity ? { identity, version: null } : null);
        const was = before ? `was ${before.identity}${before.version ? `, first verified on ${before.version}` : ''}` : 'none was recorded';
        process.stdout.write(
          identity
            ? `${eco} ${project}: signer ${identity} accepted (${was}); replicas use it within 10 s (at once on SIGHUP)\n`
            : `${eco} ${project}: recorded signer forgotten (${was}); the next verified pull records its signer\n`,
        );
      });
      return;
    }
    fail('usage: airlock trust import FILE | airlock trust show | airlock trust accept pypi|oci|hf PROJECT [--identity ID]');
  },
};
