/**
 * Progress of a judging stage while its harness jobs run: a job can take minutes on a CPU (a
 * reference on a large workload), and the engine only speaks when a cell completes, so without
 * this a run can look hung. The judging stages get it through `mapWithSessions`.
 */

/** What a heartbeat reports on, and where. */
export interface HeartbeatOptions<T> {
  /** Where lines go (a stage's `ctx.log`, which prefixes the stage's name). */
  log: (line: string) => void;
  /** How many cells an item (one harness job) judges. */
  cells: (item: T) => number;
  /** A short name for an item in the line (its definition and solution). */
  label: (item: T) => string;
  /**
   * The longest silence while a job runs, in ms (default 10 s): a line is printed once no job has
   * finished for 7/10 of it (checked every tenth), so no two progress lines are further apart, even
   * with a busy event loop.
   */
  periodMs?: number;
}

/** `75s` → `1m15s`; under a minute, `42s`. */
export function formatSeconds(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/**
 * Tracks the jobs of one stage's batch: which are running since when and how many cells are done.
 * While a job runs and nothing finished for 7/10 of the period, it logs one line:
 * `still judging: 3/20 cells done in 1m05s; running: gqa_…/torch_… (48s)`.
 */
export class Heartbeat<T> {
  readonly #opts: HeartbeatOptions<T>;
  readonly #period: number;
  readonly #t0 = performance.now();
  readonly #running = new Map<number, { item: T; t0: number }>();
  readonly #total: number;
  #done = 0;
  #seq = 0;
  #lastLine: number;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(items: readonly T[], opts: HeartbeatOptions<T>) {
    this.#opts = opts;
    this.#period = opts.periodMs ?? 10_000;
    this.#total = items.reduce((n, it) => n + opts.cells(it), 0);
    this.#lastLine = this.#t0;
    // Checked ten times a period: a line is due after 7/10 of it, so lines are 8/10 of a period apart at
    // most, leaving the rest for a late timer on a loaded machine.
    const timer = setInterval(() => this.tick(), this.#period / 10);
    Deno.unrefTimer(timer); // never keeps the process alive
    this.#timer = timer;
  }

  /** Marks an item's job as started; returns the token for {@link finish}. */
  start(item: T): number {
    const id = ++this.#seq;
    this.#running.set(id, { item, t0: performance.now() });
    return id;
  }

  /** Marks a job as finished (its stage logs its own line for it, so the silence starts again). */
  finish(id: number): void {
    const job = this.#running.get(id);
    if (!job) return;
    this.#running.delete(id);
    this.#done += this.#opts.cells(job.item);
    this.#lastLine = performance.now();
  }

  /** The progress line, or null when no job runs or a line was printed recently. */
  due(now = performance.now()): string | null {
    if (this.#running.size === 0 || now - this.#lastLine < this.#period * 7 / 10) return null;
    const jobs = [...this.#running.values()].sort((a, b) => a.t0 - b.t0);
    const shown = jobs.slice(0, 2).map((j) =>
      `${this.#opts.label(j.item)} (${formatSeconds(now - j.t0)})`
    );
    const more = jobs.length > 2 ? ` and ${jobs.length - 2} more` : "";
    return `still judging: ${this.#done}/${this.#total} cells done in ${
      formatSeconds(now - this.#t0)
    }; running: ${shown.join(", ")}${more}`;
  }

  /** Prints the progress line when one is due (the timer calls it). */
  tick(now = performance.now()): void {
    const line = this.due(now);
    if (!line) return;
    this.#lastLine = now;
    this.#opts.log(line);
  }

  /** Stops the timer. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
