/**
 * A model of an SGLang-like scheduler, replayed iteration by iteration over a request trace:
 * FCFS admission under a token budget and a KV-memory check, chunked prefill (one chunked request
 * at a time), decode of every running request, retraction (preemption) when the KV pool runs out,
 * and a radix-style prefix cache keyed by Mooncake prefix-block hashes. A paged KV allocator hands
 * out real page ids (a FIFO free list, as SGLang's allocator), so the page tables the attention
 * kernels would see are known at every iteration. Extend and decode batches alternate as in
 * SGLang without mixed chunking: an iteration is an extend batch if any request can be admitted or
 * continued, otherwise a decode batch. The clock advances by a roofline estimate of the
 * iteration's kernels; it orders events and is not a performance prediction. The KV allocator and
 * prefix cache are in kv_cache.ts, the MoE routing model in routing.ts, the clock in
 * iteration_cost.ts; this file holds the scheduling.
 */
import type { EngineConfig } from "./engine.ts";
import { type CacheBlock, PagePool, PrefixCache } from "./kv_cache.ts";
import { batchTotals, iterationUs } from "./iteration_cost.ts";
import type { ModelShape } from "./model.ts";
import { RoutingModel } from "./routing.ts";
import type { Request } from "./traces.ts";

export { siteCostUs, siteRows, siteRuns } from "./iteration_cost.ts";

/** One request's part in one iteration: new tokens, KV length before/after, and its page table. */
export interface BatchEntry {
  req: number;
  /** Query tokens this iteration (1 for decode). */
  q: number;
  /** KV tokens before this iteration (cached prefix + earlier chunks/tokens). */
  prefix: number;
  /** KV tokens the kernel attends to (prefix + q). */
  kv: number;
  /** Page ids of the request's KV, in sequence order (length ceil(kv / pageSize)). */
  pages: ArrayLike<number>;
}

/** Per-iteration totals; one value per iteration in each column of `SimResult.iterations`. */
export interface IterationColumns {
  iter: number[];
  tStartUs: number[];
  durUs: number[];
  /** 0 = extend, 1 = decode. */
  decode: number[];
  /** Extend batch with some cached prefix (paged prefill) rather than none (ragged prefill). */
  hasPrefix: number[];
  tokens: number[];
  seqs: number[];
  batch: number[];
  kvTokens: number[];
  kvPages: number[];
  qk: number[];
  maxKv: number[];
  maxQ: number[];
  usedPages: number[];
  running: number[];
  expertsActive: number[];
  maxPerExpert: number[];
  retracted: number[];
}

/** What happened to each request. */
export interface RequestOutcome {
  id: number;
  arrival: number;
  prompt: number;
  output: number;
  generated: number;
  /** Prompt tokens served from the prefix cache (summed over admissions). */
  hitTokens: number;
  /** Tokens run through extend batches (summed over admissions). */
  extendTokens: number;
  decodeSteps: number;
  admissions: number;
  retractions: number;
  firstTokenUs: number;
  finishUs: number;
  rejected: boolean;
}

/** The result of a simulation. */
export interface SimResult {
  iterations: IterationColumns;
  requests: RequestOutcome[];
  poolPages: number;
  /** Max pages ever in use (running requests + prefix cache). */
  peakUsedPages: number;
  /** Max requests in a decode batch. */
  peakDecodeBatch: number;
  endUs: number;
}

/** Simulation options. */
export interface SimOptions {
  /** Seed of the MoE routing model. */
  seed: number;
  /** Zipf exponent of expert popularity in the routing model (0 = uniform). */
  expertSkew: number;
  /** Prefix-block size of the trace's hash ids, tokens (Mooncake: 512). */
  blockTokens: number;
  /** Called after each iteration is planned, with its batch (page tables valid only during the call). */
  onIteration?: (iter: number, decode: boolean, entries: BatchEntry[]) => void;
}

