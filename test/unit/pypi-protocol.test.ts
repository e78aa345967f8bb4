import { describe, expect, it } from 'vitest';
import { negotiate } from '../../src/pypi/accept.js';
import { parseFilename } from '../../src/pypi/filenames.js';
import { isValidFilename, isValidProjectName, normalizeName } from '../../src/names/pypi.js';
import { parseHtmlPage, parseJsonPage } from '../../src/pypi/parse.js';
import { renderHtml, renderJson } from '../../src/pypi/render.js';

describe('names (PEP 503)', () => {
  it('normalises', () => {
    expect(normalizeName('FrIeNdLy-._.-bArD')).toBe('friendly-bard');
    expect(normalizeName('django_rest_framework')).toBe('django-rest-framework');
    expect(normalizeName('Foo..Bar')).toBe('foo-bar');
  });
  it('validates before normalising', () => {
    for (const ok of ['a', 'A1', 'foo.bar', 'foo_bar-baz', 'x'.repeat(200)]) expect(isValidProjectName(ok), ok).toBe(true);
    for (const bad of ['', '..', '-foo', 'foo-', 'foo/bar', 'foo\\bar', 'foo\n', 'foo\u0000', 'naïve', 'a b', 'x'.repeat(201)]) {
      expect(isValidProjectName(bad), JSON.stringify(bad)).toBe(false);
    }
  });
  it('validates filenames', () => {
    expect(isValidFilename('torch-2.5.1+cpu-cp311-cp311-linux_x86_64.whl')).toBe(true);
    expect(isValidFilename('pkg-1!2.0.tar.gz')).toBe(true);
    for (const bad of ['../x.whl', 'a/b.whl', '.hidden', 'a%2fb', 'a..b.whl', 'x'.repeat(256)]) expect(isValidFilename(bad), bad).toBe(false);
  });
});

describe('distribution filenames', () => {
  it('parses wheels, including build tags and escaped names', () => {
    expect(parseFilename('tiny_lib-1.0-py3-none-any.whl', 'tiny-lib')).toEqual({ kind: 'wheel', name: 'tiny-lib', version: '1.0' });
    expect(parseFilename('torch-2.5.1+cpu-1-cp311-cp311-linux_x86_64.whl', 'torch')).toEqual({ kind: 'wheel', name: 'torch', version: '2.5.1+cpu' });
    expect(parseFilename('x-1.0-py3.whl', 'x')).toBeNull();
    expect(parseFilename('x-notaversion-py3-none-any.whl', 'x')).toBeNull();
  });
  it('parses sdists, with dashes in legacy names', () => {
    expect(parseFilename('foo-bar-1.0.tar.gz', 'foo-bar')).toEqual({ kind: 'sdist', name: 'foo-bar', version: '1.0' });
    expect(parseFilename('Foo_Bar-2.0rc1.zip', 'foo-bar')).toEqual({ kind: 'sdist', name: 'foo-bar', version: '2.0rc1' });
    expect(parseFilename('evil-1.0.tar.gz', 'requests')).toBeNull();
    expect(parseFilename('foo-1.0.exe', 'foo')).toBeNull();
  });
});

describe('Accept negotiation (PEP 691)', () => {
  const pip = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01';
  const uv = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01';
  it('picks JSON for pip and uv', () => {
    expect(negotiate(pip)).toBe('application/vnd.pypi.simple.v1+json');
    expect(negotiate(uv)).toBe('application/vnd.pypi.simple.v1+json');
  });
  it('honours q-values over order, and aliases', () => {
    expect(negotiate('text/html;q=1, application/vnd.pypi.simple.v1+json;q=0.5')).toBe('text/html');
    expect(negotiate('application/vnd.pypi.simple.latest+json')).toBe('application/vnd.pypi.simple.v1+json');
    expect(negotiate('application/vnd.pypi.simple.latest+html')).toBe('application/vnd.pypi.simple.v1+html');
  });
  it('treats a missing header as */* and serves the most expressive type', () => {
    expect(negotiate(undefined)).toBe('application/vnd.pypi.simple.v1+json');
    expect(negotiate('*/*')).toBe('application/vnd.pypi.simple.v1+json');
    expect(negotiate('text/*')).toBe('text/html');
  });
  it('refuses what it cannot offer, q=0 and malformed q', () => {
    expect(negotiate('application/json')).toBeNull();
    expect(negotiate('application/vnd.pypi.simple.v1+json;q=0')).toBeNull();
    expect(negotiate('text/html;q=abc')).toBeNull();
    expect(negotiate('text/html;q=1.5')).toBeNull();
    expect(negotiate('*/*, application/vnd.pypi.simple.v1+json;q=0')).toBe('application/vnd.pypi.simple.v1+html');
  });
  it('lets ?format= override Accept', () => {
    expect(negotiate(pip, 'text/html')).toBe('text/html');
    expect(negotiate(pip, 'application/json')).toBeNull();
  });
});

