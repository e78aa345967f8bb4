import { createHash, sign, type KeyObject } from 'node:crypto';
import { digestOf, type Image } from './fake-registry.js';

/** Key-signed cosign images as the continuity tests need them (test/integration/oci-continuity*.test.ts, break-sighup.test.ts). */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const OCI_ACCEPT = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json'].join(', ');

export const pemOf = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();
/** The identity Airlock gives a key signer: key:<12 hex of the SPKI's sha256>. */
export const idOf = (k: KeyObject) =>
  `key:${createHash('sha256')
    .update(k.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 12)}`;

/** A legacy cosign signature image (tag sha256-<hex>.sig) of `subj`, signed with `key`. */
export function legacySig(subj: Pick<Image, 'digest'>, key: KeyObject): Image {
  const payload = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': subj.digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
  const config = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(config), size: 2 },
      layers: [
        {
          mediaType: SIMPLESIGNING,
          digest: digestOf(payload),
          size: payload.length,
          annotations: { 'dev.cosignproject.cosign/signature': sign('sha256', payload, key).toString('base64') },
        },
      ],
    }),
  );
  return { manifest, digest: digestOf(manifest), mediaType: OCI_MANIFEST, config, layers: [payload] };
}

/** A key signer under policy.signing.signers, as configuration YAML (six spaces in, its PEM below `key: |`). */
export const keySigner = (name: string, key: KeyObject): string =>
  `      ${name}:\n        key: |\n${pemOf(key)
    .trim()
    .split('\n')
    .map((l) => `          ${l}`)
    .join('\n')}`;
