import { Authenticator, TOKEN_NAME } from '../../auth/tokens.js';
import { loadConfig } from '../../config/load.js';
import type { MetaStore } from '../../storage/meta-store.js';
import { fail, withMeta, type Command, type Values } from './shared.js';

/**
 * `airlock token create|list|revoke`: client tokens. A new token's secret is printed once (stdout,
 * so it can be captured) and stored only as a hash (../../auth/tokens.ts); a revoked token is
 * refused from then on.
 */

async function create(meta: MetaStore, values: Values): Promise<void> {
  const name = values.name;
  if (!name || !TOKEN_NAME.test(name)) {
    fail('--name: expected a token name (letters, digits, ".", "_", "-"; up to 64 characters), e.g. --name ci-runner');
  }
  if ((await meta.listTokens()).some((t) => t.name === name && t.revokedAt === null))
    fail(`a live token named ${name} already exists (revoke it first, or choose another name)`);
  const secret = await new Authenticator(meta).create(name, values.admin!);
  process.stderr.write(`created ${values.admin ? 'admin ' : ''}token ${name}; it is shown once and stored only as a hash:\n`);
  process.stdout.write(`${secret}\n`);
}

async function list(meta: MetaStore): Promise<void> {
  for (const t of await meta.listTokens()) {
    process.stdout.write(
      [
        t.name,
        t.admin ? 'admin' : 'client',
        new Date(t.createdAt).toISOString(),
        t.revokedAt ? `revoked ${new Date(t.revokedAt).toISOString()}` : 'active',
      ].join('\t') + '\n',
    );
  }
}

export const token: Command = {
  summary: [
    { synopsis: 'airlock token create --name NAME [--admin]', text: ['issue a client token (printed once; stored hashed)'] },
    { synopsis: 'airlock token list | airlock token revoke NAME' },
  ],
  async run({ rest, values, configFile }) {
    const [sub, arg] = rest;
    const loaded = loadConfig(configFile);
    await withMeta(loaded, true, async (meta) => {
      if (sub === 'create') await create(meta, values);
      else if (sub === 'list') await list(meta);
      else if (sub === 'revoke' && arg) {
        if (!(await meta.revokeToken(arg))) fail(`no active token named ${arg}`);
        process.stdout.write(`revoked ${arg}; it is refused from now on\n`);
      } else fail('usage: airlock token create --name NAME [--admin] | token list | token revoke NAME');
    });
  },
};
