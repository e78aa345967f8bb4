import { loadConfig } from '../../config/load.js';
import { resolveHfPin, resolveOciPin, resolvePypiPin, writeHfPin, writeOciPin, writePypiPin } from '../pin.js';
import { readFileSync } from 'node:fs';
import { lookalikeGate } from '../lookalike.js';
import { keepLoadable, type PinOutcome } from '../pin-apply.js';
import { recordPinSigners } from '../pin-signer.js';
import { fail, type Command, type CommandContext } from './shared.js';

/**
 * `airlock pin pypi|oci|hf`: resolve a release, tag or revision upstream (../pin.ts) and write the
 * pin into the policy, keeping its comments (--print: show the pin, write nothing). The policy is
 * loaded again after the write, so a pin never leaves a policy that fails to load. An OCI pin
 * where the image gate applies is judged at once (../image.ts), so no client waits on its first pull.
 */

/**
 * An accepted look-alike (../lookalike.ts): its comment is written by the editor above the entry the
 * pin adds, in the file's line endings; said here, and when it is not in the file (the entry was
 * already there), the reviewer is told to add it.
 */
function noteAccepted(policyFile: string, value: string, comment: string): void {
  process.stderr.write(`warning: ${comment}\n`);
  if (!readFileSync(policyFile, 'utf8').includes(`# ${comment}`))
    process.stderr.write(`warning: the entry of ${value} was not found to comment in ${policyFile}; add "# ${comment}" beside it\n`);
}
/**
 * --print: the pin as JSON, after the same look-alike gate as a writing pin (a look-alike is refused
 * without --accept-lookalike; accepted, it is said on stderr with the comment the entry would get).
 */
function printed(entry: object, accepted: string | null): void {
  if (accepted) process.stderr.write(`warning: ${accepted} (the entry would get this comment)\n`);
  process.stdout.write(JSON.stringify(entry) + '\n');
}

/** The word a single pin has always printed for an entry it found ("updated"), and what it says when the entry already held the pin. */
/**
 * Write one pin through the byte-exact editor (an accepted look-alike's comment above its entry),
 * then load the policy again: a pin never leaves one that fails to load (the old bytes go back).
 */
function writePin(configFile: string, policyFile: string, name: string, accepted: string | null, write: (comment?: string) => PinOutcome): PinOutcome {
  return keepLoadable(configFile, policyFile, () => {
    const how = write(accepted ?? undefined);
    if (accepted) noteAccepted(policyFile, name, accepted);
    return how;
  });
}

const verb = (how: PinOutcome) => (how === 'added' ? 'added' : 'updated');
const same = (how: PinOutcome) => (how === 'unchanged' ? '; already pinned: nothing to change' : '');

async function pinOci({ values, configFile }: CommandContext, req: string): Promise<void> {
  const pin = await resolveOciPin(configFile, req);
  const loaded = loadConfig(configFile);
  const accepted = await lookalikeGate(loaded, 'oci', pin.repository, values['accept-lookalike']);
  if (values.print) return printed(pin, accepted);
  ociAgeGate(loaded, pin, values['accept-new'] === true);
  const how = writePin(configFile, loaded.policyFile, pin.repository, accepted, (c) => writeOciPin(loaded.policyFile, loaded.policyPathInFile, pin, c));
  const what = pin.mediaType.includes('index') || pin.mediaType.includes('list') ? `index of ${pin.children} platforms` : `manifest with ${pin.children} blobs`;
  process.stdout.write(`${verb(how)} ${pin.repository}${pin.tag ? `:${pin.tag}` : ''} -> ${pin.digest} (${what}${same(how)}) in ${loaded.policyFile}\n`);
  if (how !== 'unchanged') await recordPinSigners(configFile, [{ eco: 'oci', repository: pin.repository, digest: pin.digest }], process.stdout);
  await judgeIfGated(configFile, pin.repository, pin.digest);
}

