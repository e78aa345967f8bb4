import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MALLOC_TUNABLES, NODE_FLAGS, mallocWarning, nodeFlagsWarning } from '../../src/obs/malloc.js';

const root = process.cwd();

describe('glibc malloc settings (issue 17)', () => {
  it('the Dockerfile and npm start set the same settings the benchmarks import from src/obs/malloc.ts', () => {
    expect(readFileSync(join(root, 'Dockerfile'), 'utf8')).toContain(`GLIBC_TUNABLES=${MALLOC_TUNABLES} `);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start.startsWith(`GLIBC_TUNABLES=${MALLOC_TUNABLES} node `)).toBe(true);
    for (const b of ['cold-peers.mjs', 'run.mjs'])
      expect(readFileSync(join(root, 'bench', b), 'utf8')).toContain("import(join(ROOT, 'dist', 'obs', 'malloc.js'))");
    // profile-cold takes them from the build it profiles (DIST=<dir>, this one's dist/ by default).
    const prof = readFileSync(join(root, 'bench', 'profile-cold.mjs'), 'utf8');
    expect(prof).toContain("process.env.DIST ?? join(ROOT, 'dist')");
    expect(prof).toContain("import(join(DIST, 'obs', 'malloc.js'))");
  });

  it('the settings are ones this glibc accepts: a process started with them reads them back', () => {
    // glibc ignores a tunable it does not know, silently; ld.so --list-tunables shows what took.
    const ldso = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1'].find((p) => {
      try {
        readFileSync(p);
        return true;
      } catch {
        return false;
      }
    });
    if (!ldso) return expect(mallocWarning({})).toBeUndefined();
    const out = execFileSync(ldso, ['--list-tunables'], { env: { GLIBC_TUNABLES: MALLOC_TUNABLES } }).toString();
    expect(out).toMatch(/glibc\.malloc\.trim_threshold: 0x10000000 /);
    expect(out).toMatch(/glibc\.malloc\.mmap_threshold: 0x2000000 /);
    expect(out).toMatch(/glibc\.malloc\.arena_max: 0x1 /);
  });

  it('serve warns once, naming the setting, when it runs on glibc without it', () => {
    const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;
    if (!glibc) return expect(mallocWarning({})).toBeUndefined();
    expect(mallocWarning({})).toContain(`GLIBC_TUNABLES=${MALLOC_TUNABLES}`);
    expect(mallocWarning({ GLIBC_TUNABLES: MALLOC_TUNABLES })).toBeUndefined();
  });
});

describe("V8's young generation capped (issue 29)", () => {
  it('the Dockerfile and npm start pass the same node flags the benchmarks import from src/obs/malloc.ts', () => {
    const flags = NODE_FLAGS.join(' ');
    expect(readFileSync(join(root, 'Dockerfile'), 'utf8')).toContain(
      `ENTRYPOINT ["node", ${NODE_FLAGS.map((f) => JSON.stringify(f)).join(', ')}, "dist/cli/main.js"]`,
    );
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toContain(` node ${flags} dist/cli/main.js serve `);
    expect(readFileSync(join(root, 'bench', 'lib', 'node-flags.mjs'), 'utf8')).toContain("import(join(dist, 'obs', 'malloc.js'))");
  });

  it('node takes the flag: however much young garbage is made, the young generation stays within the cap', () => {
    const script = `let keep = []; for (let i = 0; i < 2e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 20000) keep = []; }
      const ns = require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
      console.log(ns.space_size);`;
    const size = (flags: readonly string[]) =>
      Number(
        execFileSync(process.execPath, [...flags, '-e', script])
          .toString()
          .trim(),
      );
    const mib = Number(NODE_FLAGS[0].split('=')[1]);
    expect(size(NODE_FLAGS)).toBeLessThanOrEqual(2 * mib * 2 ** 20 + 2 ** 20);
    // Without it the same work grows it past the cap (so the assertion above means something).
    expect(size([])).toBeGreaterThan(2 * mib * 2 ** 20 + 2 ** 20);
  });

  it('serve warns, naming the flag, when node was started without it (on the command line or in NODE_OPTIONS)', () => {
    expect(nodeFlagsWarning([], {})).toContain(`node ${NODE_FLAGS.join(' ')}`);
    expect(nodeFlagsWarning([...NODE_FLAGS], {})).toBeUndefined();
    expect(nodeFlagsWarning([], { NODE_OPTIONS: `--enable-source-maps ${NODE_FLAGS.join(' ')}` })).toBeUndefined();
    expect(nodeFlagsWarning(['--max-old-space-size=4'], {})).toBeDefined();
  });
});
