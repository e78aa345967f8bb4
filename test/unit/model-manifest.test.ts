/**
 * The statement rules of model signing (issue 26 item 5) on statements signed here with a throwaway P-384 key in
 * model_signing's key-mode format, so each case reaches the statement check: degenerate or foreign statements,
 * malformed bundles, and bounded time for huge input.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dsse } from '@sigstore/core';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { MAX_MODEL_SIG_BYTES, verifyModelSignature } from '../../src/signing/model-sig.js';
import { MAX_MODEL_RESOURCES, rootDigestOf } from '../../src/signing/model-manifest.js';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const pair = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
const KEY = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const SIGNER: CompiledSigner = { kind: 'key', name: 'throwaway', pem: KEY };
const PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** A bundle as model_signing's key mode writes it, signing `payload` (a statement object or raw text). */
function bundle(payload: unknown, over: (b: any) => void = () => {}): Buffer {
  const bytes = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const sig = sign('sha384', dsse.preAuthEncoding(PAYLOAD_TYPE, bytes), pair.privateKey);
  const b = {
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint: sha256(KEY) }, tlogEntries: [] },
    dsseEnvelope: { payload: bytes.toString('base64'), payloadType: PAYLOAD_TYPE, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  };
  over(b);
  return Buffer.from(JSON.stringify(b));
}

type Files = Record<string, string>;
/** A model_signing v1.0 statement for `files` (name → sha256), root digest computed as model_signing does. */
function statement(files: Files, edit: (s: any) => void = () => {}): any {
  const resources = Object.keys(files)
    .sort()
    .map((name) => ({ name, algorithm: 'sha256', digest: files[name] }));
  const s = {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'm', digest: { sha256: rootDigestOf(resources.map((r) => r.digest)) } }],
    predicateType: 'https://model_signing/signature/v1.0',
    predicate: { serialization: { method: 'files', hash_type: 'sha256', allow_symlinks: false, ignore_paths: ['model.sig'] }, resources },
  };
  edit(s);
  return s;
}

const FILES: Files = { 'config.json': sha256('{}'), 'weights/model-00001.safetensors': sha256('w1'), 'weights/model-00002.safetensors': sha256('w2') };
const commit = (extra: Files = {}) => new Map(Object.entries({ ...FILES, 'model.sig': sha256('sig'), ...extra }));
const check = (b: Buffer, files = commit()) => verifyModelSignature(b, files, SIGNER, null);

