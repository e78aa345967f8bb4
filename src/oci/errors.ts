/** An error in the distribution spec's envelope: {"errors":[{code, message, detail}]}, shared by the OCI handlers. */
export class OciError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extraHeaders: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };

export function errorBody(code: string, message: string): Uint8Array {
  return Buffer.from(JSON.stringify({ errors: [{ code, message, detail: null }] }));
}

export function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}