describe('page parsing', () => {
  const page = new URL('https://idx.example/simple/tinylib/');
  it('parses HTML: relative links, fragments, entities, yanked, metadata; ignores <base>', () => {
    const html = `<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"><base href="https://evil.example/"></head><body>
      <a href="../../files/tinylib-1.0.tar.gz#sha256=ABCDEF" data-requires-python="&gt;=3.8,&lt;4">tinylib-1.0.tar.gz</a>
      <a href="https://files.example/t/tinylib-1.1-py3-none-any.whl#md5=00" data-yanked data-dist-info-metadata="sha256=ff">tinylib-1.1-py3-none-any.whl</a>
      <a href="https://files.example/t/tinylib-1.2-py3-none-any.whl" data-yanked="bad build" data-core-metadata="true">tinylib-1.2-py3-none-any.whl</a>
      <a href="https://files.example/t/other.whl">tinylib-9.9-py3-none-any.whl</a>
    </body></html>`;
    const p = parseHtmlPage(html, page, 'tinylib');
    expect(p.files).toEqual([
      {
        filename: 'tinylib-1.0.tar.gz',
        url: 'https://idx.example/files/tinylib-1.0.tar.gz',
        hashes: { sha256: 'abcdef' },
        yanked: false,
        requiresPython: '>=3.8,<4',
      },
      {
        filename: 'tinylib-1.1-py3-none-any.whl',
        url: 'https://files.example/t/tinylib-1.1-py3-none-any.whl',
        hashes: { md5: '00' },
        yanked: '',
        coreMetadata: { sha256: 'ff' },
      },
      {
        filename: 'tinylib-1.2-py3-none-any.whl',
        url: 'https://files.example/t/tinylib-1.2-py3-none-any.whl',
        hashes: {},
        yanked: 'bad build',
        coreMetadata: true,
      },
    ]);
  });
  it('rejects a page that is not an index page (captive portal, login page)', () => {
    expect(() => parseHtmlPage('<html><title>Log in</title><body>Welcome</body></html>', page, 'x')).toThrow(/not a simple-index/);
    expect(() => parseHtmlPage('<meta name="pypi:repository-version" content="2.0">', page, 'x')).toThrow(/unsupported/);
  });
  it('parses JSON, dropping entries whose filename is not their URL', () => {
    const doc = {
      meta: { 'api-version': '1.1' },
      name: 'tinylib',
      files: [
        {
          filename: 'tinylib-1.0.tar.gz',
          url: '../../f/tinylib-1.0.tar.gz',
          hashes: { SHA256: 'AB' },
          size: 10,
          'upload-time': '2024-01-01T00:00:00Z',
          'core-metadata': { sha256: 'cd' },
          yanked: false,
        },
        { filename: '../../evil.whl', url: 'https://x/evil.whl', hashes: {} },
        { filename: 'tinylib-2.0.tar.gz', url: 'https://x/tinylib-2.0.tar.gz', hashes: {}, yanked: '' },
      ],
    };
    const p = parseJsonPage(JSON.stringify(doc), page, 'tinylib');
    expect(p.files).toEqual([
      {
        filename: 'tinylib-1.0.tar.gz',
        url: 'https://idx.example/f/tinylib-1.0.tar.gz',
        hashes: { sha256: 'ab' },
        yanked: false,
        size: 10,
        uploadTime: '2024-01-01T00:00:00.000000Z', // as PEP 700 writes it (the upstream wrote 2024-01-01T00:00:00Z)
        coreMetadata: { sha256: 'cd' },
      },
      { filename: 'tinylib-2.0.tar.gz', url: 'https://x/tinylib-2.0.tar.gz', hashes: {}, yanked: '' },
    ]);
    expect(() => parseJsonPage('{"message":"error"}', page, 'x')).toThrow(/not a PEP 691/);
    expect(() => parseJsonPage('<html>', page, 'x')).toThrow(/invalid JSON/);
  });
});

describe('rendering', () => {
  const filtered = {
    name: 'tinylib',
    versions: ['1.0'],
    files: [
      {
        filename: 'tinylib-1.0.tar.gz',
        version: '1.0',
        url: 'https://up/x',
        hashes: { sha256: 'aa' },
        yanked: '' as const,
        requiresPython: '>=3.8,<4',
        coreMetadata: { sha256: 'bb' },
        size: 5,
      },
    ],
  };
  it('renders escaped HTML pointing at the proxy', () => {
    const html = renderHtml(filtered);
    expect(html).toContain(
      '<a href="../../files/tinylib/tinylib-1.0.tar.gz#sha256=aa" data-requires-python="&gt;=3.8,&lt;4" data-yanked="" data-core-metadata="sha256=bb" data-dist-info-metadata="sha256=bb">tinylib-1.0.tar.gz</a>',
    );
    expect(html).not.toContain('https://up/');
  });
  it('renders JSON 1.1 with versions and core-metadata only', () => {
    const doc = JSON.parse(renderJson(filtered));
    expect(doc).toEqual({
      meta: { 'api-version': '1.1' },
      name: 'tinylib',
      versions: ['1.0'],
      files: [
        {
          filename: 'tinylib-1.0.tar.gz',
          url: '../../files/tinylib/tinylib-1.0.tar.gz',
          hashes: { sha256: 'aa' },
          'requires-python': '>=3.8,<4',
          yanked: true,
          'core-metadata': { sha256: 'bb' },
          size: 5,
        },
      ],
    });
  });
  it('falls back to API 1.0 when a size is unknown', () => {
    const doc = JSON.parse(renderJson({ ...filtered, files: [{ ...filtered.files[0], size: undefined }] }));
    expect(doc.meta['api-version']).toBe('1.0');
  });
});
