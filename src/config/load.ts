import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import jsYaml from 'js-yaml';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { Policy } from '../policy/index.js';
import { registryKey } from '../policy/oci.js';
import { signerObjects } from '../policy/signing.js';
import { PolicyError, pathString } from '../policy/types.js';
import { configSchema, policySchema, type Config, type PolicyConfig } from './schema.js';

/** A configuration problem: names the file, the field (with its line) and what was expected. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  config: Config;
  policy: Policy;
  configFile: string;
  /** The file that holds the policy (the config itself, or policy_file), and where in it. */
  policyFile: string;
  policyPathInFile: string[];
  dataDir: string;
  /** Whether the main configuration file held no value (empty, comments only, `---`, `null`): every setting its default, no policy. */
  empty: boolean;
}

interface ParsedYaml {
  file: string;
  text: string;
  value: unknown;
  /** Whether the file holds no value at all: empty, comments only, or a document that is only `---`, `...`, `null` or `~`. */
  empty: boolean;
  /** Built only when an error needs a line number. */
  located?: { doc: Document; lines: LineCounter };
}

/**
 * Load YAML with js-yaml: for a 10,000-entry policy it takes ~75 ms where the `yaml` package's
 * document parser takes ~600 ms and leaves ~70 MB more resident (measured here). The `yaml`
 * document model is built only on the error path, to name the line of a bad field.
 */
function readYaml(file: string): ParsedYaml {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let value: unknown;
  try {
    value = jsYaml.load(text, { filename: file });
  } catch (e) {
    const mark = (e as { mark?: { line: number; column: number } }).mark;
    const reason = (e as { reason?: string }).reason ?? (e as Error).message.split('\n')[0];
    throw new ConfigError(`${file}${mark ? `:${mark.line + 1}:${mark.column + 1}` : ''}: invalid YAML: ${reason}`);
  }
  return { file, text, value: value ?? {}, empty: value === null || value === undefined };
}

function where(y: ParsedYaml, path: (string | number)[]): string {
  if (!y.located) {
    const lines = new LineCounter();
    y.located = { doc: parseDocument(y.text, { lineCounter: lines }), lines };
  }
  const { doc, lines } = y.located;
  for (let p = path; p.length > 0; p = p.slice(0, -1)) {
    const node = doc.getIn(p, true) as { range?: [number, number, number] } | undefined;
    if (node && node.range) return `${y.file}:${lines.linePos(node.range[0]).line}`;
  }
  return y.file;
}

function zodMessage(y: ParsedYaml, base: (string | number)[], error: z.ZodError): string {
  const issue = error.issues[0];
  const path = [...base, ...(issue.path as (string | number)[])];
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    const full = [...path, keys[0]];
    return `${where(y, full)}: ${pathString(full)}: unknown key ${JSON.stringify(keys[0])} (expected one of the documented keys; see docs/configuration.md)`;
  }
  return `${where(y, path)}: ${pathString(path) || '(top level)'}: ${issue.message}`;
}

/** Cross-checks between the OCI registries and the policy, and credentials named by environment variable. */
function checkOciWiring(
  y: ParsedYaml,
  policyYaml: ParsedYaml,
  policyBase: string[],
  config: Config,
  policyConfig: PolicyConfig,
  env: Record<string, string | undefined>,
): void {
  const regs = config.oci.registries;
  if (!regs[config.oci.default_registry]) {
    throw new ConfigError(
      `${where(y, ['oci', 'default_registry'])}: oci.default_registry: ${JSON.stringify(config.oci.default_registry)} is not one of oci.registries (${Object.keys(regs).join(', ')})`,
    );
  }
  for (const [key, r] of Object.entries(regs)) {
    for (const field of ['username_env', 'password_env'] as const) {
      const name = r[field];
      if (name !== undefined && env[name] === undefined) {
        throw new ConfigError(`${where(y, ['oci', 'registries', key, field])}: oci.registries.${key}.${field}: environment variable ${name} is not set`);
      }
    }
    if ((r.username_env === undefined) !== (r.password_env === undefined)) {
      throw new ConfigError(`${where(y, ['oci', 'registries', key])}: oci.registries.${key}: give both username_env and password_env, or neither`);
    }
  }
  const peers = config.storage.peers;
  if (peers.secret_env !== undefined) {
    const at = where(y, ['storage', 'peers', 'secret_env']);
    if (config.storage.meta !== 'postgres') throw new ConfigError(`${at}: storage.peers: replicas stream to each other only on storage.meta: postgres`);
    const secret = env[peers.secret_env];
    if (secret === undefined) throw new ConfigError(`${at}: storage.peers.secret_env: environment variable ${peers.secret_env} is not set`);
    if (secret.length < 32) throw new ConfigError(`${at}: storage.peers.secret_env: the secret in ${peers.secret_env} is shorter than 32 characters`);
  }
  if (config.hf.token_env !== undefined && env[config.hf.token_env] === undefined) {
    throw new ConfigError(`${where(y, ['hf', 'token_env'])}: hf.token_env: environment variable ${config.hf.token_env} is not set`);
  }
  (policyConfig.oci?.allow ?? []).forEach((a, i) => {
    const host = a.repository.split('/')[0].toLowerCase();
    const key = registryKey(host);
    if (!regs[key]) {
      const full = [...policyBase, 'oci', 'allow', i, 'repository'];
      throw new ConfigError(
        `${where(policyYaml, full)}: ${pathString(full)}: registry ${host} is not configured in oci.registries (${Object.keys(regs).join(', ')})`,
      );
    }
  });
}

