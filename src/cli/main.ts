#!/usr/bin/env node
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type LoadedConfig } from '../config/load.js';
import { parseTime } from '../core/time.js';
import { startServer } from '../server.js';
import { mallocWarning } from '../obs/malloc.js';
import { preflight, systemMessage } from '../config/preflight.js';
import { openMeta } from '../backends.js';
import type { MetaStore } from '../storage/meta-store.js';
import type { PullFilter } from '../storage/meta-store.js';
import type { RefuseLevel } from '../policy/advisories.js';
import { rescan } from './rescan.js';
import { verifyChain } from '../core/chain.js';
import { Authenticator, TOKEN_NAME } from '../auth/tokens.js';
import { importAdvisories } from './advisories.js';
import { affected } from '../audit/affected.js';
import { VERSION } from '../version.js';
import { SCANNER_VERSION } from '../scan/index.js';
import { resolveHfPin, resolveOciPin, resolvePypiPin, writeHfPin, writeOciPin, writePypiPin } from './pin.js';

const USAGE = `airlock: an approved internal registry mirror for PyPI, Hugging Face and OCI

usage:
  airlock serve   [--config FILE]                 start the server
  airlock check   [--config FILE]                 validate the configuration and policy, then exit
  airlock records [--config FILE] [--name N] [--ecosystem E] [--decision allow|deny]
                  [--since TIME] [--until TIME] [--limit N] [--json]
                                                  list pull records (newest first)
  airlock pin pypi 'NAME==VERSION' [--config FILE] [--print]
                                                  resolve a release upstream and add it, with its
                                                  file hashes, to the policy (comments are kept)
  airlock pin oci REGISTRY/NAME:TAG [--config FILE] [--print]
                                                  resolve a tag upstream to its manifest digest and
                                                  pin it (tag alias + digest) in the policy; where
                                                  the image gate applies, judge the image now
  airlock pin oci REGISTRY/NAME@sha256:DIGEST     check the digest upstream and pin it
  airlock pin hf [datasets/]REPO@REVISION [--config FILE] [--print]
                                                  resolve a branch or tag on the Hub to its commit
                                                  and pin it (ref alias + commit) in the policy
  airlock image check IMAGE [--config FILE] [--fail-on critical|high|medium|low|all] [--json]
                                                  judge an image's OS and Python packages against the
                                                  imported advisories: oci:DIR[:TAG],
                                                  docker-archive:FILE, or docker://REGISTRY/NAME:TAG
                                                  through the mirror; exit 1 on a finding at or above
                                                  --fail-on (default: the policy's level), 2 if the
                                                  image cannot be checked
  airlock advisories import PATH [--config FILE]  import OSV records (a directory, a .json, or the
                                                  per-ecosystem zip osv.dev exports); SIGHUP applies
  airlock affected ID|PURL [--config FILE] [--json]
                                                  every pull of what an advisory (or a package URL)
                                                  names: client, time, file, digest, cache
  airlock sbom    [--config FILE] [--since T] [--until T] [--client C] [--ecosystem E] [--output F]
                                                  CycloneDX 1.6 JSON of what was served
  airlock audit verify [--config FILE] [--json]   walk the hash-chained record; name the first
                                                  altered, inserted or deleted row
  airlock store verify [--config FILE] [--repair] [--json]
                                                  read every cached blob back and check it against
                                                  its digest; --repair quarantines bad ones (fetched
                                                  and verified again on the next pull); exit 1 if any
  airlock migrate [--config FILE] [--from sqlite --to postgres]
                                                  bring the metadata schema up to date (serve does it
                                                  on start); --from/--to copies the record (with its
                                                  chain), tokens and advisories into PostgreSQL
  airlock scrub [--config FILE] [--json]           store verify --repair (the server can also scrub in
                                                  the background: cache.scrub_rate)
  airlock token create --name NAME [--admin]      issue a client token (printed once; stored hashed)
  airlock token list | airlock token revoke NAME
  airlock rescan  [--config FILE] [--all] [--json]
                                                  re-judge cached model files with this scanner
                                                  version (--all: every inspected file)

--config defaults to config/airlock.yaml.`;

