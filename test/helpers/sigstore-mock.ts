import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { initializeCA, initializeCTLog, initializeTLog } from '@sigstore/mock';
import { parseTrustRoot, type LoadedTrustRoot } from '../../src/signing/trust.js';

/**
 * A private Sigstore for tests (issue 26): a Fulcio CA with a CT log and a Rekor log minted by
 * @sigstore/mock, its trusted root, and a signer that makes v0.3 DSSE bundles (in-toto statements)
 * with the certificate and log entry the test asks for: any SAN and issuer, the certificate's and
 * the log entry's times, or no log entry at all.
 */
const b64 = (b: Buffer | ArrayBufferView) =>
  Buffer.from(b instanceof Buffer ? b : Buffer.from((b as Uint8Array).buffer, (b as Uint8Array).byteOffset, b.byteLength)).toString('base64');
/** A view's own bytes (not the whole ArrayBuffer it may sit in). */
const buf = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();
const TLOG_URL = 'https://tlog.airlock.test';
const ISSUER_V2 = '1.3.6.1.4.1.57264.1.8';
const START = '2020-01-01T00:00:00Z';

export interface MintOptions {
  san: string;
  issuer: string;
  /** Extra Fulcio extensions (v2: a DER UTF8String is made of the value). */
  extensions?: { oid: string; value: string }[];
  /** When the certificate is issued (valid 10 minutes from then); default now + 1 minute. */
  certTime?: number;
  /** When the log entry is integrated; default certTime + 2 minutes. */
  logTime?: number;
  /** Leave the log entry out of the bundle. */
  noLog?: boolean;
}

export interface PrivateSigstore {
  trust: LoadedTrustRoot;
  rootJson: string;
  /** A bundle (JSON text) signing an in-toto statement whose subject is `digest` ("sha256:<hex>"). */
  dsseBundle(digest: string, o: MintOptions): Promise<string>;
  /** A bundle signed by a bare key (key mode), with or without a log entry. */
  keyBundle(digest: string, key: { privateKey: KeyObject; publicKey: KeyObject }, o?: { logTime?: number; noLog?: boolean }): Promise<string>;
  /** A message-signature bundle over `artifact` by a bare key (cosign's legacy form), with a hashedrekord log entry. */
  keyMessageBundle(artifact: Buffer, key: { privateKey: KeyObject; publicKey: KeyObject }): Promise<string>;
  /** The private CA's root certificate (PEM), for certificate-mode signers. */
  caPem: string;
}