interface ReqState {
  r: Request;
  out: RequestOutcome;
  /** Tokens to prefill this admission (prompt + tokens generated before a retraction). */
  target: number;
  kv: number;
  pages: number[];
  /** Number of leading pages that belong to locked cache blocks. */
  cachedPages: number;
  blocks: CacheBlock[];
  inserted: boolean;
}

/** Runs the simulation. Deterministic for equal inputs. */
export function simulate(
  requests: Request[],
  model: ModelShape,
  eng: EngineConfig,
  poolPages: number,
  opts: SimOptions,
): SimResult {
  return new Scheduler(requests, model, eng, poolPages, opts).run();
}

/** The token budget and memory reserve of the extend batch being planned, and its requests. */
interface ExtendPlan {
  budget: number;
  reservePages: number;
  states: ReqState[];
}

/** The scheduler's state over one simulation; `run` replays the whole trace once. */
class Scheduler {
  private readonly ps: number;
  private readonly cacheOn: boolean;
  private readonly pagesPerBlock: number;
  private readonly poolTokens: number;
  private readonly pool: PagePool;
  private readonly cache: PrefixCache;
  private readonly routing: RoutingModel;
  private readonly outcomes: RequestOutcome[];
  private readonly cols = emptyColumns();
  /** The batch of the iteration being planned (reused; handed to `onIteration`). */
  private readonly entries: BatchEntry[] = [];
  private readonly waiting: ReqState[] = [];
  private running: ReqState[] = [];
  /** The one request whose prompt is being prefilled in chunks, if any. */
  private chunked: ReqState | null = null;
  /** Index of the next request to arrive. */
  private next = 0;
  /** Requests finished or rejected. */
  private done = 0;
  private t = 0;
  private iter = 0;
  private peakUsed = 0;
  private peakDecode = 0;

  constructor(
    private readonly requests: Request[],
    private readonly model: ModelShape,
    private readonly eng: EngineConfig,
    poolPages: number,
    private readonly opts: SimOptions,
  ) {
    this.ps = eng.pageSize;
    this.cacheOn = eng.prefixCaching && opts.blockTokens % this.ps === 0;
    this.pagesPerBlock = opts.blockTokens / this.ps;
    this.poolTokens = poolPages * this.ps;
    this.pool = new PagePool(poolPages);
    this.cache = new PrefixCache(this.pool);
    this.outcomes = requests.map(newOutcome);
    this.routing = new RoutingModel(model, opts.seed, opts.expertSkew);
  }

  /** Replays the trace until every request has finished or been rejected. */
  run(): SimResult {
    const n = this.requests.length;
    while (this.done < n) {
      this.admitArrivals();
      if (!this.running.length && !this.waiting.length && !this.chunked) {
        if (this.next >= n) break;
        this.t = Math.max(this.t, this.requests[this.next].arrival * 1e6);
        continue;
      }
      this.entries.length = 0;
      let decode = false;
      let retracted = 0;
      let seqs = 0;
      // An iteration is an extend batch if anything can be prefilled, otherwise a decode batch.
      const extended = this.planExtend();
      if (this.entries.length) seqs = this.sampleExtended(extended);
      else if (this.running.length) {
        decode = true;
        retracted = this.retractForDecode();
        seqs = this.planDecode();
      }
      if (!this.entries.length) {
        // Nothing could run (the next request waits for memory that only arrivals can't free).
        if (this.next >= n) throw new Error("internal: scheduler stalled");
        this.t = Math.max(this.t, this.requests[this.next].arrival * 1e6);
        continue;
      }
      const dur = this.recordIteration(decode, seqs, retracted);
      this.t += dur;
      this.iter++;
      if (decode) this.finishDecode();
      else this.stampExtendFinishes(extended);
    }
    return {
      iterations: this.cols,
      requests: this.outcomes,
      poolPages: this.pool.size,
      peakUsedPages: this.peakUsed,
      peakDecodeBatch: this.peakDecode,
      endUs: this.t,
    };
  }