/** Where the image gate applies, judge a pinned image now (layers fetched into the cache, inventory stored): no client waits for it on its first pull. */
export async function judgeIfGated(configFile: string, repository: string, digest: string, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  if (!loadConfig(configFile).policy.images.gates(repository)) return;
  const { checkImage, formatReport } = await import('../image.js');
  const rep = await checkImage(configFile, `docker://${repository}@${digest}`);
  out.write(formatReport(rep));
  const refused = rep.platforms.filter((p) => !p.verdict.decision.allow);
  if (refused.length)
    process.stderr.write(
      `warning: the image gate will refuse ${refused.map((p) => p.platform ?? p.digest).join(', ')} of ${repository}@${digest} until the findings are fixed or excepted\n`,
    );
}

/**
 * Minimum age at pin time (issue 27): every commit Airlock serves is pinned, so hf.min_age applies
 * where a branch or tag becomes a pin. A commit named by its id is the reviewer's own choice and is
 * not aged; a ref that resolves to a younger commit is refused unless --accept-new.
 */
function hfAgeGate(loaded: ReturnType<typeof loadConfig>, pin: Awaited<ReturnType<typeof resolveHfPin>>, acceptNew: boolean): void {
  if (!pin.ref) return;
  const name = `${pin.type === 'dataset' ? 'datasets/' : ''}${pin.repo}@${pin.ref} (commit ${pin.commit})`;
  const v = loaded.policy.hf.commitAge(name, pin.date ?? null, Date.now());
  if (!v) return;
  if (!acceptNew) fail(`pin: ${v.reason}. Not pinned: pin an older commit by its id, wait, or review it and pin again with --accept-new`, 1);
  process.stderr.write(`warning: ${v.reason}; pinned anyway (--accept-new)\n`);
}

/**
 * Minimum age at pin time for an image (issue 27), as for the Hub: a tag whose digest Airlock first
 * saw less than oci.min_age ago (the resolve just recorded a first sight) is refused unless
 * --accept-new; an image named by digest is the reviewer's choice. The server ages the tag anyway,
 * so --accept-new only writes it early: the tag serves the digest from the time the reason names.
 */
function ociAgeGate(loaded: ReturnType<typeof loadConfig>, pin: Awaited<ReturnType<typeof resolveOciPin>>, acceptNew: boolean): void {
  if (!pin.tag) return;
  const v = loaded.policy.oci.decideTagAge(pin.repository, pin.tag, pin.digest, pin.firstSeen, Date.now());
  if (!v) return;
  const reason = v.reason.replace(/; to take it now, .*$/, '');
  if (!acceptNew) fail(`pin: ${reason}. Not pinned: pin it by digest (${pin.repository}@${pin.digest}) after review, wait, or pin again with --accept-new`, 1);
  process.stderr.write(`warning: ${reason}; pinned anyway (--accept-new): pulls by this tag are refused until then, a pull by digest is served now\n`);
}

async function pinHf({ values, configFile }: CommandContext, req: string): Promise<void> {
  const pin = await resolveHfPin(configFile, req);
  const loaded = loadConfig(configFile);
  const name = pin.type === 'dataset' ? `datasets/${pin.repo}` : pin.repo;
  const accepted = await lookalikeGate(loaded, 'hf', name, values['accept-lookalike']);
  if (values.print) return printed(pin, accepted);
  hfAgeGate(loaded, pin, values['accept-new'] === true);
  const how = writePin(configFile, loaded.policyFile, pin.repo, accepted, (c) => writeHfPin(loaded.policyFile, loaded.policyPathInFile, pin, c));
  process.stdout.write(
    `${verb(how)} ${name}${pin.ref ? `@${pin.ref}` : ''} -> ${pin.commit}${how === 'unchanged' ? ' (already pinned: nothing to change)' : ''} in ${loaded.policyFile}\n`,
  );
  if (how !== 'unchanged') await recordPinSigners(configFile, [{ eco: 'hf', type: pin.type, repo: pin.repo, commit: pin.commit }], process.stdout);
}

