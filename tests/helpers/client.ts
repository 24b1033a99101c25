import { checkAnswer } from './contract.js';
import { assertNoSecrets } from './no-secrets.js';

export interface Answer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface CallOptions {
  token?: string;
  headers?: Record<string, string>;
  /** A raw body sent as is (for hostile-input tests). */
  raw?: string;
}

/** A thin fetch wrapper speaking the JSON envelope; every JSON answer is checked against the served OpenAPI document. */
export function client(baseUrl: () => string) {
  async function call<T = any>(method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let payload: string | undefined = options.raw;
    if (body !== undefined && payload === undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await fetch(baseUrl() + path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: the tests look at the text
    }
    await checkAnswer(baseUrl(), method, path, response.status, response.headers.get('content-type'), parsed);
    assertNoSecrets(typeof parsed === 'string' ? parseLines(parsed) : parsed, `${method} ${path}`);
    return { status: response.status, body: parsed as T, headers: response.headers };
  }
  return {
    call,
    get: <T = any>(path: string, options?: CallOptions) => call<T>('GET', path, undefined, options),
    post: <T = any>(path: string, body?: unknown, options?: CallOptions) => call<T>('POST', path, body, options),
    put: <T = any>(path: string, body?: unknown, options?: CallOptions) => call<T>('PUT', path, body, options),
    del: <T = any>(path: string, options?: CallOptions) => call<T>('DELETE', path, undefined, options),
  };
}

export type Client = ReturnType<typeof client>;

/** An NDJSON or CSV answer, line by line, so an export is scanned like any other answer. */
function parseLines(text: string): unknown[] {
  return text.split('\n').map((line) => {
    try {
      return JSON.parse(line) as unknown;
    } catch {
      return line;
    }
  });
}

let counter = 0;

/** Registers a fresh user and returns its session token, API key and id. */
export async function registerUser(api: Client, name = `user${++counter}_${Date.now() % 100000}`) {
  const answer = await api.post('/api/auth/register', { username: name, email: `${name}@example.com`, password: 'correct horse' });
  if (answer.status !== 201) throw new Error(`register failed: ${answer.status} ${JSON.stringify(answer.body)}`);
  return { token: answer.body.data.token as string, apiKey: answer.body.data.api_key as string, id: answer.body.data.user.id as string, username: name };
}
