import { isValidRepoId, type HfRepoType } from '../names/hf.js';

/**
 * Parsing of Hub URLs under /hf. Repo ids have one or two segments, so routes are found by their
 * marker (/resolve/, /tree/, /revision/, /paths-info/, /refs) rather than by counting segments.
 * Revisions arrive encoded (refs%2Fpr%2F1) or raw (refs/pr/1, as @huggingface/hub's listFiles
 * sends them); segments are decoded only after the route is known.
 */
export type HfRoute =
  | { kind: 'info'; type: HfRepoType; repo: string; revision: string }
  | { kind: 'tree'; type: HfRepoType; repo: string; revision: string; path: string }
  | { kind: 'paths-info'; type: HfRepoType; repo: string; revision: string }
  | { kind: 'refs'; type: HfRepoType; repo: string }
  | { kind: 'resolve'; type: HfRepoType; repo: string; revision: string; path: string; raw: boolean }
  | { kind: 'xet'; type: HfRepoType; repo: string }
  | { kind: 'whoami' }
  | { kind: 'unsupported'; what: string };

export class HfPathError extends Error {}

function decode(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    throw new HfPathError(`bad percent-encoding in ${JSON.stringify(seg.slice(0, 80))}`);
  }
}

/** A file path inside a repository: relative, no "." or ".." segments, no backslashes or NUL. */
export function checkFilePath(p: string): string {
  if (p.length === 0 || p.length > 1024) throw new HfPathError('expected a file path inside the repository');
  if (p.startsWith('/') || p.includes('\\') || p.includes('\0') || /^[A-Za-z]:/.test(p))
    throw new HfPathError(`${JSON.stringify(p.slice(0, 100))} is not a relative path inside the repository`);
  if (p.split('/').some((s) => s === '' || s === '.' || s === '..'))
    throw new HfPathError(`${JSON.stringify(p.slice(0, 100))} has an empty, "." or ".." segment`);
  return p;
}

/** Split "rev[/rest]": a raw refs/pr/N or refs/convert/NAME takes three segments, anything else one. */
function takeRevision(segs: string[]): { revision: string; rest: string[] } {
  if (segs.length === 0) throw new HfPathError('expected a revision');
  if (segs[0] === 'refs' && segs.length >= 3) return { revision: segs.slice(0, 3).map(decode).join('/'), rest: segs.slice(3) };
  return { revision: decode(segs[0]), rest: segs.slice(1) };
}

const API_MARKERS = new Set(['revision', 'tree', 'paths-info', 'refs', 'xet-read-token', 'xet-write-token', 'preupload', 'commit', 'resolve-cache']);

/**
 * Choose where the repo id ends: one or two segments before a marker. When both readings fit
 * (a two-part repo whose name is itself a marker word), the one the policy knows wins.
 */
function splitRepo(
  segs: string[],
  markers: Set<string>,
  known: (repo: string) => boolean,
): { repo: string; marker: string | undefined; rest: string[] } | null {
  // The repo id's segments and the marker are decoded here (a client may encode any character,
  // `ot%68er`); what follows the marker is decoded once its route is known.
  const d = segs.slice(0, 3).map(decode);
  const options: { repo: string; marker: string | undefined; rest: string[] }[] = [];
  if (segs.length >= 2 && markers.has(d[1])) options.push({ repo: d[0], marker: d[1], rest: segs.slice(2) });
  if (segs.length >= 3 && markers.has(d[2])) options.push({ repo: `${d[0]}/${d[1]}`, marker: d[2], rest: segs.slice(3) });
  if (segs.length === 1) options.push({ repo: d[0], marker: undefined, rest: [] });
  if (segs.length === 2 && !markers.has(d[1])) options.push({ repo: `${d[0]}/${d[1]}`, marker: undefined, rest: [] });
  const valid = options.filter((o) => isValidRepoId(o.repo));
  return valid.find((o) => known(o.repo)) ?? valid[0] ?? null;
}

/** @param raw the path after "/hf/", still percent-encoded. */
export function parseHfPath(raw: string, known: (type: HfRepoType, repo: string) => boolean): HfRoute {
  const segs = raw.split('/');
  if (segs[segs.length - 1] === '' && segs.length > 1) segs.pop();
  if (segs[0] === 'api') {
    const kind = segs[1];
    if (kind === 'whoami-v2' && segs.length === 2) return { kind: 'whoami' };
    const type: HfRepoType | undefined = kind === 'models' ? 'model' : kind === 'datasets' ? 'dataset' : undefined;
    if (!type) return { kind: 'unsupported', what: `/api/${(kind ?? '').slice(0, 40)}` };
    const split = splitRepo(segs.slice(2), API_MARKERS, (r) => known(type, r));
    if (!split) throw new HfPathError('expected a repository id such as "org/name"');
    const { repo, marker, rest } = split;
    switch (marker) {
      case undefined:
        return { kind: 'info', type, repo, revision: 'HEAD' };
      case 'revision': {
        if (rest.length === 0) throw new HfPathError('expected a revision');
        return { kind: 'info', type, repo, revision: rest.map(decode).join('/') };
      }
      case 'tree': {
        const { revision, rest: p } = takeRevision(rest);
        const path = p.map(decode).join('/');
        return { kind: 'tree', type, repo, revision, path: path === '' ? '' : checkFilePath(path) };
      }
      case 'paths-info': {
        if (rest.length === 0) throw new HfPathError('expected a revision');
        return { kind: 'paths-info', type, repo, revision: rest.map(decode).join('/') };
      }
      case 'refs':
        return { kind: 'refs', type, repo };
      case 'xet-read-token':
      case 'xet-write-token':
        return { kind: 'xet', type, repo };
      default:
        return { kind: 'unsupported', what: marker };
    }
  }
  let type: HfRepoType = 'model';
  let s = segs;
  if (segs[0] === 'datasets') {
    type = 'dataset';
    s = segs.slice(1);
  } else if (segs[0] === 'spaces' || segs[0] === 'kernels') {
    return { kind: 'unsupported', what: segs[0] };
  }
  const split = splitRepo(s, new Set(['resolve', 'raw']), (r) => known(type, r));
  if (!split || !split.marker) return { kind: 'unsupported', what: 'this path' };
  const { revision, rest } = takeRevision(split.rest);
  return { kind: 'resolve', type, repo: split.repo, revision, path: checkFilePath(rest.map(decode).join('/')), raw: split.marker === 'raw' };
}