/** Open the configured metadata store for one command and close it after (create: make the data directory first). */
async function withMeta<T>(loaded: LoadedConfig, create: boolean, fn: (meta: MetaStore) => Promise<T>): Promise<T> {
  const meta = await openMeta(loaded, { create });
  try {
    return await fn(meta);
  } finally {
    await meta.close();
  }
}

/** Why the server could not start, as one line. */
function startError(e: unknown, listen: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') return `listen ${listen}: ${systemMessage(e)}`;
  return /^E[A-Z]+$/.test(code ?? '') ? `${systemMessage(e)}: ${(e as Error).message}` : (e as Error).message;
}

function fail(msg: string, code = 2): never {
  process.stderr.write(`airlock: ${msg}\n`);
  process.exit(code);
}

/** The command dispatcher: one case per command, each a few lines calling its module (pin.ts, image.ts, ...). */
async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c', default: 'config/airlock.yaml' },
      name: { type: 'string' },
      ecosystem: { type: 'string' },
      decision: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean', default: false },
      print: { type: 'boolean', default: false },
      all: { type: 'boolean', default: false },
      client: { type: 'string' },
      admin: { type: 'boolean', default: false },
      output: { type: 'string', short: 'o' },
      'fail-on': { type: 'string' },
      repository: { type: 'string' },
      repair: { type: 'boolean', default: false },
      from: { type: 'string' },
      to: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [cmd, ...rest] = positionals;
  if (values.help || !cmd) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const configFile = values.config!;
  switch (cmd) {
    case 'serve': {
      const loaded = loadConfig(configFile);
      // Everything serve needs from the machine, before anything is opened: one line per problem.
      const pre = await preflight(loaded, { listen: false });
      if (pre.problems.length) fail(`cannot start: ${pre.problems.join('; ')}`, 1);
      const { airlock, stop } = await startServer(loaded).catch((e) => fail(`cannot start: ${startError(e, loaded.config.listen)}`, 1));
      const malloc = mallocWarning();
      if (malloc) airlock.log.warn(malloc);
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
        airlock.reloadPolicy();
        void airlock.reloadAdvisories();
      });
      return;
    }
    case 'check': {
      const loaded = loadConfig(configFile);
      const pre = await preflight(loaded);
      if (pre.problems.length) fail(`${loaded.configFile}: ${pre.problems.join('; ')}`);
      if (pre.inUse) process.stderr.write(`airlock: note: ${pre.inUse}\n`);
      process.stdout.write(
        `${loaded.configFile}: OK (${loaded.policy.pypi.size} PyPI allow entries, ${loaded.policy.oci.size} OCI repositories, ${loaded.policy.hf.size} Hugging Face repositories; policy in ${loaded.policyFile})\n`,
      );
      return;
    }
    case 'records': {
      const loaded = loadConfig(configFile);
      const f: PullFilter = {
        name: values.name,
        ecosystem: values.ecosystem as PullFilter['ecosystem'],
        decision: values.decision as PullFilter['decision'],
        since: parseTime(values.since, '--since'),
        until: parseTime(values.until, '--until'),
        limit: values.limit === undefined ? 100 : Number(values.limit),
      };
      if (!Number.isInteger(f.limit) || f.limit! < 1) fail(`--limit: expected a positive whole number, got ${JSON.stringify(values.limit)}`);
      const rows = await withMeta(loaded, true, (meta) => meta.listPulls(f));
      if (values.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      for (const r of rows) {
        process.stdout.write(
          [new Date(r.ts).toISOString(), r.client, r.ecosystem, r.name, r.version ?? '-', r.filename ?? '-', r.cache, r.decision, r.reason ?? ''].join('\t') +
            '\n',
        );
      }
      return;
    }
    case 'pin': {
      const [eco, req] = rest;
      if (eco === 'oci' && req) {
        const pin = await resolveOciPin(configFile, req);
        const loaded = loadConfig(configFile);
        if (values.print) {
          process.stdout.write(JSON.stringify(pin) + '\n');
          return;
        }
        const how = writeOciPin(loaded.policyFile, loaded.policyPathInFile, pin);
        loadConfig(configFile);
        const what =
          pin.mediaType.includes('index') || pin.mediaType.includes('list') ? `index of ${pin.children} platforms` : `manifest with ${pin.children} blobs`;
        process.stdout.write(`${how} ${pin.repository}${pin.tag ? `:${pin.tag}` : ''} -> ${pin.digest} (${what}) in ${loaded.policyFile}\n`);
        if (loaded.policy.images.gates(pin.repository)) {
          // Judge it now (layers fetched into the cache, inventory stored): no client waits for it on its first pull.
          const { checkImage, formatReport } = await import('./image.js');
          const rep = await checkImage(configFile, `docker://${pin.repository}@${pin.digest}`);
          process.stdout.write(formatReport(rep));
          const refused = rep.platforms.filter((p) => !p.verdict.decision.allow);
          if (refused.length)
            process.stderr.write(
              `warning: the image gate will refuse ${refused.map((p) => p.platform ?? p.digest).join(', ')} of this pin until the findings are fixed or excepted\n`,
            );
        }
        return;
      }
      if (eco === 'hf' && req) {
        const pin = await resolveHfPin(configFile, req);
        const loaded = loadConfig(configFile);
        if (values.print) {
          process.stdout.write(JSON.stringify(pin) + '\n');
          return;
        }
        const how = writeHfPin(loaded.policyFile, loaded.policyPathInFile, pin);
        loadConfig(configFile);
        const name = pin.type === 'dataset' ? `datasets/${pin.repo}` : pin.repo;
        process.stdout.write(`${how} ${name}${pin.ref ? `@${pin.ref}` : ''} -> ${pin.commit} in ${loaded.policyFile}\n`);
        return;
      }
      if (eco !== 'pypi' || !req) fail(`usage: airlock pin pypi 'NAME==VERSION' | airlock pin oci REGISTRY/NAME:TAG | airlock pin hf [datasets/]REPO@REVISION`);
      const pin = await resolvePypiPin(configFile, req);
      const loaded = loadConfig(configFile);
      if (values.print) {
        process.stdout.write(JSON.stringify({ name: pin.name, versions: `==${pin.version}`, sha256: pin.sha256 }) + '\n');
        return;
      }
      const how = writePypiPin(loaded.policyFile, loaded.policyPathInFile, pin);
      // Validate the result so a pin never leaves a policy that fails to load.
      loadConfig(configFile);
      process.stdout.write(`${how} ${pin.name}==${pin.version} (${pin.files.length} files, from the ${pin.source} index) in ${loaded.policyFile}\n`);
      return;
    }
    case 'image': {
      const [sub, ref] = rest;
      if (sub !== 'check' || !ref) fail('usage: airlock image check IMAGE (oci:DIR[:TAG], docker-archive:FILE, docker://REGISTRY/NAME:TAG)');
      const failOn = values['fail-on'];
      if (failOn !== undefined && !['critical', 'high', 'medium', 'low', 'all', 'none'].includes(failOn))
        fail('--fail-on: expected critical, high, medium, low, all or none');
      const { checkImage, formatReport } = await import('./image.js');
      let rep;
      try {
        rep = await checkImage(configFile, ref, { failOn: failOn as RefuseLevel | undefined, repository: values.repository });
      } catch (e) {
        if (e instanceof ConfigError) throw e;
        fail(`image check: ${(e as Error).message}`);
      }
      process.stdout.write(values.json ? JSON.stringify(rep, null, 2) + '\n' : formatReport(rep));
      if (rep.platforms.some((p) => !p.verdict.decision.allow)) process.exit(1);
      return;
    }
    case 'scrub':
    case 'store': {
      if (cmd === 'store' && rest[0] !== 'verify') fail('usage: airlock store verify [--repair]');
      const { verifyStore } = await import('./store.js');
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
      return;
    }
    case 'advisories': {
      const [sub, path] = rest;
      if (sub !== 'import' || !path) fail('usage: airlock advisories import PATH');
      const loaded = loadConfig(configFile);
      await withMeta(loaded, true, async (meta) => {
        const r = await importAdvisories(meta, path);
        process.stdout.write(
          `read ${r.read} OSV records from ${path}: ${r.changed} new or changed, ${r.withdrawn} withdrawn (kept, never matched)${r.skipped.length ? `, ${r.skipped.length} skipped` : ''}\n` +
            `a running server applies them on SIGHUP (kill -HUP <pid>); policy advisories.refuse is ${loaded.policy.advisoryLevel} (MAL- records always refuse)\n`,
        );
        for (const sk of r.skipped.slice(0, 20)) process.stderr.write(`  skipped ${sk}\n`);
      });
      return;
    }
    case 'affected': {
      const [query] = rest;
      if (!query)
        fail('usage: airlock affected ID|PURL (an advisory id or alias, or pkg:pypi/NAME@VERSION, pkg:huggingface/ORG/NAME@COMMIT, pkg:oci/NAME@sha256:...)');
      const loaded = loadConfig(configFile);
      await withMeta(loaded, false, async (meta) => {
        const rep = await affected(meta, query, loaded.policy);
        if (values.json) {
          process.stdout.write(JSON.stringify(rep, null, 2) + '\n');
          return;
        }
        if (rep.advisory) {
          const a = rep.advisory;
          process.stdout.write(`${a.id}${a.aliases.length ? ` (${a.aliases.join(', ')})` : ''}: ${a.summary || 'no summary'}\n`);
          if (a.withdrawn) process.stdout.write('withdrawn: it matches nothing\n');
          else process.stdout.write(`packages: ${a.packages.join(', ') || '(none Airlock matches)'}\n`);
        }
        if (rep.images.length) {
          process.stdout.write(`${rep.images.length} image${rep.images.length === 1 ? '' : 's'} contain an affected package:\n`);
          for (const img of rep.images) {
            const names = [...img.tags, ...img.repositories.filter((r) => !img.tags.some((t) => t.startsWith(`${r}:`)))];
            process.stdout.write(
              `  ${img.digest}${names.length ? ` (${names.join(', ')})` : ''}: ${img.packages.map((p) => `${p.name} ${p.version}`).join(', ')}\n`,
            );
          }
        }
        const served = rep.pulls.filter((p) => p.decision === 'allow');
        process.stdout.write(
          `${rep.pulls.length} pulls (${served.length} served, ${rep.pulls.length - served.length} refused), ${new Set(served.map((p) => p.client)).size} clients served\n`,
        );
        if (rep.pulls.length) process.stdout.write(['time', 'client', 'ecosystem', 'name', 'version', 'file', 'sha256', 'cache', 'decision'].join('\t') + '\n');
        for (const p of rep.pulls) {
          process.stdout.write(
            [new Date(p.ts).toISOString(), p.client, p.ecosystem, p.name, p.version ?? '-', p.filename ?? '-', p.sha256 ?? '-', p.cache, p.decision].join(
              '\t',
            ) + '\n',
          );
        }
      });
      return;
    }
    case 'sbom': {
      const loaded = loadConfig(configFile);
      await withMeta(loaded, false, async (meta) => {
        const eco = values.ecosystem as PullFilter['ecosystem'];
        if (eco && !['pypi', 'hf', 'oci'].includes(eco)) fail('--ecosystem: expected pypi, hf or oci');
        const { buildSbom } = await import('../audit/sbom.js');
        const json = await buildSbom(meta, {
          since: parseTime(values.since, '--since'),
          until: parseTime(values.until, '--until'),
          client: values.client,
          ecosystem: eco,
          version: VERSION,
        });
        if (values.output) writeFileSync(values.output, json + '\n');
        else process.stdout.write(json + '\n');
      });
      return;
    }
    case 'token': {
      const [sub, arg] = rest;
      const loaded = loadConfig(configFile);
      await withMeta(loaded, true, async (meta) => {
        if (sub === 'create') {
          const name = values.name;
          if (!name || !TOKEN_NAME.test(name))
            fail('--name: expected a token name (letters, digits, ".", "_", "-"; up to 64 characters), e.g. --name ci-runner');
          if ((await meta.listTokens()).some((t) => t.name === name && t.revokedAt === null))
            fail(`a live token named ${name} already exists (revoke it first, or choose another name)`);
          const secret = await new Authenticator(meta).create(name, values.admin!);
          process.stderr.write(`created ${values.admin ? 'admin ' : ''}token ${name}; it is shown once and stored only as a hash:\n`);
          process.stdout.write(`${secret}\n`);
        } else if (sub === 'list') {
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
        } else if (sub === 'revoke' && arg) {
          if (!(await meta.revokeToken(arg))) fail(`no active token named ${arg}`);
          process.stdout.write(`revoked ${arg}; it is refused from now on\n`);
        } else fail('usage: airlock token create --name NAME [--admin] | token list | token revoke NAME');
      });
      return;
    }
    case 'migrate': {
      const loaded = loadConfig(configFile);
      if (values.from || values.to) {
        if (values.from !== 'sqlite' || values.to !== 'postgres') fail('usage: airlock migrate [--from sqlite --to postgres]');
        const { moveSqliteToPostgres } = await import('./migrate.js');
        const r = await moveSqliteToPostgres(loaded);
        process.stdout.write(
          `moved ${r.pulls} pull records (the chain verifies in PostgreSQL, head ${r.head ?? 'none'}), ${r.tokens} tokens, ${r.advisories} advisories; caches refill on the next pulls\n`,
        );
        return;
      }
      // Opening the store brings its schema up to date (what serve does on start).
      await withMeta(loaded, true, async () => undefined);
      process.stdout.write(`${loaded.config.storage.meta === 'postgres' ? 'PostgreSQL' : 'SQLite'} schema is up to date\n`);
      return;
    }
    case 'audit': {
      if (rest[0] !== 'verify') fail('usage: airlock audit verify');
      const loaded = loadConfig(configFile);
      await withMeta(loaded, false, async (meta) => {
        const rep = await verifyChain(meta);
        if (values.json) process.stdout.write(JSON.stringify(rep, null, 2) + '\n');
        else if (rep.problem) process.stdout.write(`BROKEN at row ${rep.problem.id}: ${rep.problem.message}\n`);
        else
          process.stdout.write(
            `OK: ${rep.rows} records, chain intact${rep.unchained ? ` (${rep.unchained} older rows predate the chain)` : ''}; head ${rep.head ?? '(empty)'}\n`,
          );
        if (rep.problem) process.exitCode = 1;
      });
      return;
    }
    case 'rescan': {
      const tty = process.stderr.isTTY;
      const res = await rescan(configFile, {
        all: values.all,
        progress: (done, total) => {
          const width = 30;
          const filled = total ? Math.round((done / total) * width) : width;
          const bar = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}`;
          if (tty) process.stderr.write(`\r${bar}${done === total ? '\n' : ''}`);
          else if (done === total || done % 100 === 0) process.stderr.write(`${bar}\n`);
        },
      });
      if (values.json) {
        process.stdout.write(JSON.stringify(res, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        `rescanned ${res.rescanned} of ${res.total} files with ${SCANNER_VERSION}${res.missing ? ` (${res.missing} no longer cached)` : ''}; ${res.changed.length} changed\n`,
      );
      for (const ch of res.changed) process.stdout.write(`  sha256:${ch.sha256} ${ch.format}\n    before: ${ch.before}\n    after:  ${ch.after}\n`);
      return;
    }
    default:
      fail(`unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
  }
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
