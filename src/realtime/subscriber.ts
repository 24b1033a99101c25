import type { WebSocket } from 'ws';
import type { Principal, Services } from '../commands/services.js';
import type { RecordedEvent } from '../domain/events.js';
import { CLOSE, subscriberMessage, type SubscriberMessage } from './messages.js';
import { SharedDevices, audienceOf, liveMessage, type Audience } from './visibility.js';

const CATCH_UP_PAGE = 500;
const MAX_GARBAGE = 5;
const DRAIN_WAIT_MS = 5;
const DRAIN_GIVE_UP_MS = 10_000;

export interface LiveItem {
  event: RecordedEvent;
  audience: Audience;
  message: string;
}

interface Filter {
  types: ReadonlySet<string> | null;
  devices: ReadonlySet<string> | null;
}

/**
 * One subscriber: nothing until it subscribes; then, with from_position, the matching
 * events of the log after it, then live ones, with no gap and no duplicate.
 *
 * Memory per subscriber is bounded by `maxBufferedBytes` twice over: the socket's unsent bytes,
 * and, while it catches up, the live tail (matching live events waiting for the catch-up to
 * reach them). A tail that passes the bound is dropped, since the log still holds its events and
 * the catch-up reads them in pages; a subscriber that has fallen further behind by the next
 * time the tail fills cannot keep up, and is closed with 1013 like a live one.
 */
export class Subscriber {
  private filter: Filter | null = null;
  private mode: 'idle' | 'catching_up' | 'live' = 'idle';
  private tail = new LiveTail();
  private lastPosition = 0;
  private garbage = 0;
  private generation = 0;
  private readonly shared: SharedDevices;

  constructor(
    readonly ws: WebSocket,
    readonly principal: Extract<Principal, { kind: 'user' }>,
    private readonly services: Services,
    private readonly maxBufferedBytes: number,
  ) {
    this.shared = new SharedDevices(services.sql, principal.userId);
  }

  welcome(): void {
    this.ws.send(JSON.stringify({ type: 'welcome', position: this.services.runner.position() }));
  }

  onLive(item: LiveItem): void {
    if (this.mode === 'live' && item.event.position > this.lastPosition) this.deliver(item);
    if (this.mode !== 'catching_up' || !this.matches(item)) return;
    const lag = this.services.runner.position() - this.lastPosition;
    if (this.tail.push(item, this.maxBufferedBytes, lag) === 'falling_behind') this.closeTooSlow();
  }