/** Signers' key_file / ca_file, read relative to the file that holds the policy and handed to the policy as PEM text (policy/ does no I/O). */
function resolveSignerFiles(policyYaml: ParsedYaml, policyBase: string[], policyConfig: PolicyConfig): void {
  const MAX_PEM = 1 << 20;
  for (const { signer, path } of signerObjects(policyConfig)) {
    for (const [fileKey, textKey] of [
      ['key_file', 'key'],
      ['ca_file', 'ca'],
    ] as const) {
      const name = signer[fileKey];
      if (name === undefined) continue;
      const full = [...policyBase, ...path, fileKey];
      if (signer[textKey] !== undefined) throw new ConfigError(`${where(policyYaml, full)}: ${pathString(full)}: give ${textKey} or ${fileKey}, not both`);
      const f = resolve(dirname(policyYaml.file), name);
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch (e) {
        throw new ConfigError(
          `${where(policyYaml, full)}: ${pathString(full)}: cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      if (text.length > MAX_PEM) throw new ConfigError(`${where(policyYaml, full)}: ${pathString(full)}: ${f} is larger than 1 MiB; expected a PEM file`);
      signer[textKey] = text;
    }
  }
}

/**
 * Load and validate the configuration (and its policy). Any problem throws ConfigError before
 * anything starts: nothing half-starts on a bad file.
 */
/**
 * The settings (dotted paths, outside the policy) whose values differ between two loaded
 * configurations: a reload applies only the policy, so these need a restart.
 */
export function changedSettings(a: unknown, b: unknown, path = ''): string[] {
  if (path === 'policy' || path === 'policy_file') return [];
  const isObj = (x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    return keys.flatMap((k) => changedSettings((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}

export function loadConfig(configFile: string, env: Record<string, string | undefined> = process.env): LoadedConfig {
  const file = resolve(configFile);
  const y = readYaml(file);
  // Container-friendly overrides for the two settings that depend on where Airlock runs.
  const value = { ...(y.value as Record<string, unknown>) };
  if (env.AIRLOCK_LISTEN) value.listen = env.AIRLOCK_LISTEN;
  if (env.AIRLOCK_DATA_DIR) value.data_dir = env.AIRLOCK_DATA_DIR;
  // Where other replicas reach this one differs per replica (a pod's address) where the file is shared.
  if (env.AIRLOCK_ADVERTISE) {
    const storage = (value.storage ?? {}) as Record<string, unknown>;
    value.storage = { ...storage, peers: { ...(storage.peers as object), advertise: env.AIRLOCK_ADVERTISE } };
  }
  const parsed = configSchema.safeParse(value);
  if (!parsed.success) throw new ConfigError(zodMessage(y, [], parsed.error));
  const config = parsed.data;

  if (config.policy && config.policy_file) {
    throw new ConfigError(`${where(y, ['policy_file'])}: policy_file: give either an inline "policy" or a "policy_file", not both`);
  }
  let policyYaml = y;
  let policyBase: string[] = ['policy'];
  let policyConfig: PolicyConfig = config.policy ?? {};
  if (config.policy_file) {
    const pf = resolve(dirname(file), config.policy_file);
    policyYaml = readYaml(pf);
    policyBase = [];
    // A policy file with no value (empty, only comments, or a document that is only `---`, `...`,
    // `null` or `~`) allows nothing and refuses every pull: far more often a truncated write or a
    // wrong path than an intent, so it is refused; `{}` says it on purpose.
    if (policyYaml.empty) {
      throw new ConfigError(
        `${pf}: the policy file is empty (or only comments, or a null document): it would refuse every pull; write {} to mean that on purpose`,
      );
    }
    const pp = policySchema.safeParse(policyYaml.value);
    if (!pp.success) throw new ConfigError(zodMessage(policyYaml, [], pp.error));
    policyConfig = pp.data;
  }
  resolveSignerFiles(policyYaml, policyBase, policyConfig);
  let policy: Policy;
  try {
    policy = new Policy(policyConfig);
  } catch (e) {
    if (e instanceof PolicyError) {
      const full = [...policyBase, ...e.path];
      throw new ConfigError(`${where(policyYaml, full)}: ${pathString(full)}: ${e.message}`);
    }
    throw e;
  }
  checkOciWiring(y, policyYaml, policyBase, config, policyConfig, env);
  return {
    config,
    policy,
    configFile: file,
    policyFile: policyYaml.file,
    policyPathInFile: policyBase,
    dataDir: resolve(config.data_dir),
    empty: y.empty,
  };
}
