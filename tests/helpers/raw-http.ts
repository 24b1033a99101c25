import { connect } from 'node:net';

export interface RawConnection {
  write(text: string): void;
  /** Everything the server sent after the first answer, once it closed the connection. */
  ended: Promise<string>;
}

/**
 * A kept-alive HTTP connection written byte by byte, for requests a client library would not
 * send (a body cut in two). One GET is answered on it first, so the server has accepted it and
 * reads what follows at once.
 */
export async function keptAliveConnection(port: number): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
  const ended = new Promise<string>((resolve) => socket.once('close', () => resolve(received)));
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write('GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n');
  const first = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const length = /content-length: (\d+)\r\n/i.exec(received);
      const headEnd = received.indexOf('\r\n\r\n');
      if (length && headEnd >= 0 && received.length >= headEnd + 4 + Number(length[1])) {
        socket.off('data', check);
        resolve(received.slice(0, headEnd + 4 + Number(length[1])));
      }
    };
    socket.on('data', check);
    void ended.then(() => reject(new Error(`connection closed before its first answer: ${received}`)));
  });
  return { write: (text) => socket.write(text), ended: ended.then((all) => all.slice(first.length)) };
}

/** Two round trips on other connections: by their answers the server has read what was written before on this one. */
export async function settle(baseUrl: string): Promise<void> {
  for (let round = 0; round < 2; round++) await (await fetch(`${baseUrl}/api/health`)).text();
}