async function pinPypi({ values, configFile }: CommandContext, req: string): Promise<void> {
  const pin = await resolvePypiPin(configFile, req);
  const loaded = loadConfig(configFile);
  const accepted = await lookalikeGate(loaded, 'pypi', pin.name, values['accept-lookalike']);
  if (values.print) return printed({ name: pin.name, versions: `==${pin.version}`, sha256: pin.sha256 }, accepted);
  const how = writePin(configFile, loaded.policyFile, pin.name, accepted, (c) => writePypiPin(loaded.policyFile, loaded.policyPathInFile, pin, c));
  process.stdout.write(
    `${verb(how)} ${pin.name}==${pin.version} (${pin.files.length} file${pin.files.length === 1 ? '' : 's'}, from the ${pin.source} index${same(how)}) in ${loaded.policyFile}\n`,
  );
  const files = pin.files.map((filename, i) => ({ filename, sha256: pin.sha256[i] }));
  if (how !== 'unchanged')
    await recordPinSigners(configFile, [{ eco: 'pypi', name: pin.name, version: pin.version, source: pin.source, files }], process.stdout);
}

export const pin: Command = {
  summary: [
    {
      synopsis: "airlock pin pypi 'NAME[==VERSION]' [--config FILE] [--print]",
      text: ['resolve a release upstream (a bare NAME: the newest', 'final release) and add it, with its file hashes,', 'to the policy (comments are kept)'],
    },
    {
      synopsis: 'airlock pin ... --accept-lookalike',
      text: ['pin a name that looks like a known one (refused', 'without it), with a comment saying so; never a', 'look-alike of an internal name'],
    },
    {
      synopsis: 'airlock pin oci REGISTRY/NAME:TAG [--config FILE] [--print]',
      text: [
        'resolve a tag upstream to its manifest digest and',
        'pin it (tag alias + digest) in the policy; where',
        'the image gate applies, judge the image now',
      ],
    },
    { synopsis: 'airlock pin oci REGISTRY/NAME@sha256:DIGEST', text: ['check the digest upstream and pin it'] },
    {
      synopsis: 'airlock pin oci|hf|-r|-f ... --accept-new',
      text: ['pin a tag, branch or lock-file entry younger', 'than its min_age (refused without it; an', 'exact pin, a digest or a commit id is not aged)'],
    },
    {
      synopsis: 'airlock pin pypi -r FILE [--print]',
      text: ['pin every release of a requirements file (with', 'its --hash lines), pylock.toml or uv.lock'],
    },
    {
      synopsis: 'airlock pin oci -f FILE [--rewrite] [--print]',
      text: ['pin every image of a Dockerfile, compose or', 'Kubernetes file by digest (--rewrite: print the', 'files with digests in place of tags)'],
    },
    { synopsis: 'airlock pin hf -f FILE [--print]', text: ['pin every REPO@REVISION line of FILE'] },
    {
      synopsis: 'airlock pin hf [datasets/]REPO@REVISION [--config FILE] [--print]',
      text: [
        'resolve a branch or tag on the Hub to its commit',
        'and pin it (ref alias + commit) in the policy;',
        'a commit younger than hf.min_age is refused',
        'unless --accept-new',
      ],
    },
  ],
  async run(ctx) {
    const [eco, req] = ctx.rest;
    const reqs = ctx.values.requirement ?? [];
    const files = ctx.values.file ?? [];
    if (reqs.length || files.length) {
      const bulk = await import('../pin-bulk.js');
      if (req) fail(`pin ${eco}: give either a reference or ${eco === 'pypi' ? '-r FILE' : '-f FILE'}, not both`);
      if (eco === 'pypi' && reqs.length && !files.length) return bulk.pinPypiFiles(ctx, reqs);
      if (eco === 'oci' && files.length && !reqs.length) return bulk.pinOciFiles(ctx, files);
      if (eco === 'hf' && files.length && !reqs.length) return bulk.pinHfFiles(ctx, files);
      fail('usage: airlock pin pypi -r FILE | airlock pin oci -f FILE [--rewrite] | airlock pin hf -f FILE');
    }
    if (ctx.values.rewrite) fail('pin: --rewrite goes with pin oci -f FILE');
    if (eco === 'oci' && req) return pinOci(ctx, req);
    if (eco === 'hf' && req) return pinHf(ctx, req);
    if (eco !== 'pypi' || !req) fail(`usage: airlock pin pypi 'NAME[==VERSION]' | airlock pin oci REGISTRY/NAME:TAG | airlock pin hf [datasets/]REPO@REVISION`);
    return pinPypi(ctx, req);
  },
};