  /** Queues every request that has arrived by now, rejecting those that can never fit. */
  private admitArrivals(): void {
    const requests = this.requests;
    while (this.next < requests.length && requests[this.next].arrival * 1e6 <= this.t) {
      const r = requests[this.next++];
      const st = newState(r, this.outcomes[r.id]);
      if (r.prompt + r.output > this.poolTokens) {
        // Like SGLang, a request that can never fit in the KV pool is rejected on arrival.
        st.out.rejected = true;
        this.done++;
        continue;
      }
      this.waiting.push(st);
    }
  }

  /**
   * Plans an extend batch: first the chunked request's next chunk, then FCFS admission of waiting
   * requests while the token budget, the running-request limit and KV memory allow. Fills
   * `entries` and returns the requests extended.
   */
  private planExtend(): ReqState[] {
    const eng = this.eng, waiting = this.waiting;
    const plan: ExtendPlan = {
      budget: Math.min(eng.chunkedPrefillSize, eng.maxPrefillTokens),
      reservePages: this.decodeReservePages(),
      states: [],
    };
    let nextChunked: ReqState | null = null;
    const chunked = this.chunked;
    if (chunked) {
      if (this.tryExtend(chunked, plan)) {
        if (chunked.kv < chunked.target) nextChunked = chunked;
      } else nextChunked = chunked;
    }
    while (
      waiting.length && plan.budget > 0 && !nextChunked &&
      this.running.length + plan.states.length < eng.maxRunningRequests
    ) {
      const st = waiting[0];
      this.lockCachedPrefix(st);
      if (!this.tryExtend(st, plan)) {
        // FCFS admission does not skip ahead: the head waits for the next iteration.
        this.undoAdmission(st);
        break;
      }
      waiting.shift();
      if (st.kv < st.target) nextChunked = st;
      plan.reservePages += Math.ceil((st.r.output * eng.newTokenRatio) / this.ps);
    }
    this.chunked = nextChunked;
    return plan.states;
  }

  /** Pages kept back for the running requests' remaining output (SGLang's new-token ratio). */
  private decodeReservePages(): number {
    let reserve = 0;
    for (const st of this.running) {
      reserve += (st.r.output - st.out.generated) * this.eng.newTokenRatio;
    }
    return Math.ceil(reserve / this.ps);
  }

  /** Adds the request's next prompt chunk to the extend batch if budget and memory allow. */
  private tryExtend(st: ReqState, plan: ExtendPlan): boolean {
    const ps = this.ps, pool = this.pool;
    const need = st.target - st.kv;
    let q = Math.min(need, plan.budget);
    if (q < need && q >= ps) q -= q % ps; // chunks end on a page boundary
    if (q <= 0) return false;
    const newPages = Math.ceil((st.kv + q) / ps) - st.pages.length;
    const avail = pool.count + (this.cacheOn ? this.cache.evictable() : 0);
    if (newPages + plan.reservePages > avail) return false;
    if (newPages > pool.count) this.cache.evict(newPages);
    const prefix = st.kv;
    pool.alloc(newPages, st.pages);
    st.kv += q;
    st.out.extendTokens += q;
    plan.budget -= q;
    this.entries.push({ req: st.r.id, q, prefix, kv: st.kv, pages: st.pages });
    plan.states.push(st);
    return true;
  }

  /** Starts an admission: locks the longest chain of cached prefix blocks of the prompt. */
  private lockCachedPrefix(st: ReqState): void {
    st.out.admissions++;
    st.kv = 0;
    st.pages = [];
    st.cachedPages = 0;
    st.blocks = [];
    st.inserted = false;
    const hashIds = st.r.hashIds;
    if (!this.cacheOn || !hashIds) return;
    const blockTokens = this.opts.blockTokens;
    // At least one prompt token is always computed, so the last block may stay uncached.
    const maxBlocks = Math.floor((st.target - 1) / blockTokens);
    for (let b = 0; b < Math.min(maxBlocks, hashIds.length); b++) {
      const blk = this.cache.get(hashIds[b]);
      if (!blk) break;
      blk.refs++;
      this.cache.touch(blk);
      st.blocks.push(blk);
      for (const p of blk.pages) st.pages.push(p);
    }
    st.cachedPages = st.pages.length;
    st.kv = st.blocks.length * blockTokens;
    st.out.hitTokens += st.kv;
  }

