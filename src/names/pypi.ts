/**
 * PyPI name grammar: PEP 503 / PEP 508 project names and distribution filenames as they may
 * appear in a URL. Dependency-free: the policy and the PyPI front-end both import it.
 */

/** The PyPA name regex, anchored at both ends (a trailing newline does not pass). */
const VALID_NAME = /^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$/i;
export const MAX_NAME_LENGTH = 200;

export function isValidProjectName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && VALID_NAME.test(name);
}

/** PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` collapsed to one `-`. */
export function normalizeName(name: string): string {
  return name.replace(/[-_.]+/g, '-').toLowerCase();
}

/**
 * Distribution filenames as they may appear in a URL path: letters, digits and `._+!-`
 * (`+` for local versions such as torch's `+cpu`, `!` for epochs). Anything else (slashes,
 * percent signs, NUL, `..` alone) is not a filename Airlock will serve.
 */
const VALID_FILENAME = /^[A-Za-z0-9][A-Za-z0-9._+!-]*$/;
export const MAX_FILENAME_LENGTH = 255;

export function isValidFilename(filename: string): boolean {
  return filename.length <= MAX_FILENAME_LENGTH && VALID_FILENAME.test(filename) && !filename.includes('..');
}
