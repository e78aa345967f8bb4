import { compareApk } from './apk.js';
import { compareDeb } from './dpkg.js';
import { compareRpm } from './rpm.js';

export { compareApk } from './apk.js';
export { compareDeb, parseDeb } from './dpkg.js';
export { compareRpm, rpmvercmp } from './rpm.js';

export type VersionScheme = 'deb' | 'apk' | 'rpm';

/** The version order of an OS package ecosystem by its OSV name (Debian:12, Alpine:v3.20, Ubuntu:22.04:LTS, ...). */
export function schemeOf(osvEcosystem: string): VersionScheme | null {
  const base = osvEcosystem.split(':')[0];
  if (base === 'Debian' || base === 'Ubuntu') return 'deb';
  if (base === 'Alpine') return 'apk';
  if (base === 'AlmaLinux' || base === 'Rocky Linux' || base === 'Red Hat' || base === 'openSUSE' || base === 'SUSE' || base === 'Mageia') return 'rpm';
  return null;
}

export function compareVersions(scheme: VersionScheme, a: string, b: string): number {
  return scheme === 'deb' ? compareDeb(a, b) : scheme === 'apk' ? compareApk(a, b) : compareRpm(a, b);
}
