import { readFileSync } from 'node:fs';
import type { LookalikeEcosystem } from '../names/lookalike.js';

/**
 * The popular names shipped with Airlock (share/popular/ECOSYSTEM.txt: one name per line, most
 * popular first, `#` lines are comments; where they come from and how to refresh them:
 * share/popular/README.md), read once per process.
 */
const DIR = new URL('../../share/popular/', import.meta.url);
const read = new Map<LookalikeEcosystem, string[]>();

export function popularNames(eco: LookalikeEcosystem): string[] {
  let names = read.get(eco);
  if (!names) {
    const file = new URL(`${eco}.txt`, DIR);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`the popular ${eco} names (${file.pathname}) cannot be read: ${(e as Error).message}; the installation is incomplete`, { cause: e });
    }
    names = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    read.set(eco, names);
  }
  return names;
}
