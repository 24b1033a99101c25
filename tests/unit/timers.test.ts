import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Timers } from '../../src/automation/timers.js';

describe('timer jobs while the read models are stalled', () => {
  it('given stalled read models, then the jobs that store are skipped and the others run; once resumed, all run', async () => {
    const ran: string[] = [];
    let stalled = true;
    const job = (name: string, stores: boolean) => ({ name, everyMs: 1_000, stores, run: async () => void ran.push(name) });
    const timers = new Timers(pino({ level: 'silent' }), [job('offline-sweep', true), job('expired-sockets', false)], () => stalled);

    await timers.runAll();
    expect(ran).toEqual(['expired-sockets']);

    stalled = false;
    await timers.runAll();
    expect(ran).toEqual(['expired-sockets', 'offline-sweep', 'expired-sockets']);
  });
});
