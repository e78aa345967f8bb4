import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HERE = new URL('./', import.meta.url).pathname;

/** Whether the real huggingface_hub (Python) can be imported here; `suite` names what is skipped without it. */
export function haveHfPython(suite: string): boolean {
  try {
    execFileSync('python3', ['-c', 'import huggingface_hub'], { stdio: 'ignore' });
    return true;
  } catch {
    console.warn(`huggingface_hub (Python) is not installed: ${suite} is skipped`);
    return false;
  }
}

/** Run hf_client.py (the real huggingface_hub) against `endpoint` in a fresh HOME; its last stdout line is JSON. */
export function hfPython(args: string[], endpoint: string): Promise<Record<string, unknown>> {
  const home = mkdtempSync(join(tmpdir(), 'airlock-hfpy-home-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    HF_HOME: join(home, 'hf'),
    HF_ENDPOINT: endpoint,
    HF_HUB_DISABLE_TELEMETRY: '1',
    HF_HUB_DISABLE_PROGRESS_BARS: '1',
    HF_HUB_ETAG_TIMEOUT: '30',
    HF_HUB_DOWNLOAD_TIMEOUT: '30',
    PYTHONNOUSERSITE: '1',
  };
  if (process.env.PYENV_ROOT) env.PYENV_ROOT = process.env.PYENV_ROOT;
  return new Promise((resolve, reject) => {
    execFile('python3', [join(HERE, 'hf_client.py'), ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`hf_client.py failed (${err?.message}): ${stderr}`));
      }
    });
  });
}
