import type { Logger } from 'pino';

export interface TimerJob {
  name: string;
  everyMs: number;
  run: () => Promise<unknown>;
  /** It stores events: skipped while the read models are stalled, where it would act again on the same unchanged state. */
  stores: boolean;
}

/**
 * Runs periodic jobs one at a time each (never overlapping itself). The jobs read the
 * injected clock, so tests call runAll() after moving it instead of waiting.
 */
export class Timers {
  private handles: NodeJS.Timeout[] = [];
  private running = new Map<string, Promise<void>>();

  constructor(
    private readonly logger: Logger,
    private readonly jobs: readonly TimerJob[],
    private readonly readModelsStalled: () => boolean,
  ) {}

  start(): void {
    this.handles = this.jobs.map((job) => setInterval(() => void this.runJob(job), job.everyMs).unref());
  }

  stop(): void {
    this.handles.forEach(clearInterval);
    this.handles = [];
  }

  /** Runs every job once now (waiting for a run already under way). */
  async runAll(): Promise<void> {
    for (const job of this.jobs) await this.runJob(job);
  }

  async idle(): Promise<void> {
    await Promise.all(this.running.values());
  }

  private runJob(job: TimerJob): Promise<void> {
    const current = this.running.get(job.name);
    if (current) return current;
    if (job.stores && this.readModelsStalled()) return Promise.resolve();
    const run = job
      .run()
      .then(() => undefined)
      .catch((error: unknown) => this.logger.error({ err: error, job: job.name }, 'timer job failed'))
      .finally(() => this.running.delete(job.name));
    this.running.set(job.name, run);
    return run;
  }
}
