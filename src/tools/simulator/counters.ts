/** What the simulator has done so far; one line of it is printed every second. */
export class Counters {
  /** Messages of readings sent (a submission, a socket message, a publish). */
  sent = 0;
  /** Taken by the server: HTTP 201, a socket ack, an MQTT PUBACK. */
  acknowledged = 0;
  /** Answered with an error: an HTTP 4xx/5xx, a socket error, an error on MQTT replies. */
  refused = 0;
  /** Over MQTT a permanent refusal is acknowledged too: counted here so it is not counted twice. */
  refusedAfterAck = 0;
  /** No answer: the connection failed or closed first. */
  failed = 0;
  /** Sends skipped because the device's previous message was still unanswered. */
  skipped = 0;
  commandsAnswered = 0;
  connected = 0;
  lastRefusal: string | null = null;

  refuse(reason: string): void {
    this.refused += 1;
    this.lastRefusal = reason;
  }

  line(elapsedSeconds: number, before: { sent: number }): string {
    const acknowledged = this.acknowledged - this.refusedAfterAck;
    const parts = [
      `[${String(Math.round(elapsedSeconds)).padStart(4)} s]`,
      `connected ${this.connected}`,
      `sent ${this.sent} (+${this.sent - before.sent})`,
      `acknowledged ${acknowledged}`,
      `refused ${this.refused}`,
      `failed ${this.failed}`,
      `commands answered ${this.commandsAnswered}`,
    ];
    if (this.skipped > 0) parts.push(`skipped ${this.skipped}`);
    if (this.lastRefusal) parts.push(`last refusal: ${this.lastRefusal}`);
    return parts.join('  ');
  }
}
