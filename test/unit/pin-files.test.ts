import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfile, parseHfList, parseImageYaml, parseRequirements, pinsFromPylock, pinsFromUvLock, readPypiLock } from '../../src/cli/pin-files.js';

const h = (c: string) => c.repeat(64);
const dir = mkdtempSync(join(tmpdir(), 'airlock-pin-files-'));

/** TOML read by Python's own tomllib (Airlock's CLI reads it with smol-toml when installed). */
function toml(text: string): Record<string, unknown> {
  return JSON.parse(
    execFileSync('python3', ['-c', 'import sys, json, tomllib; print(json.dumps(tomllib.loads(sys.stdin.read())))'], { input: text, encoding: 'utf8' }),
  );
}

describe('lock files', () => {
  it('requirements: continuations, markers, extras, -r includes, options; every sha256', () => {
    writeFileSync(join(dir, 'base.txt'), `six==1.16.0 --hash=sha256:${h('c')}\n`);
    const f = join(dir, 'req.txt');
    const text = `-r base.txt\n--extra-index-url https://example.test/simple\nNumpy==1.26.4 ; python_version >= "3.9" \\\n    --hash=sha256:${h('A')} \\\n    --hash=sha384:${'d'.repeat(96)} \\\n    --hash=sha256:${h('b')}\n    # via torch\nrequests[socks] === 2.32.3  # comment\n`;
    expect(parseRequirements(f, text)).toEqual([
      { name: 'six', version: '1.16.0', sha256: [h('c')], where: `${join(dir, 'base.txt')}:1` },
      { name: 'numpy', version: '1.26.4', sha256: [h('a'), h('b')], where: `${f}:3` },
      { name: 'requests', version: '2.32.3', sha256: [], where: `${f}:8` },
    ]);
    expect(() => parseRequirements(f, 'ok==1\n-e ./src\n')).toThrow(`${f}:2: an editable requirement (-e) cannot be pinned from an index`);
    expect(() => parseRequirements(f, 'pkg @ https://x.test/pkg.whl\n')).toThrow(`${f}:1: "pkg @ https://x.test/pkg.whl" is a URL or a path`);
    expect(() => parseRequirements(f, `a==1 --hash=sha256:abc\n`)).toThrow(`${f}:1: --hash=sha256:abc is not sha256:<64 hex>`);
    expect(() => parseRequirements(f, `a==not a version\n`)).toThrow(`${f}:1:`);
  });

  it('pylock.toml (PEP 751): wheels and sdist hashes; a VCS package is refused, not pinned', () => {
    const text = `lock-version = "1.0"
created-by = "pip"
requires-python = ">=3.9"

[[packages]]
name = "Requests"
version = "2.32.3"
index = "https://pypi.org/simple"
sdist = { name = "requests-2.32.3.tar.gz", url = "https://files.example/requests-2.32.3.tar.gz", hashes = { sha256 = "${h('1')}" } }
wheels = [
  { name = "requests-2.32.3-py3-none-any.whl", url = "https://files.example/requests-2.32.3-py3-none-any.whl", hashes = { sha256 = "${h('2')}" } },
]

[[packages]]
name = "internal-tool"
version = "0.1"
vcs = { type = "git", url = "https://git.example/tool.git", commit-id = "${'e'.repeat(40)}" }
`;
    const f = join(dir, 'pylock.toml');
    expect(pinsFromPylock(toml(text), f, text)).toEqual([
      { name: 'requests', version: '2.32.3', sha256: [h('2'), h('1')], where: `${f}:5` },
      { name: 'internal-tool', version: '0.1', sha256: [], where: `${f}:14`, refuse: 'not from a package index (a VCS checkout, directory or archive)' },
    ]);
    expect(() => pinsFromPylock(toml('[tool]\nx = 1\n'), f, '')).toThrow('not a PEP 751 lock file');
  });

  it('uv.lock: registry packages with their hashes; the project itself is left out, a git source refused', () => {
    const text = `version = 1
requires-python = ">=3.12"

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "idna" }]

[[package]]
name = "idna"
version = "3.7"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.example/idna-3.7.tar.gz", hash = "sha256:${h('3')}", size = 189575 }
wheels = [{ url = "https://files.example/idna-3.7-py3-none-any.whl", hash = "sha256:${h('4')}", size = 66836 }]

[[package]]
name = "tool"
version = "1.0"
source = { git = "https://git.example/tool?rev=main#${'f'.repeat(40)}" }
`;
    const f = join(dir, 'uv.lock');
    expect(pinsFromUvLock(toml(text), f, text)).toEqual([
      { name: 'idna', version: '3.7', sha256: [h('4'), h('3')], where: `${f}:10` },
      { name: 'tool', version: '1.0', sha256: [], where: `${f}:17`, refuse: 'not from a package index (source git)' },
    ]);
  });

  it('a TOML lock file that is not TOML is one clear line with its line number; an empty lock pins nothing', async () => {
    const f = join(dir, 'pylock.toml');
    writeFileSync(f, 'lock-version = "1.0"\n');
    await expect(readPypiLock(f)).resolves.toEqual([]);
    writeFileSync(f, 'lock-version = "1.0"\n[[packages]\nname = "x"\n');
    await expect(readPypiLock(f)).rejects.toThrow(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: invalid TOML`));
  });
});

describe('image files', () => {
  it('Dockerfile: global ARG defaults, --platform, stages, scratch, continuations, lower-case keywords', () => {
    const text = `# syntax=docker/dockerfile:1
ARG REG=ghcr.io/org \\
    TAG="1.2"
ARG UNUSED
FROM --platform=linux/amd64 \${REG}/base:\${TAG} AS base
from base as dev
FROM python AS python
FROM python:3.12-slim@sha256:${h('a')}
FROM scratch
`;
    const f = 'Dockerfile';
    const out = parseDockerfile(f, text);
    expect(out.map((w) => [w.ref, w.where])).toEqual([
      ['ghcr.io/org/base:1.2', 'Dockerfile:5'],
      ['python', 'Dockerfile:7'],
      [`python:3.12-slim@sha256:${h('a')}`, 'Dockerfile:8'],
    ]);
    expect(text.slice(out[0].start, out[0].end)).toBe('${REG}/base:${TAG}');
    expect(() => parseDockerfile(f, 'ARG V\nFROM img:$V\n')).toThrow('Dockerfile:2: $V has no default value');
  });

  it('compose and Kubernetes: every image: scalar, in every document, ${VAR:-default} put in', () => {
    const text = `services:\n  a:\n    image: \${IMG:-nginx:1.27}\n  b:\n    build: .\n---\nspec:\n  template:\n    spec:\n      containers: [{ name: x, image: "quay.io/org/x:v2" }]\n`;
    expect(parseImageYaml('k.yaml', text).map((w) => [w.ref, w.where, w.quote])).toEqual([
      ['nginx:1.27', 'k.yaml:3', 'PLAIN'],
      ['quay.io/org/x:v2', 'k.yaml:10', 'QUOTE_DOUBLE'],
    ]);
    expect(() => parseImageYaml('k.yaml', 'a: [\n')).toThrow(/^k\.yaml:\d+: invalid YAML/);
  });

  it('model lists: REPO@REVISION lines, comments', () => {
    expect(parseHfList('m.txt', '# ours\norg/m@main  # prod\n\ndatasets/org/d@v1\n')).toEqual([
      { ref: 'org/m@main', where: 'm.txt:2' },
      { ref: 'datasets/org/d@v1', where: 'm.txt:4' },
    ]);
    expect(() => parseHfList('m.txt', 'org/m\n')).toThrow('m.txt:1: expected [datasets/]REPO@REVISION, got "org/m"');
  });
});
