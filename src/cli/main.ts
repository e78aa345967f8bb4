#!/usr/bin/env node
import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../config/load.js';
import { parseTime } from '../core/time.js';
import { startServer } from '../server.js';
import { SqliteMetaStore } from '../storage/sqlite-meta-store.js';
import type { PullFilter } from '../storage/meta-store.js';
import { rescan } from './rescan.js';
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
                                                  pin it (tag alias + digest) in the policy
  airlock pin oci REGISTRY/NAME@sha256:DIGEST     check the digest upstream and pin it
  airlock pin hf [datasets/]REPO@REVISION [--config FILE] [--print]
                                                  resolve a branch or tag on the Hub to its commit
                                                  and pin it (ref alias + commit) in the policy
  airlock rescan  [--config FILE] [--all] [--json]
                                                  re-judge cached model files with this scanner
                                                  version (--all: every inspected file)

--config defaults to config/airlock.yaml.`;

function fail(msg: string, code = 2): never {
  process.stderr.write(`airlock: ${msg}\n`);
  process.exit(code);
}

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
      const { airlock, stop } = await startServer(loaded);
      let stopping = false;
      const shutdown = (sig: string) => {
        if (stopping) return;
        stopping = true;
        airlock.log.info({ signal: sig }, 'shutting down');
        stop().then(() => process.exit(0), () => process.exit(1));
      };
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGHUP', () => airlock.reloadPolicy());
      return;
    }
    case 'check': {
      const loaded = loadConfig(configFile);
      process.stdout.write(
        `${loaded.configFile}: OK (${loaded.policy.pypi.size} PyPI allow entries, ${loaded.policy.oci.size} OCI repositories, ${loaded.policy.hf.size} Hugging Face repositories; policy in ${loaded.policyFile})\n`,
      );
      return;
    }
    case 'records': {
      const loaded = loadConfig(configFile);
      mkdirSync(loaded.dataDir, { recursive: true });
      const f: PullFilter = {
        name: values.name,
        ecosystem: values.ecosystem as PullFilter['ecosystem'],
        decision: values.decision as PullFilter['decision'],
        since: parseTime(values.since, '--since'),
        until: parseTime(values.until, '--until'),
        limit: values.limit === undefined ? 100 : Number(values.limit),
      };
      if (!Number.isInteger(f.limit) || f.limit! < 1) fail(`--limit: expected a positive whole number, got ${JSON.stringify(values.limit)}`);
      const meta = new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
      const rows = await meta.listPulls(f);
      await meta.close();
      if (values.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      for (const r of rows) {
        process.stdout.write(
          [new Date(r.ts).toISOString(), r.client, r.ecosystem, r.name, r.version ?? '-', r.filename ?? '-', r.cache, r.decision, r.reason ?? ''].join('\t') + '\n',
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
        const what = pin.mediaType.includes('index') || pin.mediaType.includes('list') ? `index of ${pin.children} platforms` : `manifest with ${pin.children} blobs`;
        process.stdout.write(`${how} ${pin.repository}${pin.tag ? `:${pin.tag}` : ''} -> ${pin.digest} (${what}) in ${loaded.policyFile}\n`);
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
      process.stdout.write(`rescanned ${res.rescanned} of ${res.total} files with ${SCANNER_VERSION}${res.missing ? ` (${res.missing} no longer cached)` : ''}; ${res.changed.length} changed\n`);
      for (const ch of res.changed) process.stdout.write(`  sha256:${ch.sha256} ${ch.format}\n    before: ${ch.before}\n    after:  ${ch.after}\n`);
      return;
    }
    default:
      fail(`unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((e) => {
  if (e instanceof ConfigError) fail(e.message);
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string' && (e as Error).name === 'AirlockError') {
    fail((e as Error).message);
  }
  if ((e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') fail((e as Error).message);
  process.stderr.write(`airlock: unexpected error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
