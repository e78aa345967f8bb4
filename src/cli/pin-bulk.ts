import { readFileSync } from 'node:fs';
import { parse, type Scalar } from 'yaml';
import { loadConfig, ConfigError, type LoadedConfig } from '../config/load.js';
import { parseImageRef, type ImageRef } from '../names/oci.js';
import { withHfResolver, withOciResolver, withPypiResolver } from './pin.js';
import { applyHfPin, applyOciPin, applyPypiPin, keepLoadable, writePolicyFile, type PinOutcome } from './pin-apply.js';
import { parseHfList, readImageFile, readPypiLock, type ImageWant, type PypiWant } from './pin-files.js';
import { PolicyEditor, scalarText } from './policy-edit.js';
import { lookalikeBulkGate } from './lookalike.js';
import { recordPinSigners, type PinItem } from './pin-signer.js';
import { openMeta } from '../backends.js';
import { readAdvisories } from '../reload.js';
import type { Policy } from '../policy/index.js';
import type { CommandContext } from './commands/shared.js';

/**
 * `airlock pin pypi -r FILE`, `pin oci -f FILE`, `pin hf -f FILE`: approve what a lock file,
 * Dockerfile, compose or Kubernetes file or model list names, in one command. Every file is read
 * first (bad input: one line naming file:line, nothing resolved or written); then each item is
 * resolved upstream through the same code as a single pin (../pin.ts), judged against the policy
 * (denied, look-alike name (./lookalike.ts), imported advisory, already allowed) and added through
 * the byte-preserving editor (../policy-edit.ts), an accepted look-alike with its comment;
 * the policy file is written once, and loaded again (on failure the old bytes are put back).
 * One summary at the end; exit 1 when anything was refused.
 */

type Verdict = { how: PinOutcome | 'allowed' | 'refused'; line: string; cooldown?: boolean };
/** A verdict, or the edit to make: edits are made after every item is resolved, in the files' order, so the diff reads like the files. */
type Pending = Verdict | (() => Verdict);
const settle = (all: Pending[]): Verdict[] => all.map((p) => (typeof p === 'function' ? p() : p));
/**
 * The edits made on the policy as it is once every item is resolved (`fresh` reads it again): a
 * real lock file takes a minute upstream, and a pin or an edit made meanwhile is merged with, not written over.
 */
const settleOn = (fresh: () => void, all: Pending[]): Verdict[] => (fresh(), settle(all));
const editorOf = (loaded: LoadedConfig) => new PolicyEditor(readFileSync(loaded.policyFile, 'utf8'), loaded.policyPathInFile, loaded.policyFile);

const POOL = 4;

/** Run `fn` over `items`, at most POOL at a time, results in order. */
async function pool<T, R>(items: T[], fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(POOL, items.length) }, worker));
  return out;
}

const why = (e: unknown) => (e instanceof ConfigError ? e.message.replace(/^pin: /, '') : (e as Error).message);

/** Write the edited policy (unless --print) and print one line per item and the summary; exit 1 when something was refused. */
function finish(ctx: CommandContext, loaded: LoadedConfig, ed: PolicyEditor, verdicts: Verdict[], out: NodeJS.WritableStream = process.stdout): void {
  const print = !!ctx.values.print;
  if (ed.changed && !print) {
    const text = ed.result();
    if (readFileSync(loaded.policyFile, 'utf8') !== ed.source)
      throw new ConfigError(`${loaded.policyFile} changed while pinning (another pin or an edit); nothing written: run the pin again`);
    keepLoadable(ctx.configFile, loaded.policyFile, () => writePolicyFile(loaded.policyFile, text));
  } else if (ed.changed) ed.result();
  for (const v of verdicts) out.write(v.line + '\n');
  const n = (h: Verdict['how'][]) => verdicts.filter((v) => h.includes(v.how)).length;
  const refused = n(['refused']);
  const cooldown = verdicts.filter((v) => v.how === 'refused' && v.cooldown).length;
  out.write(
    `${print ? 'would pin (--print: nothing written)' : 'pinned'}: ${n(['added'])} added, ${n(['updated'])} updated, ${n(['unchanged', 'allowed'])} already allowed, ${refused} refused${cooldown ? ` (${cooldown} cooldown: younger than the minimum age)` : ''}, in ${loaded.policyFile}\n`,
  );
  if (refused) process.exitCode = 1;
}

function word(how: PinOutcome, print: boolean): string {
  if (how === 'unchanged') return 'already allowed';
  return print ? `would be ${how}` : how;
}