function pae(type: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${payload.length} `), payload]);
}

function statementFor(digest: string): Buffer {
  const [alg, hex] = digest.split(':');
  return Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'artefact', digest: { [alg]: hex } }],
      predicateType: 'https://airlock.test/v1',
      predicate: {},
    }),
  );
}

export async function privateSigstore(): Promise<PrivateSigstore> {
  const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caKey = ec();
  const ctKey = ec();
  const tlogKey = ec();
  const spki = (k: KeyObject) => k.export({ type: 'spki', format: 'der' }) as Buffer;
  // The CA and CT log are made once; a CT log with a clock per certificate would need a CA per certificate too.
  const rootJsonOf = (caRoot: Buffer, ctPub: Buffer, ctId: Buffer) =>
    JSON.stringify({
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [
        {
          baseUrl: TLOG_URL,
          hashAlgorithm: 'SHA2_256',
          publicKey: { rawBytes: b64(spki(tlogKey.publicKey)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: START } },
          logId: { keyId: b64(sha256(spki(tlogKey.publicKey))) },
        },
      ],
      certificateAuthorities: [
        {
          subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
          uri: 'https://fulcio.airlock.test',
          certChain: { certificates: [{ rawBytes: b64(caRoot) }] },
          validFor: { start: START },
        },
      ],
      ctlogs: [
        {
          baseUrl: 'https://ctfe.airlock.test',
          hashAlgorithm: 'SHA2_256',
          publicKey: { rawBytes: b64(ctPub), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: START } },
          logId: { keyId: b64(ctId) },
        },
      ],
      timestampAuthorities: [],
    });
  const ct = await initializeCTLog(ctKey);
  const ca = await initializeCA(caKey, ct);
  const rootJson = rootJsonOf(buf(ca.rootCertificate), ct.publicKey, buf(ct.logID));
  const parsed = parseTrustRoot(rootJson, Date.now(), { source: 'imported', importedAt: Date.now() });
  if (!parsed.ok) throw new Error(parsed.reason);

  async function logEntry(body: object, at: number) {
    const tlog = await initializeTLog(TLOG_URL, tlogKey, new Date(at));
    const res = Object.values(await tlog.log(body))[0] as {
      body: string;
      integratedTime: number;
      logID: string;
      logIndex: number;
      verification: {
        signedEntryTimestamp: string;
        inclusionProof: { logIndex: number; treeSize: number; rootHash: string; hashes: string[]; checkpoint: string };
      };
    };
    const p = res.verification.inclusionProof;
    return {
      logIndex: String(res.logIndex),
      logId: { keyId: b64(Buffer.from(res.logID, 'hex')) },
      kindVersion: { kind: (body as { kind: string }).kind, version: '0.0.1' },
      integratedTime: String(res.integratedTime),
      inclusionPromise: { signedEntryTimestamp: res.verification.signedEntryTimestamp },
      inclusionProof: {
        logIndex: String(p.logIndex),
        rootHash: b64(Buffer.from(p.rootHash, 'hex')),
        treeSize: String(p.treeSize),
        hashes: p.hashes,
        checkpoint: { envelope: p.checkpoint },
      },
      canonicalizedBody: res.body,
    };
  }

  function dsse(digest: string, privateKey: KeyObject) {
    const payload = statementFor(digest);
    const type = 'application/vnd.in-toto+json';
    // Over the hash of the key's curve, as Sigstore clients sign (P-256 SHA-256, P-384 SHA-384, P-521 SHA-512).
    const curve = privateKey.asymmetricKeyDetails?.namedCurve;
    const sig = sign(curve === 'secp384r1' ? 'sha384' : curve === 'secp521r1' ? 'sha512' : 'sha256', pae(type, payload), privateKey);
    return { payload, type, sig };
  }

  function dsseBody(payload: Buffer, sig: Buffer, verifier: string) {
    return {
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        payloadHash: { algorithm: 'sha256', value: sha256(payload).toString('hex') },
        signatures: [{ signature: b64(sig), verifier: Buffer.from(verifier).toString('base64') }],
      },
    };
  }

  const caDer = buf(ca.rootCertificate);
  return {
    trust: parsed.root,
    rootJson,
    caPem: `-----BEGIN CERTIFICATE-----\n${caDer.toString('base64')}\n-----END CERTIFICATE-----\n`,
    async keyMessageBundle(artifact, key) {
      const sig = sign('sha256', artifact, key.privateKey);
      const pem = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
      const digest = sha256(artifact);
      const body = {
        apiVersion: '0.0.1',
        kind: 'hashedrekord',
        spec: {
          data: { hash: { algorithm: 'sha256', value: digest.toString('hex') } },
          signature: { content: b64(sig), publicKey: { content: Buffer.from(pem).toString('base64') } },
        },
      };
      return JSON.stringify({
        mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        verificationMaterial: { publicKey: { hint: '' }, tlogEntries: [await logEntry(body, Date.now())] },
        messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: b64(digest) }, signature: b64(sig) },
      });
    },
    async dsseBundle(digest, o) {
      const certTime = o.certTime ?? Date.now() + 60_000;
      const logTime = o.logTime ?? certTime + 120_000;
      const leafKey = ec();
      const issuing = await initializeCA(caKey, ct, new Date(certTime));
      const cert = buf(
        await issuing.issueCertificate({
          publicKey: new Uint8Array(spki(leafKey.publicKey)),
          subjectAltName: o.san,
          extensions: [{ oid: ISSUER_V2, value: o.issuer }, ...(o.extensions ?? [])],
        }),
      );
      const { payload, type, sig } = dsse(digest, leafKey.privateKey);
      const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64')}\n-----END CERTIFICATE-----\n`;
      const entries = o.noLog ? [] : [await logEntry(dsseBody(payload, sig, pem), logTime)];
      return JSON.stringify({
        mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        verificationMaterial: { certificate: { rawBytes: b64(cert) }, tlogEntries: entries },
        dsseEnvelope: { payload: b64(payload), payloadType: type, signatures: [{ sig: b64(sig), keyid: '' }] },
      });
    },
    async keyBundle(digest, key, o = {}) {
      const { payload, type, sig } = dsse(digest, key.privateKey);
      const pem = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
      const entries = o.noLog ? [] : [await logEntry(dsseBody(payload, sig, pem), o.logTime ?? Date.now())];
      return JSON.stringify({
        mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        verificationMaterial: { publicKey: { hint: '' }, tlogEntries: entries },
        dsseEnvelope: { payload: b64(payload), payloadType: type, signatures: [{ sig: b64(sig), keyid: '' }] },
      });
    },
  };
}