  /** Undoes `lockCachedPrefix` for a request that could not be admitted after all. */
  private undoAdmission(st: ReqState): void {
    for (const b of st.blocks) b.refs--;
    st.out.hitTokens -= st.blocks.length * this.opts.blockTokens;
    st.out.admissions--;
    st.blocks = [];
    st.pages = [];
    st.cachedPages = 0;
    st.kv = 0;
  }

  /**
   * Samples the first token of every request whose prefill this batch completed; returns how
   * many sample. A request finishing here gets its finish time after the clock moves.
   */
  private sampleExtended(extended: ReqState[]): number {
    let seqs = 0;
    for (const st of extended) {
      if (st.kv < st.target) continue;
      this.cachePrompt(st);
      st.out.generated++;
      seqs++;
      if (st.out.firstTokenUs < 0) st.out.firstTokenUs = this.t;
      if (st.out.generated >= st.r.output) {
        this.releaseState(st);
        this.done++;
      } else this.running.push(st);
    }
    return seqs;
  }

  /** After its prefill, a request's full prompt blocks join the cache (locked while it runs). */
  private cachePrompt(st: ReqState): void {
    const hashIds = st.r.hashIds;
    if (!this.cacheOn || !hashIds || st.inserted) return;
    st.inserted = true;
    const blockTokens = this.opts.blockTokens, ppb = this.pagesPerBlock;
    const full = Math.min(Math.floor(st.r.prompt / blockTokens), hashIds.length);
    for (let b = st.blocks.length; b < full; b++) {
      const hash = hashIds[b];
      if (this.cache.has(hash)) break; // another request cached it meanwhile; keep our own copy private
      const parent = b > 0 ? hashIds[b - 1] : null;
      const pages = st.pages.slice(b * ppb, (b + 1) * ppb);
      const blk: CacheBlock = { hash, parent, pages, refs: 1, children: 0 };
      this.cache.insert(blk);
      st.blocks.push(blk);
      st.cachedPages += ppb;
    }
  }

  /** Unlocks the request's cache blocks and frees its private pages. */
  private releaseState(st: ReqState): void {
    for (const b of st.blocks) b.refs--;
    this.pool.release(st.pages, st.cachedPages);
    st.pages = [];
    st.blocks = [];
    st.cachedPages = 0;
  }

  /**
   * Every running request writes one more KV entry in a decode step: evicts cache, then retracts
   * requests, until the new pages fit. Returns the number retracted.
   */
  private retractForDecode(): number {
    const ps = this.ps, pool = this.pool, running = this.running;
    let need = 0;
    for (const st of running) if (st.kv % ps === 0) need++;
    if (need > pool.count) this.cache.evict(need);
    let retracted = 0;
    while (need > pool.count && running.length > 1) {
      const victim = retractionVictim(running);
      const st = running[victim];
      running.splice(victim, 1);
      if (st.kv % ps === 0) need--;
      this.releaseState(st);
      st.out.retractions++;
      // Re-prefill prompt plus what it already generated, then decode the rest.
      st.target = st.r.prompt + st.out.generated;
      this.waiting.unshift(st);
      retracted++;
      this.cache.evict(need);
    }
    return retracted;
  }

  /** Fills `entries` with one decode token per running request; returns how many sample. */
  private planDecode(): number {
    for (const st of this.running) {
      if (st.kv % this.ps === 0) this.pool.alloc(1, st.pages);
      const prefix = st.kv;
      st.kv++;
      st.out.decodeSteps++;
      this.entries.push({ req: st.r.id, q: 1, prefix, kv: st.kv, pages: st.pages });
    }
    this.peakDecode = Math.max(this.peakDecode, this.running.length);
    return this.running.length;
  }

