import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { isMap, isSeq, parseDocument, YAMLMap, YAMLSeq, type Document } from 'yaml';
import { valid as validVersion } from '@renovatebot/pep440';
import { loadConfig, ConfigError } from '../config/load.js';
import { Metrics } from '../obs/metrics.js';
import { parseFilename } from '../pypi/filenames.js';
import { PypiIndex } from '../pypi/index.js';
import { isValidProjectName, normalizeName } from '../pypi/names.js';
import { SqliteMetaStore } from '../storage/sqlite-meta-store.js';
import { UpstreamHttp } from '../upstream/http.js';
import type { Dispatcher } from 'undici';

export interface PinResult {
  name: string;
  version: string;
  sha256: string[];
  files: string[];
  source: 'public' | 'internal';
}

/** Resolve `name==version` on the configured index: the release's files and their sha256. */
export async function resolvePypiPin(configFile: string, requirement: string, dispatcher?: Dispatcher): Promise<PinResult> {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s,;]+)\s*$/.exec(requirement);
  if (!m || !isValidProjectName(m[1]) || !validVersion(m[2])) {
    throw new ConfigError(`pin: expected NAME==VERSION with a PEP 440 version (e.g. 'requests==2.32.3'), got ${JSON.stringify(requirement)}`);
  }
  const name = normalizeName(m[1]);
  const version = m[2];
  const loaded = loadConfig(configFile);
  const meta = new SqliteMetaStore(':memory:');
  const http = new UpstreamHttp({ dispatcher, headersTimeoutMs: loaded.config.pypi.timeout * 1000 });
  try {
    const source = loaded.policy.pypi.internalRule(name) ? 'internal' : 'public';
    const index = new PypiIndex({
      http,
      meta,
      metrics: new Metrics(false),
      log: pino({ level: 'silent' }),
      publicUrl: loaded.config.pypi.upstream,
      internalUrl: loaded.config.pypi.internal,
      fileHosts: loaded.config.pypi.file_hosts,
      ttlSeconds: 0,
      maxPageBytes: loaded.config.pypi.max_page_bytes,
    });
    const page = await index.project(name, source);
    const files = page.project.files.filter((f) => {
      const p = parseFilename(f.filename, name);
      return p && p.name === name && p.version === version && f.hashes.sha256;
    });
    if (files.length === 0) throw new ConfigError(`pin: the ${source} index has no files with a sha256 for ${name}==${version}`);
    return { name, version, sha256: files.map((f) => f.hashes.sha256), files: files.map((f) => f.filename), source };
  } finally {
    await http.close();
    await meta.close();
  }
}

/** Add (or replace) the allow entry for a pin in the policy file, keeping its comments and order. */
export function writePypiPin(policyFile: string, basePath: string[], pin: PinResult): 'added' | 'updated' {
  const doc = parseDocument(readFileSync(policyFile, 'utf8')) as Document.Parsed;
  const allowPath = [...basePath, 'pypi', 'allow'];
  let seq = doc.getIn(allowPath, true);
  if (!isSeq(seq)) {
    seq = new YAMLSeq();
    doc.setIn(allowPath, seq);
  }
  const versions = `==${pin.version}`;
  const entry = doc.createNode({ name: pin.name, versions, sha256: pin.sha256 }) as YAMLMap;
  const items = (seq as YAMLSeq).items;
  const idx = items.findIndex((it) => isMap(it) && normalizeName(String(it.get('name'))) === pin.name && String(it.get('versions') ?? '') === versions);
  if (idx >= 0) items[idx] = entry;
  else items.push(entry);
  writeFileSync(policyFile, doc.toString());
  return idx >= 0 ? 'updated' : 'added';
}
