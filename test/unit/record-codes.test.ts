import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { approvalFor } from '../../src/console/approval.js';
import { CODES } from '../../src/console/views.js';
import { RECORD_CODE_LIST, isRecordCode } from '../../src/core/record-codes.js';
import type { StoredPullRecord } from '../../src/storage/meta-store.js';

const SRC = new URL('../../src/', import.meta.url).pathname;
const files = (dir: string): string[] =>
  readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : n.endsWith('.ts') ? [join(dir, n)] : []));

/** One vocabulary for "on record": what rows carry, what the console filters by, what approvals answer. */
describe('record codes', () => {
  it('the console offers exactly the codes a row can carry', () => {
    expect([...CODES].sort()).toEqual([...RECORD_CODE_LIST].sort());
  });

  it('every code literal a refusal or row is given in src/ is in the vocabulary', () => {
    // Literals given as `code: '...'` to rows, refusals and policy decisions (scan findings and protocol error codes are other vocabularies).
    const other = new Set([
      'auto_map',
      'chat_template',
      'chat_template_suspicious',
      'format_mismatch',
      'python_source',
      'keras_lambda',
      'keras_module',
      'not_a_file',
    ]);
    const seen = new Set<string>();
    for (const f of files(SRC)) for (const m of readFileSync(f, 'utf8').matchAll(/\bcode: '([a-z_]+)'/g)) seen.add(m[1]);
    expect(seen.size).toBeGreaterThan(10);
    expect([...seen].filter((c) => !other.has(c) && !isRecordCode(c))).toEqual([]);
  });

  it('every code has an approval answer, and a pin only where the policy can lift the refusal', () => {
    const row = (code: string, ecosystem: StoredPullRecord['ecosystem'] = 'pypi'): StoredPullRecord => ({
      id: 1,
      ts: 0,
      client: 'c',
      ecosystem,
      name: 'x',
      version: '1.0',
      cache: 'none',
      decision: 'deny',
      code,
    });
    for (const code of RECORD_CODE_LIST) expect(approvalFor(row(code)).note, code).toBeTruthy();
    expect(approvalFor(row('version_not_allowed')).command).toBe("airlock pin pypi 'x==1.0'");
    for (const code of ['digest_mismatch', 'file_host', 'bad_token', 'bad_request', 'upstream_failed', 'internal_missing', 'no_sha256', 'client_gone'])
      expect(approvalFor(row(code)).command, code).toBeUndefined();
    // A row from before codes existed falls back to what its fields say.
    expect(approvalFor({ ...row('x'), code: undefined }).command).toBe("airlock pin pypi 'x==1.0'");
  });
});
