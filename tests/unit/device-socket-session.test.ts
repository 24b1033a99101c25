import type { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { SocketSession } from '../../src/realtime/device-channel.js';

/** The parts of a socket the session uses: what it was sent, how it was closed, and its unsent bytes. */
function socket(bufferedAmount: number) {
  const sent: string[] = [];
  const closed: Array<{ code: number; reason: string }> = [];
  const ws = { OPEN: 1, readyState: 1, bufferedAmount, send: (text: string) => sent.push(text), close: (code: number, reason: string) => closed.push({ code, reason }) };
  return { ws: ws as unknown as WebSocket, sent, closed };
}

describe('device socket session: answers are bounded in bytes', () => {
  it('given nothing unsent, when it answers, then the answer is sent whatever its size', () => {
    const { ws, sent, closed } = socket(0);
    new SocketSession(ws, 'd1', null, 16).reply({ type: 'ack', id: 'x'.repeat(100) });
    expect(sent).toHaveLength(1);
    expect(closed).toEqual([]);
  });

  it('given unsent answers under the bound, when the next fits, then it is sent', () => {
    const { ws, sent, closed } = socket(100);
    new SocketSession(ws, 'd1', null, 1024).reply({ type: 'ack', id: 1 });
    expect(sent).toHaveLength(1);
    expect(closed).toEqual([]);
  });

  it('given a device that stopped reading, when an answer would pass the bound, then it is closed with 1013 and nothing more is queued', () => {
    const { ws, sent, closed } = socket(1000);
    const session = new SocketSession(ws, 'd1', null, 1024);
    session.reply({ type: 'ack', id: 'x'.repeat(100) });
    expect(sent).toEqual([]);
    expect(closed).toEqual([{ code: 1013, reason: 'not reading its answers; reconnect' }]);
    expect(session.revoked).toBe(true);
  });
});
