/**
 * Which browser origins may act with a user's session cookie: those in CORS_ORIGINS, or without
 * a list any but the opaque "null" of sandboxed frames and files, which could be anybody's.
 * Requests without an Origin (not from a browser page) are not a browser's cross-site call.
 */
export function originAllowed(allowed: readonly string[] | null, origin: string | undefined): boolean {
  if (origin === undefined) return true;
  return allowed ? allowed.includes(origin) : origin !== 'null';
}