describe('model signing statements', () => {
  it('verifies a statement made the way model_signing makes it (files in subdirectories)', () => {
    const r = check(bundle(statement(FILES)));
    expect(r.reason).toBeUndefined();
    expect(r.files).toEqual({ signed: 3, ignored: ['model.sig'] });
  });

  it('refuses a subject that the listed digests do not hash to', () => {
    const s = statement(FILES, (s) => (s.subject[0].digest.sha256 = sha256('other')));
    expect(check(bundle(s)).reason).toMatch(/^model\.sig: the signed file list hashes to root digest [0-9a-f]{64}, not the statement's subject [0-9a-f]{64}$/);
  });

  it('uses the listed order for the root digest (a reordered list keeps its own root)', () => {
    const s = statement(FILES, (s) => {
      s.predicate.resources.reverse();
      s.subject[0].digest.sha256 = rootDigestOf(s.predicate.resources.map((r: any) => r.digest));
    });
    expect(check(bundle(s)).ok).toBe(true);
    const stale = statement(FILES, (s) => s.predicate.resources.reverse());
    expect(check(bundle(stale)).reason).toMatch(/hashes to root digest/);
  });

  it('ignores whole directories named in ignore_paths, and refuses a signed file inside one', () => {
    const s = statement({ 'config.json': FILES['config.json'] }, (s) => s.predicate.serialization.ignore_paths.push('weights/', './docs'));
    expect(check(bundle(s), commit({ 'docs/README.md': sha256('r') })).files).toEqual({
      signed: 1,
      ignored: ['weights/model-00001.safetensors', 'weights/model-00002.safetensors', 'model.sig', 'docs/README.md'],
    });
    const inside = statement(FILES, (s) => s.predicate.serialization.ignore_paths.push('weights'));
    expect(check(bundle(inside)).reason).toMatch(
      /^model\.sig: signed file "weights\/model-00001\.safetensors" lies in an ignored path \(and 1 more differences\)$/,
    );
    const prefixOnly = statement({ 'config.json': FILES['config.json'] }, (s) => s.predicate.serialization.ignore_paths.push('weight'));
    expect(check(bundle(prefixOnly)).reason).toMatch(/file "weights\/model-00001\.safetensors" is not in the signed list/);
  });

  it('refuses degenerate statements that would sign nothing', () => {
    for (const p of ['.', '', './', './/.']) {
      const s = statement(FILES, (s) => s.predicate.serialization.ignore_paths.push(p));
      expect(check(bundle(s)).reason, p).toBe(`model.sig: ignore path ${JSON.stringify(p)} covers the whole repository`);
    }
    const empty = statement({}, (s) => s.predicate.serialization.ignore_paths.push('config.json', 'weights'));
    expect(check(bundle(empty)).reason).toBe('model.sig: the signature signs no files');
  });

  it('gives ignore paths outside the model no effect', () => {
    const s = statement(FILES, (s) => s.predicate.serialization.ignore_paths.push('../x', '/etc', '/', 'weights/..'));
    expect(check(bundle(s)).ok).toBe(true);
    const escapes = statement({ 'config.json': FILES['config.json'] }, (s) => s.predicate.serialization.ignore_paths.push('../weights'));
    expect(check(bundle(escapes)).reason).toMatch(/is not in the signed list/);
  });

  it('refuses irregular and duplicated resource names', () => {
    for (const name of ['../config.json', '/config.json', 'a//b', './config.json', 'weights\\x', '']) {
      const s = statement(FILES, (s) => (s.predicate.resources[0].name = name));
      expect(check(bundle(s)).reason, name).toBe(`model.sig: signed resource name ${JSON.stringify(name)} is not a plain relative path`);
    }
    const dup = statement(FILES, (s) => s.predicate.resources.push({ ...s.predicate.resources[0] }));
    expect(check(bundle(dup)).reason).toBe('model.sig: signed file "config.json" is listed twice');
  });

  it('refuses other serializations, hashes and predicate types, naming them', () => {
    const cases: [(s: any) => void, string][] = [
      [(s) => (s.predicate.serialization.method = 'shards'), 'serialization method "shards" is not accepted (only "files": whole-file SHA-256s)'],
      [(s) => (s.predicate.serialization.hash_type = 'blake2'), 'hash type "blake2" is not accepted (Airlock knows each file\'s SHA-256)'],
      [
        (s) => (s.predicate.resources[1].algorithm = 'blake3'),
        'signed file "weights/model-00001.safetensors" uses algorithm "blake3" (only sha256 is accepted)',
      ],
      [(s) => (s.predicate.resources[1].digest = 'zz'), 'signed file "weights/model-00001.safetensors" has no valid sha256 digest'],
      [
        (s) => (s.predicateType = 'https://slsa.dev/provenance/v1'),
        'predicate type "https://slsa.dev/provenance/v1" is not a model signature (https://model_signing/signature/v1.0)',
      ],
      [(s) => (s._type = 'https://in-toto.io/Statement/v0.1'), 'the signed payload is not an in-toto v1 statement (_type "https://in-toto.io/Statement/v0.1")'],
      [(s) => s.subject.push(s.subject[0]), 'the statement must have exactly one subject (found 2)'],
      [(s) => delete s.subject[0].digest.sha256, 'the statement subject has no sha256 root digest'],
      [(s) => delete s.predicate.resources, 'the statement has no predicate.resources list'],
    ];
    for (const [edit, reason] of cases) expect(check(bundle(statement(FILES, edit))).reason).toBe(`model.sig: ${reason}`);
    const compat = {
      _type: 'https://in-toto.io/Statement/v1',
      predicateType: 'https://model_signing/Digests/v0.1',
      subject: [{ name: 'config.json', digest: { sha256: FILES['config.json'] } }],
    };
    expect(check(bundle(compat)).reason).toMatch(
      /^model\.sig: predicate type https:\/\/model_signing\/Digests\/v0\.1 \(model_signing v0\.2: no root digest, no ignore paths\) is not accepted/,
    );
  });

  it('refuses malformed bundles with a one-line reason', () => {
    const cases: [Buffer, string][] = [
      [Buffer.from('not json'), 'it is not JSON'],
      [Buffer.from('[]'), 'it is not a Sigstore bundle (not a JSON object)'],
      [Buffer.from('['.repeat(1_000_000)), 'it nests deeper than 64 levels; not a Sigstore bundle'],
      [bundle(statement(FILES), (b) => (b.mediaType = 'application/json')), 'it is not a Sigstore bundle (mediaType "application/json")'],
      [
        bundle(statement(FILES), (b) => (b.mediaType = 'application/vnd.dev.sigstore.bundle+json;version=0.2')),
        'bundle media type "application/vnd.dev.sigstore.bundle+json;version=0.2" is not application/vnd.dev.sigstore.bundle.v0.3+json',
      ],
      [
        bundle(statement(FILES), (b) => ((b.messageSignature = {}), delete b.dsseEnvelope)),
        'the bundle has no DSSE envelope (a model signature signs an in-toto statement)',
      ],
      [bundle(statement(FILES), (b) => (b.dsseEnvelope.payloadType = 'text/plain')), 'the DSSE payload type is "text/plain", not application/vnd.in-toto+json'],
      [
        bundle(statement(FILES), (b) => b.dsseEnvelope.signatures.push(b.dsseEnvelope.signatures[0])),
        'the DSSE envelope must carry exactly one signature (found 2)',
      ],
      [bundle(statement(FILES), (b) => (b.dsseEnvelope.signatures = [])), 'the DSSE envelope must carry exactly one signature (found 0)'],
      [bundle(statement(FILES), (b) => delete b.dsseEnvelope.payload), 'the DSSE envelope has no payload or signature'],
      [bundle('not json'), 'the signed payload is not JSON'],
      [bundle('"a string"'), 'the signed payload is not a JSON object'],
    ];
    for (const [b, reason] of cases) {
      const r = check(b);
      expect(r.ok).toBe(false);
      expect(r.reason).toBe(`model.sig: ${reason}`);
    }
  });

  it('keeps control characters out of the one-line reason', () => {
    const r = check(bundle(statement(FILES)), commit({ 'evil\nname\u001b[2J': sha256('x') }));
    expect(r.reason).toBe('model.sig: file "evil\\nname\\u001b[2J" is not in the signed list (an extra file)');
  });

  it('refuses megabytes of nesting in the bundle or in the signed payload before parsing them', () => {
    const deep = Buffer.alloc(MAX_MODEL_SIG_BYTES, 0x5b);
    let t0 = performance.now();
    expect(check(deep).reason).toBe('model.sig: it nests deeper than 64 levels; not a Sigstore bundle');
    expect(performance.now() - t0).toBeLessThan(8_000); // JSON.parse alone takes ~20 s on it
    const deepPayload = bundle('['.repeat(10_000_000));
    t0 = performance.now();
    expect(check(deepPayload).reason).toBe('model.sig: the signed payload nests deeper than 64 levels; not a model signature');
    expect(performance.now() - t0).toBeLessThan(8_000);
  });

  it('refuses megabytes of small JSON values in the bundle or in the signed payload before parsing them', () => {
    const wide = Buffer.from(`{"mediaType":"x","pad":[${'{},'.repeat(10_000_000)}{}]}`);
    let t0 = performance.now();
    expect(check(wide).reason).toBe('model.sig: it holds more than 10000 JSON values; not a Sigstore bundle');
    expect(performance.now() - t0).toBeLessThan(8_000); // JSON.parse alone takes ~20 s and 700 MB on it
    const widePayload = bundle(`{"_type":"https://in-toto.io/Statement/v1","pad":[${'{},'.repeat(5_000_000)}{}]}`);
    t0 = performance.now();
    expect(check(widePayload).reason).toBe(
      `model.sig: the signed payload holds more than ${8 * MAX_MODEL_RESOURCES + 10_000} JSON values; not a model signature`,
    );
    expect(performance.now() - t0).toBeLessThan(8_000);
  });

  it('refuses a huge model.sig unread, in bounded time', () => {
    const huge = Buffer.alloc(MAX_MODEL_SIG_BYTES + 1, 0x20);
    const t0 = performance.now();
    const r = check(huge);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(r.reason).toBe(`model.sig: it is ${MAX_MODEL_SIG_BYTES + 1} bytes (more than ${MAX_MODEL_SIG_BYTES})`);
  });

  it('handles the largest accepted file list in bounded time, and refuses a longer one', () => {
    const many: Files = {};
    for (let i = 0; i < MAX_MODEL_RESOURCES; i++) many[`shards/part-${String(i).padStart(6, '0')}.bin`] = i.toString(16).padStart(64, '0');
    const files = new Map(Object.entries(many));
    const big = bundle(statement(many));
    const t0 = performance.now();
    const r = verifyModelSignature(big, files, SIGNER, null);
    expect(performance.now() - t0).toBeLessThan(10_000); // about 1 s here (17 MB of JSON); linear in the list
    expect(r.files?.signed).toBe(MAX_MODEL_RESOURCES);
    const over = bundle(statement({ ...many, 'one-more': sha256('x') }));
    expect(verifyModelSignature(over, files, SIGNER, null).reason).toBe(
      `model.sig: the signature lists ${MAX_MODEL_RESOURCES + 1} files (more than ${MAX_MODEL_RESOURCES})`,
    );
  });
});
