/**
 * Hugging Face Hub name grammar: repository types and ids, commits, git refs, and how a repository
 * is named in messages. Dependency-free: the policy and the HF front-end both import it.
 */

export type HfRepoType = 'model' | 'dataset';

export const COMMIT = /^[0-9a-f]{40}$/;
const REPO_PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;
/** Git ref names as the Hub uses them: branch and tag names, refs/pr/N, refs/convert/NAME. */
const REF = /^(?!.*\.\.)(?!\/)(?!.*\/\/)[A-Za-z0-9._/-]{1,200}$/;

export function isValidRepoId(id: string): boolean {
  const parts = id.split('/');
  if (parts.length < 1 || parts.length > 2) return false;
  return parts.every((p) => REPO_PART.test(p) && !p.includes('--') && !p.includes('..'));
}

export function isValidRef(ref: string): boolean {
  return REF.test(ref) && !ref.endsWith('/') && !ref.endsWith('.lock');
}

export const displayRepo = (type: HfRepoType, repo: string) => (type === 'dataset' ? `datasets/${repo}` : repo);
