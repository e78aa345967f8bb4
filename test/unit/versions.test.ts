import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareApk, compareDeb, compareRpm, rpmvercmp } from '../../src/versions/index.js';
import { validApk } from '../../src/versions/apk.js';

/**
 * OS package version orders, judged by the real tools: dpkg and rpm verdicts recorded by
 * test/vectors/make-version-pairs.py, rpm's and apk-tools' own published vectors, and (where
 * dpkg is on PATH, as on every Debian CI machine) fresh pairs asked of dpkg during the run.
 */
const V = new URL('../vectors/', import.meta.url).pathname;
const tsv = (f: string) =>
  readFileSync(join(V, f), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'));

function disagreements(rows: string[][], cmp: (a: string, b: string) => number): string[] {
  return rows.filter(([a, b, r]) => cmp(a, b) !== Number(r)).map(([a, b, r]) => `${a} vs ${b}: tool says ${r}, Airlock ${cmp(a, b)}`);
}

describe('dpkg order', () => {
  it('agrees with dpkg --compare-versions on 3,000 recorded pairs', () => {
    const rows = tsv('dpkg-pairs.tsv');
    expect(rows.length).toBe(3000);
    expect(new Set(rows.map((r) => r[2]))).toEqual(new Set(['-1', '0', '1']));
    expect(disagreements(rows, compareDeb)).toEqual([]);
  });

  it('gets the classic cases right', () => {
    expect(compareDeb('1.0~rc1-1', '1.0-1')).toBe(-1);
    expect(compareDeb('1:1.0-1', '2.0-1')).toBe(1);
    expect(compareDeb('3.0.11-1~deb12u2', '3.0.11-1')).toBe(-1);
    expect(compareDeb('3.0.11-1+deb12u2', '3.0.11-1')).toBe(1);
    expect(compareDeb('1.0', '1.0-0')).toBe(0);
    expect(compareDeb('1.0a', '1.0+')).toBe(-1);
    expect(compareDeb('2.36-9+deb12u10', '2.36-9+deb12u9')).toBe(1);
  });

  it.skipIf(spawnSync('sh', ['-c', 'command -v dpkg']).status !== 0)('agrees with the dpkg on this machine on fresh pairs', () => {
    const parts = ['0', '1', '2', '10', '01', '~', '~~', '+', '.', 'a', 'b', 'z', 'Z', 'rc', '-1', '-2', 'deb12u1'];
    let seed = Date.now() % 100000;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    const version = () => {
      let s = String(rnd(5));
      for (let i = rnd(6); i > 0; i--) s += parts[rnd(parts.length)];
      if (rnd(4) === 0) s = `${rnd(3)}:${s}`;
      return s.includes('-') ? s + 'x' : s;
    };
    const pairs: [string, string][] = [];
    while (pairs.length < 150) {
      const a = version();
      pairs.push([a, rnd(2) ? a + parts[rnd(parts.length)] : version()]);
    }
    // One shell for all pairs: lt, eq or gt per line (invalid versions print "invalid").
    const dir = mkdtempSync(join(tmpdir(), 'airlock-dpkg-'));
    writeFileSync(join(dir, 'pairs'), pairs.map((p) => p.join(' ')).join('\n') + '\n');
    const out = spawnSync(
      'sh',
      [
        '-c',
        'while read a b; do if ! dpkg --validate-version "$a" 2>/dev/null || ! dpkg --validate-version "$b" 2>/dev/null; then echo invalid; elif dpkg --compare-versions "$a" lt "$b"; then echo -1; elif dpkg --compare-versions "$a" eq "$b"; then echo 0; else echo 1; fi; done < "$1"',
        'sh',
        join(dir, 'pairs'),
      ],
      { encoding: 'utf8' },
    )
      .stdout.trim()
      .split('\n');
    expect(out.length).toBe(pairs.length);
    const rows = pairs.map(([a, b], i) => [a, b, out[i]]).filter((r) => r[2] !== 'invalid');
    expect(rows.length).toBeGreaterThan(100);
    expect(disagreements(rows, compareDeb)).toEqual([]);
  });
});

describe('rpm order', () => {
  it("agrees with rpm's own rpmvercmp vectors", () => {
    const rows = tsv('rpmvercmp.tsv');
    expect(rows.length).toBeGreaterThan(80);
    expect(disagreements(rows, rpmvercmp)).toEqual([]);
  });

  it('agrees with rpm.vercmp of the real rpm on 3,000 recorded pairs', () => {
    const rows = tsv('rpm-pairs.tsv');
    expect(rows.length).toBe(3000);
    expect(disagreements(rows, rpmvercmp)).toEqual([]);
  });

  it('compares epoch, then version, then release', () => {
    expect(compareRpm('1:1.0-1.el9', '2.0-1.el9')).toBe(1);
    expect(compareRpm('3.0.7-24.el9', '3.0.7-25.el9')).toBe(-1);
    expect(compareRpm('0:3.0.7-24.el9', '3.0.7-24.el9')).toBe(0);
  });
});

describe('apk order', () => {
  // apk-tools' test/unit/version.data: "a OP b" lines (OP of <, >, =, optionally negated with !).
  const lines = readFileSync(join(V, 'apk-version.data'), 'utf8')
    .split('\n')
    .map((l) => l.split('#')[0].trim())
    .filter(Boolean);
  const comparisons = lines.map((l) => /^(\S+) (!?)([<>=]+) (\S+)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null);
  const validity = lines.filter((l) => !l.includes(' '));

  it("agrees with every comparison in apk-tools' test vectors", () => {
    expect(comparisons.length).toBeGreaterThan(700);
    const bad = comparisons.filter(([, a, neg, op, b]) => {
      const c = compareApk(a, b);
      const holds = (op.includes('<') && c < 0) || (op.includes('>') && c > 0) || (op.includes('=') && c === 0);
      return holds === (neg === '!');
    });
    expect(bad.map((m) => m[0])).toEqual([]);
  });

  it("agrees with apk-tools' validity vectors", () => {
    expect(validity.length).toBeGreaterThan(15);
    const bad = validity.filter((l) => validApk(l.replace(/^!/, '')) === l.startsWith('!'));
    expect(bad).toEqual([]);
  });
});