  /** Prices the planned iteration, reports it, and appends its row; returns its duration, µs. */
  private recordIteration(decode: boolean, seqs: number, retracted: number): number {
    const x = batchTotals(this.entries, this.ps);
    const [active, maxPer] = this.routing.stats(x.tokens);
    const dur = iterationUs(this.model, this.eng, decode, seqs, x, active);
    this.opts.onIteration?.(this.iter, decode, this.entries);
    const used = this.pool.size - this.pool.count;
    this.peakUsed = Math.max(this.peakUsed, used);
    appendRow(this.cols, {
      iter: this.iter,
      tStartUs: this.t,
      durUs: dur,
      decode: decode ? 1 : 0,
      hasPrefix: decode ? 0 : x.hasPrefix,
      tokens: x.tokens,
      seqs,
      batch: this.entries.length,
      kvTokens: x.kvTokens,
      kvPages: x.kvPages,
      qk: x.qk,
      maxKv: x.maxKv,
      maxQ: x.maxQ,
      usedPages: used,
      running: this.running.length,
      expertsActive: active,
      maxPerExpert: maxPer,
      retracted,
    });
    return dur;
  }

  /** After a decode step: every running request has its token; finished ones leave. */
  private finishDecode(): void {
    const still: ReqState[] = [];
    for (const st of this.running) {
      st.out.generated++;
      if (st.out.generated >= st.r.output) {
        st.out.finishUs = this.t;
        this.releaseState(st);
        this.done++;
      } else still.push(st);
    }
    this.running = still;
  }

  /** After an extend batch: requests that finished with their first token get the finish time. */
  private stampExtendFinishes(extended: ReqState[]): void {
    for (const st of extended) {
      if (st.kv >= st.target && st.out.generated >= st.r.output && st.out.finishUs < 0) {
        st.out.finishUs = this.t;
      }
    }
  }
}

/** SGLang retracts the request with the fewest output tokens (longest prompt on ties). */
function retractionVictim(running: ReqState[]): number {
  let victim = 0;
  for (let i = 1; i < running.length; i++) {
    const a = running[i], b = running[victim];
    if (
      a.out.generated < b.out.generated ||
      (a.out.generated === b.out.generated && a.r.prompt > b.r.prompt)
    ) {
      victim = i;
    }
  }
  return victim;
}

/** Empty iteration columns. */
function emptyColumns(): IterationColumns {
  return {
    iter: [],
    tStartUs: [],
    durUs: [],
    decode: [],
    hasPrefix: [],
    tokens: [],
    seqs: [],
    batch: [],
    kvTokens: [],
    kvPages: [],
    qk: [],
    maxKv: [],
    maxQ: [],
    usedPages: [],
    running: [],
    expertsActive: [],
    maxPerExpert: [],
    retracted: [],
  };
}

/** Appends one iteration's values to the columns. */
function appendRow(cols: IterationColumns, row: Record<keyof IterationColumns, number>): void {
  for (const k of Object.keys(cols) as Array<keyof IterationColumns>) cols[k].push(row[k]);
}

/** A request's outcome before it arrives. */
function newOutcome(r: Request): RequestOutcome {
  return {
    id: r.id,
    arrival: r.arrival,
    prompt: r.prompt,
    output: r.output,
    generated: 0,
    hitTokens: 0,
    extendTokens: 0,
    decodeSteps: 0,
    admissions: 0,
    retractions: 0,
    firstTokenUs: -1,
    finishUs: -1,
    rejected: false,
  };
}

/** A request's scheduler state on arrival: its whole prompt to prefill, nothing allocated. */
function newState(r: Request, out: RequestOutcome): ReqState {
  return {
    r,
    out,
    target: r.prompt,
    kv: 0,
    pages: [],
    cachedPages: 0,
    blocks: [],
    inserted: false,
  };
}
