import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FakeFile } from './fake-index.js';

const HERE = new URL('.', import.meta.url).pathname;

/** Build a real wheel or sdist with the stdlib helper; returns it as a FakeFile (with PEP 658 metadata for wheels). */
export function buildDist(spec: {
  name: string;
  version: string;
  kind?: 'wheel' | 'sdist';
  requires_dist?: string[];
  requires_python?: string;
}): FakeFile & { path: string } {
  const out = mkdtempSync(join(tmpdir(), 'airlock-dist-'));
  const path = execFileSync('python3', [join(HERE, 'make_dist.py'), out, JSON.stringify(spec)], { encoding: 'utf8' }).trim();
  const filename = path.slice(path.lastIndexOf('/') + 1);
  const file: FakeFile & { path: string } = { filename, bytes: readFileSync(path), path };
  if ((spec.kind ?? 'wheel') === 'wheel') file.metadata = readFileSync(path + '.metadata');
  if (spec.requires_python) file.requiresPython = spec.requires_python;
  return file;
}

/**
 * Run the real pip, isolated from this machine's pip configuration: --isolated, no PIP_* variables,
 * a throwaway HOME and cache, no user site.
 */
export function pip(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const home = mkdtempSync(join(tmpdir(), 'airlock-pip-home-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    LANG: 'C.UTF-8',
    PYTHONNOUSERSITE: '1',
    PIP_NO_CACHE_DIR: '1',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
  };
  if (process.env.PYENV_ROOT) env.PYENV_ROOT = process.env.PYENV_ROOT;
  Object.assign(env, extraEnv);
  return new Promise((resolve) => {
    execFile('python3', ['-m', 'pip', '--isolated', ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` });
    });
  });
}

export function pythonVersion(): string {
  return execFileSync('python3', ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8' }).trim();
}