/**
 * Minimum age at a bulk pin (issue 27), as single pins decide it: a release, tag or branch resolved
 * to something younger than the minimum age is refused as "cooldown" and not added, unless the
 * file names it exactly, which a person reviewed (a requirements line with its --hash values, a
 * pylock.toml or uv.lock entry, an image by digest, a commit id), or --accept-new is given (as
 * `airlock pin hf REPO@REF --accept-new`); an override is added and its line says so.
 */
function cooldown(ctx: CommandContext, refuse: (reason: string) => Verdict, young: { reason: string } | null, how: string): Verdict | string {
  if (!young) return '';
  if (ctx.values['accept-new'] === true) return ` [younger than the minimum age, accepted with --accept-new: ${young.reason}]`;
  return { ...refuse(`cooldown: ${young.reason}. Not pinned: ${how}, wait, or review it and pin again with --accept-new`), cooldown: true };
}

/** What the summary line adds for an accepted look-alike. */
const accepted = (comment: string | null) => (comment ? ` [${comment.split(' accepted: ')[0]} accepted]` : '');

/** The policy with the advisories imported into the metadata store: a bulk pin refuses what the server would refuse. */
async function withImportedAdvisories(loaded: LoadedConfig): Promise<Policy> {
  const meta = await openMeta(loaded, { create: true });
  try {
    return loaded.policy.withAdvisories(await readAdvisories(meta));
  } finally {
    await meta.close();
  }
}

export async function pinPypiFiles(ctx: CommandContext, files: string[]): Promise<void> {
  const wants = new Map<string, PypiWant>();
  for (const f of files)
    for (const w of await readPypiLock(f)) {
      const k = `${w.name}==${w.version}`;
      const had = wants.get(k);
      wants.set(k, had ? { ...had, sha256: [...new Set([...had.sha256, ...w.sha256])], refuse: had.refuse ?? w.refuse } : w);
    }
  const loaded = loadConfig(ctx.configFile);
  const policy = loaded.policy.pypi;
  const full = await withImportedAdvisories(loaded);
  const lookalike = await lookalikeBulkGate(loaded, 'pypi', ctx.values['accept-lookalike']);
  let ed = editorOf(loaded);
  const signed: PinItem[] = [];
  const verdicts = settleOn(
    () => (ed = editorOf(loaded)),
    await withPypiResolver(loaded, (resolve) =>
      pool([...wants.values()], async (w): Promise<Pending> => {
        const id = `${w.name}==${w.version}`;
        const refuse = (reason: string): Verdict => ({ how: 'refused', line: `refused ${id} (${w.where}): ${reason}` });
        if (w.refuse) return refuse(w.refuse);
        const internal = policy.internalRule(w.name);
        if (internal) return { how: 'allowed', line: `already allowed ${id}: an internal name (${internal}), answered only from the internal index` };
        const deny = policy.decideFile(w.name, w.version, undefined);
        if (!deny.allow && deny.code === 'denied') return refuse(deny.reason);
        const look = lookalike(w.name);
        if ('refused' in look) return refuse(look.refused);
        const advisory = full.pypiAdvisory(w.name, w.version);
        if (advisory) return refuse(advisory.reason);
        let sha256: string[];
        let published: number | null;
        let found: Awaited<ReturnType<typeof resolve>>;
        try {
          found = await resolve(w.name, w.version);
          const missing = w.sha256.filter((h) => !found.sha256.includes(h));
          if (missing.length) return refuse(`sha256 ${missing[0]} is not a file of ${id} on the ${found.source} index`);
          sha256 = w.sha256.length ? w.sha256 : found.sha256;
          // The release's age is its youngest pinned file's (none known when any file has no time).
          const times = sha256.map((h) => found.uploaded[found.sha256.indexOf(h)] ?? null);
          published = times.includes(null) ? null : Math.max(...(times as number[]));
        } catch (e) {
          return refuse(why(e));
        }
        // A file named by its hash in an advisory (a malicious upload) is refused as the server refuses it.
        const fileAdvisory = sha256.map((h) => full.pypiAdvisory(w.name, w.version, h)).find((a) => a);
        if (fileAdvisory) return refuse(fileAdvisory.reason);
        const now = Date.now();
        const decisions = sha256.map((h) => policy.decideFile(w.name, w.version, h));
        // Already allowed: served today as it is (a rule admits every file and none is held back by its age).
        const agedNow = sha256.map((h) => policy.decideAge(w.name, w.version, h, published, now)).find((v) => v);
        if (decisions.every((d) => d.allow) && !agedNow) return { how: 'allowed', line: `already allowed ${id} (policy rule ${decisions[0].rule})` };
        // Hashes written in the file are the reviewed exact pin that overrides the minimum age.
        const young = policy.ecosystemAge(id, published, now) ?? (agedNow ? { reason: agedNow.reason.replace(/; to take it now, .*$/, '') } : null);
        const held = w.sha256.length
          ? young
            ? ` [younger than the minimum age; its hashes in ${w.where} are the override: ${young.reason}]`
            : ''
          : cooldown(ctx, refuse, young, 'add its --hash lines to the file after review');
        if (typeof held !== 'string') return held;
        return () => {
          const how = applyPypiPin(ed, { name: w.name, version: w.version, sha256 }, look.comment ?? undefined);
          const files = sha256.map((h) => ({ filename: found.files[found.sha256.indexOf(h)], sha256: h }));
          if (how !== 'unchanged') signed.push({ eco: 'pypi', name: w.name, version: w.version, source: found.source, files });
          return {
            how,
            line: `${word(how, !!ctx.values.print)} ${id} (${sha256.length} file${sha256.length === 1 ? '' : 's'})${accepted(look.comment)}${held}`,
          };
        };
      }),
    ),
  );
  finish(ctx, loaded, ed, verdicts);
  if (!ctx.values.print) await recordPinSigners(ctx.configFile, signed, process.stdout);
}

