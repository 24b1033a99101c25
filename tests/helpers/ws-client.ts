import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { type ClientOptions } from 'ws';
import { assertNoSecrets } from './no-secrets.js';

/** A message as the server sent it, parsed from JSON (tests narrow it with their own shapes). */
export type Message = Record<string, any>;

export interface Closed {
  code: number;
  reason: string;
}

/** The upgrade was answered with an HTTP status instead of 101. */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}: ${body}`);
  }
}

/** A ws client with a queue of parsed messages: next(predicate) takes the first match. */
export interface WsClient {
  ws: WebSocket;
  /** Every message received so far, in order (consumed or not). */
  readonly received: Message[];
  /** Takes (and removes from the queue) the first unconsumed message matching `predicate`. */
  next(predicate?: (message: Message) => boolean, timeoutMs?: number): Promise<Message>;
  /** Resolves once `done` holds for everything received so far (checked on each message). */
  until(done: (received: readonly Message[]) => boolean, timeoutMs?: number): Promise<void>;
  send(message: unknown): void;
  sendRaw(text: string): void;
  /** Resolves with the close code and reason (at once when already closed). */
  waitForClose(timeoutMs?: number): Promise<Closed>;
  /** How many pings the server sent. */
  readonly pings: number;
  isOpen(): boolean;
  /** Closes (if open) and waits for the close to complete. */
  close(): Promise<Closed>;
}

const DEFAULT_TIMEOUT = 5_000;

/** Turns an http(s) base URL into ws(s). */
export const wsUrl = (baseUrl: string, path: string): string => baseUrl.replace(/^http/, 'ws') + path;

/** Opens a socket; resolves on open, rejects with UpgradeRefused(status) on an HTTP answer. */
export function connect(url: string, options: ClientOptions = {}): Promise<WsClient> {
  const ws = new WebSocket(url, options);
  const received: Message[] = [];
  const queue: Message[] = [];
  let pings = 0;
  let closed: Closed | null = null;
  const messageWaiters = new Set<() => void>();
  const closeWaiters = new Set<(closed: Closed) => void>();

  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '' : data.toString();
    let parsed: Message;
    try {
      parsed = JSON.parse(text) as Message;
    } catch {
      parsed = { type: '__not_json__', text };
    }
    assertNoSecrets(parsed, 'a WebSocket message');
    received.push(parsed);
    queue.push(parsed);
    for (const wake of [...messageWaiters]) wake();
  });
  ws.on('ping', () => {
    pings += 1;
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const wake of [...closeWaiters]) wake(closed);
    for (const wake of [...messageWaiters]) wake();
  });

  /** Settles once `outcome` decides (checked now and on each message or close), or fails after timeoutMs. */
  const waitOnMessages = <T>(timeoutMs: number, outcome: () => { done: T } | { failed: string } | null, timedOut: () => string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const decided = outcome();
        if (!decided) return false;
        finish();
        if ('done' in decided) resolve(decided.done);
        else reject(new Error(decided.failed));
        return true;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(timedOut()));
      }, timeoutMs);
      const wake = (): void => void check();
      const finish = (): void => {
        clearTimeout(timer);
        messageWaiters.delete(wake);
      };
      if (!check()) messageWaiters.add(wake);
    });

  const client: WsClient = {
    ws,
    received,
    get pings() {
      return pings;
    },
    isOpen: () => ws.readyState === WebSocket.OPEN,
    next(predicate = () => true, timeoutMs = DEFAULT_TIMEOUT) {
      return waitOnMessages<Message>(timeoutMs, () => {
        const index = queue.findIndex(predicate);
        if (index >= 0) return { done: queue.splice(index, 1)[0]! };
        if (closed) return { failed: `socket closed (${closed.code} ${closed.reason}) before the expected message; queue: ${JSON.stringify(queue).slice(0, 500)}` };
        return null;
      }, () => `no matching message within ${timeoutMs} ms; queue: ${JSON.stringify(queue).slice(0, 500)}`);
    },
    until(done, timeoutMs = DEFAULT_TIMEOUT) {
      return waitOnMessages<void>(timeoutMs, () => {
        if (done(received)) return { done: undefined };
        if (closed) return { failed: `socket closed (${closed.code} ${closed.reason}) before the condition held; ${received.length} received` };
        return null;
      }, () => `condition not met within ${timeoutMs} ms; ${received.length} received, last: ${JSON.stringify(received.slice(-3)).slice(0, 500)}`);
    },
    send(message) {
      ws.send(JSON.stringify(message));
    },
    sendRaw(text) {
      ws.send(text);
    },
    waitForClose(timeoutMs = DEFAULT_TIMEOUT) {
      if (closed) return Promise.resolve(closed);
      return new Promise<Closed>((resolve, reject) => {
        const timer = setTimeout(() => {
          closeWaiters.delete(done);
          reject(new Error(`socket not closed within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (value: Closed): void => {
          clearTimeout(timer);
          closeWaiters.delete(done);
          resolve(value);
        };
        closeWaiters.add(done);
      });
    },
    async close() {
      if (closed) return closed;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
      return client.waitForClose();
    },
  };

  return new Promise<WsClient>((resolve, reject) => {
    ws.once('open', () => resolve(client));
    // After the open, errors (a reset, a protocol error) show up as the close; never as a crash.
    ws.on('error', () => undefined);
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => reject(new UpgradeRefused(res.statusCode ?? 0, body)));
      res.on('error', () => reject(new UpgradeRefused(res.statusCode ?? 0, body)));
    });
    ws.once('error', (error) => reject(error));
  });
}

/** Expects the upgrade to be refused; returns the HTTP status. */
export async function refusedStatus(url: string, options: ClientOptions = {}): Promise<number> {
  try {
    const client = await connect(url, options);
    await client.close();
  } catch (error) {
    if (error instanceof UpgradeRefused) return error.status;
    throw error;
  }
  throw new Error(`expected ${url} to be refused, but it opened`);
}

/**
 * Watches upgrades on the server's http server (alongside the real handler) and keeps the
 * server-side TCP socket of each request whose URL carries `tag=<name>`: tests read its
 * write buffer and learn when the server has seen the socket close.
 */
export function captureServerSockets(http: Server): { socket(tag: string, timeoutMs?: number): Promise<Duplex>; stop(): void } {
  const sockets = new Map<string, Duplex>();
  const waiters = new Map<string, (socket: Duplex) => void>();
  const listener = (req: IncomingMessage, socket: Duplex): void => {
    const tag = new URL(req.url ?? '/', 'http://localhost').searchParams.get('tag');
    if (!tag) return;
    sockets.set(tag, socket);
    waiters.get(tag)?.(socket);
  };
  http.on('upgrade', listener);
  return {
    socket(tag, timeoutMs = DEFAULT_TIMEOUT) {
      const known = sockets.get(tag);
      if (known) return Promise.resolve(known);
      return new Promise<Duplex>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no upgrade tagged ${tag}`)), timeoutMs);
        waiters.set(tag, (socket) => {
          clearTimeout(timer);
          waiters.delete(tag);
          resolve(socket);
        });
      });
    },
    stop: () => void http.off('upgrade', listener),
  };
}

/** Resolves once the server-side socket has closed and the server's own close handlers have run. */
export function serverSawClose(socket: Duplex, timeoutMs = DEFAULT_TIMEOUT): Promise<void> {
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));
  if (socket.destroyed && (socket as Duplex & { closed?: boolean }).closed) return settle();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server-side socket still open')), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      void settle().then(resolve);
    });
  });
}

/** Polls `check` until it returns true (short real-time waits on real sockets). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = DEFAULT_TIMEOUT, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
