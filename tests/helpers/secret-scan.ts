import type { Answer, Client } from './client.js';

/** Keys whose values are chain hashes of the log: public by design, never a credential's. */
const CHAIN_HASH_KEYS = new Set(['hash', 'previous_hash', 'head_hash']);
const BCRYPT = /\$2[aby]\$\d\d\$/;
const HEX_DIGEST = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/i;

/** Where a value holds something shaped like a bcrypt hash or a hex SHA-256 digest (outside chain hashes). */
export function secretShapes(value: unknown, path = '$'): string[] {
  if (typeof value === 'string') return BCRYPT.test(value) || HEX_DIGEST.test(value) ? [`${path}: ${value.slice(0, 80)}`] : [];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, child]) => (CHAIN_HASH_KEYS.has(key) ? [] : secretShapes(child, `${path}.${key}`)));
}

/** The same, for a text body: each NDJSON line parsed, anything else scanned as text. */
export function secretShapesInText(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line, index) => {
      try {
        return secretShapes(JSON.parse(line), `line ${index + 1}`);
      } catch {
        return secretShapes(line, `line ${index + 1}`);
      }
    });
}

/** A client that keeps every answer it got, to be scanned afterwards. */
export function recording(api: Client): Client & { answers: Array<{ request: string; answer: Answer }> } {
  const answers: Array<{ request: string; answer: Answer }> = [];
  const call: Client['call'] = async (method, path, body, options) => {
    const answer = await api.call(method, path, body, options);
    answers.push({ request: `${method} ${path}`, answer });
    return answer;
  };
  return {
    answers,
    call,
    get: (path, options) => call('GET', path, undefined, options),
    post: (path, body, options) => call('POST', path, body, options),
    put: (path, body, options) => call('PUT', path, body, options),
    del: (path, options) => call('DELETE', path, undefined, options),
  };
}