export async function pinOciFiles(ctx: CommandContext, files: string[]): Promise<void> {
  const loaded = loadConfig(ctx.configFile);
  const read = files.map((f) => ({ file: f, wants: readImageFile(f) }));
  // Every reference is checked before anything is asked upstream: bad input writes nothing.
  const refs = new Map<string, { ref: ImageRef; where: string }>();
  for (const { wants } of read)
    for (const w of wants) {
      const p = parseImageRef(w.ref, loaded.config.oci.default_registry);
      if (!p.ok) throw new ConfigError(`${w.where}: ${p.reason}`);
      // No tag and no digest: what Docker pulls, latest.
      if (!refs.has(w.ref)) refs.set(w.ref, { ref: p.ref.tag || p.ref.digest ? p.ref : { ...p.ref, tag: 'latest' }, where: w.where });
    }
  const policy = loaded.policy.oci;
  const lookalike = await lookalikeBulkGate(loaded, 'oci', ctx.values['accept-lookalike']);
  let ed = editorOf(loaded);
  const digests = new Map<string, string>();
  const written: { repository: string; digest: string }[] = [];
  const verdicts = settleOn(
    () => (ed = editorOf(loaded)),
    await withOciResolver(loaded, (resolve) =>
      pool([...refs.entries()], async ([text, { ref, where }]): Promise<Pending> => {
        const id = `${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
        const refuse = (reason: string): Verdict => ({ how: 'refused', line: `refused ${id} (${where}): ${reason}` });
        const repoDecision = policy.decideRepository(ref.repository);
        if (!repoDecision.allow && repoDecision.code === 'denied') return refuse(repoDecision.reason);
        const look = lookalike(ref.repository);
        if ('refused' in look) return refuse(look.refused);
        let pin;
        try {
          pin = { ...(await resolve(ref)), tag: ref.tag };
        } catch (e) {
          return refuse(why(e));
        }
        const d = policy.decideDigest(pin.repository, pin.digest);
        if (!d.allow && d.code === 'denied') return refuse(d.reason);
        digests.set(text, pin.digest);
        // A tag is aged from when Airlock first saw its digest; an image named by digest is the reviewed override.
        const young = pin.tag && !ref.digest ? policy.decideTagAge(pin.repository, pin.tag, pin.digest, pin.firstSeen, Date.now()) : null;
        const held = cooldown(
          ctx,
          refuse,
          young && { reason: young.reason.replace(/; to take it now, .*$/, '') },
          `pin it by digest (${pin.repository}@${pin.digest}) after review`,
        );
        if (typeof held !== 'string') return held;
        const already = pin.tag ? policy.resolveTag(pin.repository, pin.tag).digest === pin.digest : d.allow;
        if (already) return { how: 'allowed', line: `already allowed ${id} -> ${pin.digest}${held}` };
        return () => {
          const how = applyOciPin(ed, pin, look.comment ?? undefined);
          if (how !== 'unchanged') written.push({ repository: pin.repository, digest: pin.digest });
          return { how, line: `${word(how, !!ctx.values.print)} ${id} -> ${pin.digest}${accepted(look.comment)}${held}` };
        };
      }),
    ),
  );
  if (ctx.values.rewrite) {
    // The files with digests in place of tags, on stdout; the report goes to stderr.
    for (const { file, wants } of read) {
      if (read.length > 1) process.stdout.write(`==> ${file} <==\n`);
      process.stdout.write(rewrite(readFileSync(file, 'utf8'), wants, digests));
    }
    finish(ctx, loaded, ed, verdicts, process.stderr);
  } else finish(ctx, loaded, ed, verdicts);
  if (ctx.values.print) return;
  const unique = [...new Map(written.map((w) => [`${w.repository}@${w.digest}`, w])).values()];
  await recordPinSigners(
    ctx.configFile,
    unique.map((w) => ({ eco: 'oci', ...w })),
    ctx.values.rewrite ? process.stderr : process.stdout,
  );
  const { judgeIfGated } = await import('./commands/pin.js');
  for (const p of unique) await judgeIfGated(ctx.configFile, p.repository, p.digest, ctx.values.rewrite ? process.stderr : process.stdout);
}

/** The file's text with `REF@DIGEST` for every reference pinned (references that carry a digest already are left as written). */
export function rewrite(text: string, wants: ImageWant[], digests: Map<string, string>): string {
  let out = text;
  for (const w of [...wants].sort((a, b) => b.start - a.start)) {
    const digest = digests.get(w.ref);
    if (!digest || w.ref.includes('@')) continue;
    const ref = `${w.ref}@${digest}`;
    out = out.slice(0, w.start) + (w.quote ? yamlRef(ref, w.quote) : ref) + out.slice(w.end);
  }
  return out;
}

/** An image reference as a YAML scalar in the quoting it had: plain stays plain when it reads back the same (in block and flow context). */
function yamlRef(ref: string, quote: Scalar.Type): string {
  const plain = quote === 'PLAIN' && /^[a-z0-9][a-zA-Z0-9._/:@-]*$/.test(ref) && parse(`k: ${ref}`)?.k === ref && parse(`[${ref}]`)?.[0] === ref;
  return plain ? ref : scalarText(ref, quote);
}

export async function pinHfFiles(ctx: CommandContext, files: string[]): Promise<void> {
  const items = files.flatMap((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new ConfigError(`${f}: cannot read file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return parseHfList(f, text);
  });
  const loaded = loadConfig(ctx.configFile);
  const policy = loaded.policy.hf;
  const lookalike = await lookalikeBulkGate(loaded, 'hf', ctx.values['accept-lookalike']);
  let ed = editorOf(loaded);
  const seen = new Set<string>();
  const unique = items.filter((i) => !seen.has(i.ref) && seen.add(i.ref));
  const signed: PinItem[] = [];
  const verdicts = settleOn(
    () => (ed = editorOf(loaded)),
    await withHfResolver(loaded, (resolve) =>
      pool(unique, async ({ ref, where }): Promise<Pending> => {
        const refuse = (reason: string): Verdict => ({ how: 'refused', line: `refused ${ref} (${where}): ${reason}` });
        let pin;
        try {
          pin = await resolve(ref);
        } catch (e) {
          return refuse(why(e));
        }
        const repoDecision = policy.decideRepo(pin.type, pin.repo);
        if (!repoDecision.allow && repoDecision.code === 'denied') return refuse(repoDecision.reason);
        const look = lookalike(pin.type === 'dataset' ? `datasets/${pin.repo}` : pin.repo);
        if ('refused' in look) return refuse(look.refused);
        const current = policy.resolveRevision(pin.type, pin.repo, pin.ref ?? pin.commit);
        if (current.commit === pin.commit) return { how: 'allowed', line: `already allowed ${ref} -> ${pin.commit}` };
        // As `airlock pin hf`: a branch or tag is aged by its commit's date; a commit named by its id is the reviewer's choice.
        const young = pin.ref ? policy.commitAge(`${ref} (commit ${pin.commit})`, pin.date ?? null, Date.now()) : null;
        const held = cooldown(ctx, refuse, young, 'pin an older commit by its id');
        if (typeof held !== 'string') return held;
        return () => {
          const how = applyHfPin(ed, pin, look.comment ?? undefined);
          if (how !== 'unchanged') signed.push({ eco: 'hf', type: pin.type, repo: pin.repo, commit: pin.commit });
          return { how, line: `${word(how, !!ctx.values.print)} ${ref} -> ${pin.commit}${accepted(look.comment)}${held}` };
        };
      }),
    ),
  );
  finish(ctx, loaded, ed, verdicts);
  if (!ctx.values.print) await recordPinSigners(ctx.configFile, signed, process.stdout);
}
