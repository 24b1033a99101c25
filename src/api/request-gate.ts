import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';

/**
 * Stands between the HTTP server and the app so that a stop is clean on kept-alive connections:
 * once closed, a request already in flight is answered (with `Connection: close`, so its
 * client opens no further request on it), and a request whose headers arrive afterwards is
 * refused by closing its connection before any of its body is read (after the answer in flight
 * on it, if any), so it stored nothing and the client may send it again elsewhere. Without it Node goes on serving a busy kept-alive
 * connection for the whole grace period.
 */
export class RequestGate {
  private closed = false;
  private readonly inFlight = new Set<ServerResponse>();

  constructor(private readonly app: RequestListener) {}

  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.closed) {
      // Pipelined behind a request in flight: left unanswered, the connection ends after that one's answer.
      if (![...this.inFlight].some((other) => other.req.socket === req.socket)) req.socket.destroy();
      return;
    }
    this.inFlight.add(res);
    res.once('close', () => this.inFlight.delete(res));
    this.app(req, res);
  };

  /**
   * Stops accepting and resolves once every connection has closed: in-flight requests are
   * answered, idle connections closed at once, and whatever is still open after `graceMs`
   * (a body that never completes) is cut; `onGraceOver` lets the caller cut what it owns too.
   */
  close(http: Server, graceMs: number, onGraceOver: () => void): Promise<void> {
    this.closed = true;
    for (const res of this.inFlight) lastOnItsConnection(res);
    return new Promise<void>((resolve) => {
      const grace = setTimeout(() => {
        http.closeAllConnections();
        onGraceOver();
      }, graceMs);
      http.close(() => {
        clearTimeout(grace);
        resolve();
      });
      http.closeIdleConnections();
    });
  }
}

function lastOnItsConnection(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('Connection', 'close');
  // A streamed answer already promised keep-alive: its connection is ended once it is complete.
  else res.once('finish', () => res.socket?.end());
}
