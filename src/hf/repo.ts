import type { Context } from 'hono';
import { Refusal } from '../http/refusal.js';
import type { AppEnv } from '../http/send.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import type { HfPolicy } from '../policy/hf.js';
import { fromDecision, pinned, type HfDeps } from './context.js';
import { HubError, hubJson, info, pathsInfo, tree } from './metadata.js';

/** `hf auth login` / whoami with an Airlock token: who the mirror thinks the caller is. */
export function whoami(c: Context<AppEnv>): Response {
  const id = c.get('identity');
  if (!id) throw new HubError(401, undefined, 'Invalid credentials in Authorization header: send an Airlock client token (airlock token create --name NAME)');
  return hubJson(c, {
    type: 'user',
    id: id.name,
    name: id.name,
    fullname: id.name,
    isPro: false,
    orgs: [],
    auth: { type: 'access_token', accessToken: { displayName: id.name, role: 'read' } },
  });
}

/** GET/HEAD api/<models|datasets>/<repo>[/revision/<rev>]: the pinned commit's info. */
export async function repoInfo(d: HfDeps, c: Context<AppEnv>, type: HfRepoType, repo: string, revision: string): Promise<Response> {
  const { snap } = await pinned(d, type, repo, revision);
  return info(c, d.live.policy.hf, type, repo, snap);
}

/** GET/HEAD api/.../tree/<rev>[/<path>]: the pinned commit's tree. */
export async function repoTree(d: HfDeps, c: Context<AppEnv>, type: HfRepoType, repo: string, revision: string, path: string): Promise<Response> {
  const { snap } = await pinned(d, type, repo, revision, path || null);
  return tree(c, d.live.policy.hf, type, repo, snap, path);
}

/** POST api/.../paths-info/<rev>: the pinned commit's entries for the paths asked. */
export async function repoPathsInfo(d: HfDeps, c: Context<AppEnv>, type: HfRepoType, repo: string, revision: string): Promise<Response> {
  const { snap } = await pinned(d, type, repo, revision);
  return pathsInfo(c, d.live.policy.hf, type, repo, snap);
}

/** GET/HEAD api/.../refs: the branches the policy pins, each at its pinned commit. */
export function repoRefs(policy: HfPolicy, c: Context<AppEnv>, type: HfRepoType, repo: string): Response {
  const dec = policy.decideRepo(type, repo);
  if (!dec.allow) {
    const row = { name: displayRepo(type, repo), filename: 'refs' };
    throw new Refusal({ status: 404, code: dec.code, rule: dec.rule, reason: `blocked by mirror policy: ${dec.reason}`, row, answer: fromDecision(dec) });
  }
  const branches = policy
    .refs(type, repo)
    .map(([name, commit]) => ({ name, ref: name.startsWith('refs/') ? name : `refs/heads/${name}`, targetCommit: commit }));
  return hubJson(c, { branches, converts: [], tags: [] });
}