  async onMessage(raw: string): Promise<void> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return this.refuse('invalid_json', 'the message is not JSON');
    }
    const message = subscriberMessage.safeParse(parsed);
    if (!message.success) return this.refuse('validation_failed', message.error.issues.map((i) => `${i.path.join('.') || 'message'}: ${i.message}`).join('; '));
    this.garbage = 0;
    await this.handle(message.data);
  }

  private async handle(message: SubscriberMessage): Promise<void> {
    switch (message.type) {
      case 'ping':
        return this.send(JSON.stringify({ type: 'pong', position: this.services.runner.position() }));
      case 'unsubscribe':
        this.filter = null;
        this.mode = 'idle';
        this.generation += 1;
        return this.send(JSON.stringify({ type: 'unsubscribed' }));
      case 'subscribe': {
        const head = this.services.log.headPosition();
        // Past the head, every event up to it would be taken as already seen and never sent.
        if (message.from_position !== undefined && message.from_position > head) return this.refuse('validation_failed', `from_position: ${message.from_position} is past the log's head (${head})`);
        this.filter = { types: message.event_types ? new Set(message.event_types) : null, devices: message.device_ids ? new Set(message.device_ids) : null };
        const generation = ++this.generation;
        this.send(JSON.stringify({ type: 'subscribed', position: this.services.runner.position() }));
        if (message.from_position === undefined) {
          this.lastPosition = this.services.runner.position();
          this.mode = 'live';
          return;
        }
        this.mode = 'catching_up';
        this.tail = new LiveTail();
        this.lastPosition = message.from_position;
        await this.catchUp(generation);
      }
    }
  }

  /**
   * Reads the log in pages up to what the read models have applied, and past every live event
   * the tail has dropped; the rest is in the tail, or arrives live.
   */
  private async catchUp(generation: number): Promise<void> {
    const { log, runner, sql } = this.services;
    for (;;) {
      const ceiling = runner.position();
      // A page is bounded in bytes as well as events: a page of 500 large batches of readings
      // held tens of megabytes per subscriber while it waited for a slow reader to drain.
      const types = this.filter?.types ? [...this.filter.types] : undefined;
      const read = await log.readAll({ afterPosition: this.lastPosition, limit: CATCH_UP_PAGE, maxBytes: this.maxBufferedBytes, ...(types ? { types } : {}) });
      const page = read.filter((e) => e.position <= ceiling);
      for (const event of page) {
        const item: LiveItem = { event, audience: audienceOf(sql, event), message: '' };
        if (this.matches(item)) {
          item.message = liveMessage(event);
          // A reader that keeps up is never closed for the size of the history: wait for it.
          if (!(await this.drained(Buffer.byteLength(item.message))) || generation !== this.generation) return;
        }
        this.deliver(item);
      }
      if (generation !== this.generation) return;
      // Read by type, an empty page means every matching event up to the ceiling has been sent.
      if (page.length === 0) this.lastPosition = Math.max(this.lastPosition, ceiling);
      if ((page.length === 0 || this.lastPosition >= ceiling) && this.lastPosition >= this.tail.droppedUpTo) break;
      // Reading and sending never waits on I/O while the socket drains: without a turn of the
      // event loop between pages, a replay of the whole log held up every other request.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const pending = this.tail.take();
    this.mode = 'live';
    for (const item of pending) if (item.event.position > this.lastPosition) this.deliver(item);
  }

  private deliver(item: LiveItem): void {
    this.lastPosition = Math.max(this.lastPosition, item.event.position);
    if (!this.matches(item)) return;
    this.send(item.message || liveMessage(item.event));
  }

  private matches({ event, audience }: LiveItem): boolean {
    this.shared.notice(event);
    if (!this.filter) return false;
    // A member sees the events of the devices shared with them, as the device's history shows them.
    const shared = audience.deviceId !== null && this.shared.has(audience.deviceId);
    const mine = this.principal.role === 'admin' || audience.userId === this.principal.userId || shared;
    if (!mine) return false;
    if (this.filter.types && !this.filter.types.has(event.type)) return false;
    if (this.filter.devices && (audience.deviceId === null || !this.filter.devices.has(audience.deviceId))) return false;
    return true;
  }

  /**
   * A reader that cannot keep up is closed (1013) and resumes with from_position; memory stays
   * bounded. The close is decided before a message would pass the bound, so the close frame
   * waits behind at most the bound's worth of data and a reader that is slow, not dead, reads it.
   */
  private send(message: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount + Buffer.byteLength(message) > this.maxBufferedBytes && this.ws.bufferedAmount > 0) return this.closeTooSlow();
    this.ws.send(message);
  }

  private closeTooSlow(): void {
    this.mode = 'idle';
    this.generation += 1;
    this.tail = new LiveTail();
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(CLOSE.tryAgainLater, 'too slow; reconnect with from_position');
  }

  /** During catch-up, waits until a message of `bytes` fits under the bound instead of queueing the whole log; false once closed. */
  private async drained(bytes: number): Promise<boolean> {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    const deadline = Date.now() + DRAIN_GIVE_UP_MS;
    while (this.ws.bufferedAmount > 0 && this.ws.bufferedAmount + bytes > this.maxBufferedBytes) {
      if (Date.now() > deadline || this.ws.readyState !== this.ws.OPEN) {
        this.closeTooSlow();
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, DRAIN_WAIT_MS));
    }
    return true;
  }

  private refuse(code: string, message: string): void {
    this.garbage += 1;
    this.send(JSON.stringify({ type: 'error', code, message }));
    if (this.garbage >= MAX_GARBAGE) this.ws.close(CLOSE.policy, 'too many invalid messages');
  }
}

/**
 * Live events held for a subscriber while it catches up, bounded in bytes. When the bound is
 * passed the tail is emptied (the catch-up reads those events from the log instead, up to
 * `droppedUpTo`); if the subscriber is further behind the head than when the tail last
 * overflowed, it reads slower than events arrive and will never catch up.
 */
class LiveTail {
  private items: LiveItem[] = [];
  private bytes = 0;
  private lagAtLastOverflow: number | null = null;
  droppedUpTo = 0;

  push(item: LiveItem, maxBytes: number, lag: number): 'kept' | 'dropped' | 'falling_behind' {
    this.items.push(item);
    this.bytes += item.message.length;
    if (this.bytes <= maxBytes) return 'kept';
    const fallingBehind = this.lagAtLastOverflow !== null && lag > this.lagAtLastOverflow;
    this.lagAtLastOverflow = lag;
    this.droppedUpTo = item.event.position;
    this.items = [];
    this.bytes = 0;
    return fallingBehind ? 'falling_behind' : 'dropped';
  }

  take(): LiveItem[] {
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    return items;
  }
}
