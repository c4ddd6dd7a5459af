/**
 * A model of an SGLang-like scheduler, replayed iteration by iteration over a request trace:
 * FCFS admission under a token budget and a KV-memory check, chunked prefill (one chunked request
 * at a time), decode of every running request, retraction (preemption) when the KV pool runs out,
 * and a radix-style prefix cache keyed by Mooncake prefix-block hashes. A paged KV allocator hands
 * out real page ids (a FIFO free list, as SGLang's allocator), so the page tables the attention
 * kernels would see are known at every iteration. Extend and decode batches alternate as in
 * SGLang without mixed chunking: an iteration is an extend batch if any request can be admitted or
 * continued, otherwise a decode batch. The clock advances by a roofline estimate of the
 * iteration's kernels; it orders events and is not a performance prediction.
 */
import type { EngineConfig } from "./engine.ts";
import type { ModelShape, PlanSite } from "./model.ts";
import { rng } from "../lib/rng.ts";
import type { Request } from "./traces.ts";

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

interface CacheBlock {
  hash: number;
  parent: number | null;
  pages: number[];
  refs: number;
  children: number;
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

/** The iteration's cost in µs from the roofline of every call site (documented, ordering only). */
export function siteCostUs(
  s: PlanSite,
  eng: EngineConfig,
  x: { rows: number; qk: number; kvTokens: number; expertsActive: number },
): number {
  const flops = s.fRow * x.rows + s.fAttn * x.qk;
  const bytes = s.b0 + s.bRow * x.rows + s.bKv * x.kvTokens + s.bExp * x.expertsActive;
  return eng.launchUs + Math.max(flops / (eng.peakTflops * 1e6), bytes / (eng.hbmGBps * 1e3));
}

/** Whether a site runs in an iteration of this kind. */
export function siteRuns(s: PlanSite, decode: boolean, hasPrefix: boolean): boolean {
  switch (s.when) {
    case "any":
      return true;
    case "decode":
      return decode;
    case "extend":
      return !decode;
    case "extend_ragged":
      return !decode && !hasPrefix;
    case "extend_paged":
      return !decode && hasPrefix;
  }
}

/** The leading dimension of a site in an iteration. */
export function siteRows(s: PlanSite, m: ModelShape, tokens: number, seqs: number): number {
  switch (s.rows) {
    case "tokens":
      return tokens;
    case "seqs":
      return seqs;
    case "tokens_x_qheads":
      return tokens * m.qHeads;
    case "tokens_x_kvheads":
      return tokens * m.kvHeads;
  }
}

/** Runs the simulation. Deterministic for equal inputs. */
export function simulate(
  requests: Request[],
  model: ModelShape,
  eng: EngineConfig,
  poolPages: number,
  opts: SimOptions,
): SimResult {
  const ps = eng.pageSize;
  const pagesFor = (tokens: number) => Math.ceil(tokens / ps);
  const cacheOn = eng.prefixCaching && opts.blockTokens % ps === 0;
  const pagesPerBlock = opts.blockTokens / ps;

  // FIFO free list of page ids (SGLang allocates from the head and returns freed pages at the tail).
  const free = new Int32Array(poolPages);
  for (let i = 0; i < poolPages; i++) free[i] = i;
  let head = 0, count = poolPages;
  const alloc = (n: number, into: number[]) => {
    if (n > count) throw new Error(`internal: allocating ${n} pages with ${count} free`);
    for (let i = 0; i < n; i++) {
      into.push(free[head]);
      head = head + 1 === poolPages ? 0 : head + 1;
    }
    count -= n;
  };
  const release = (pages: ArrayLike<number>, from: number) => {
    for (let i = from; i < pages.length; i++) {
      free[(head + count) % poolPages] = pages[i];
      count++;
    }
  };

  const cache = new Map<number, CacheBlock>(); // insertion order = LRU order
  const touch = (b: CacheBlock) => {
    cache.delete(b.hash);
    cache.set(b.hash, b);
  };
  const evictable = () => {
    let n = 0;
    for (const b of cache.values()) if (b.refs === 0) n += b.pages.length;
    return n;
  };
  const evict = (need: number) => {
    // Evict unreferenced leaves in LRU order until `need` pages are free (or nothing is left).
    let progress = true;
    while (count < need && progress) {
      progress = false;
      for (const b of cache.values()) {
        if (b.refs === 0 && b.children === 0) {
          cache.delete(b.hash);
          if (b.parent !== null) {
            const p = cache.get(b.parent);
            if (p) p.children--;
          }
          release(b.pages, 0);
          progress = true;
          if (count >= need) break;
        }
      }
    }
  };

  const outcomes: RequestOutcome[] = requests.map((r) => ({
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
  }));
  const poolTokens = poolPages * ps;
  const waiting: ReqState[] = [];
  let running: ReqState[] = [];
  let chunked: ReqState | null = null;
  let next = 0, done = 0;
  let t = 0;
  const cols: IterationColumns = {
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
  let peakUsed = 0, peakDecode = 0;

  // Routing model: expert popularity ∝ 1/rank^skew over a seeded permutation of the experts.
  const rand = rng(opts.seed);
  const E = model.experts;
  const pop = new Float64Array(E);
  if (E) {
    const perm = Array.from({ length: E }, (_, i) => i);
    for (let i = E - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    let sum = 0;
    for (let i = 0; i < E; i++) sum += pop[perm[i]] = 1 / Math.pow(i + 1, opts.expertSkew);
    for (let i = 0; i < E; i++) pop[i] /= sum;
  }
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const routeStats = (tokens: number): [number, number] => {
    if (!E) return [0, 0];
    let active = 0, max = 0;
    const draws = tokens * model.topK;
    for (let e = 0; e < model.localExperts; e++) {
      // Each token picks top_k distinct experts; an expert's count is ~Poisson(λ), capped at tokens.
      const lam = draws * pop[e];
      let c: number;
      if (lam < 30) {
        const L = Math.exp(-lam);
        let k = 0, p = rand();
        while (p > L) {
          k++;
          p *= rand();
        }
        c = k;
      } else c = Math.round(lam + Math.sqrt(lam) * gauss());
      c = Math.max(0, Math.min(tokens, c));
      if (c > 0) active++;
      if (c > max) max = c;
    }
    return [active, max];
  };

  const admitState = (st: ReqState) => {
    st.out.admissions++;
    st.kv = 0;
    st.pages = [];
    st.cachedPages = 0;
    st.blocks = [];
    st.inserted = false;
    if (cacheOn && st.r.hashIds) {
      // Longest chain of cached prefix blocks; at least one prompt token is always computed.
      const maxBlocks = Math.floor((st.target - 1) / opts.blockTokens);
      for (let b = 0; b < Math.min(maxBlocks, st.r.hashIds.length); b++) {
        const blk = cache.get(st.r.hashIds[b]);
        if (!blk) break;
        blk.refs++;
        touch(blk);
        st.blocks.push(blk);
        for (const p of blk.pages) st.pages.push(p);
      }
      st.cachedPages = st.pages.length;
      st.kv = st.blocks.length * opts.blockTokens;
      st.out.hitTokens += st.kv;
    }
  };
  const cachePrompt = (st: ReqState) => {
    // After its prefill, a request's full prompt blocks join the cache (locked while it runs).
    if (!cacheOn || !st.r.hashIds || st.inserted) return;
    st.inserted = true;
    const full = Math.min(Math.floor(st.r.prompt / opts.blockTokens), st.r.hashIds.length);
    for (let b = st.blocks.length; b < full; b++) {
      const hash = st.r.hashIds[b];
      if (cache.has(hash)) break; // another request cached it meanwhile; keep our own copy private
      const parent = b > 0 ? st.r.hashIds[b - 1] : null;
      const pages = st.pages.slice(b * pagesPerBlock, (b + 1) * pagesPerBlock);
      const blk: CacheBlock = { hash, parent, pages, refs: 1, children: 0 };
      if (parent !== null) {
        const p = cache.get(parent);
        if (p) p.children++;
      }
      cache.set(hash, blk);
      st.blocks.push(blk);
      st.cachedPages += pagesPerBlock;
    }
  };
  const releaseState = (st: ReqState) => {
    for (const b of st.blocks) b.refs--;
    release(st.pages, st.cachedPages);
    st.pages = [];
    st.blocks = [];
    st.cachedPages = 0;
  };

  let iter = 0;
  const entries: BatchEntry[] = [];
  while (done < requests.length) {
    while (next < requests.length && requests[next].arrival * 1e6 <= t) {
      const r = requests[next++];
      const st: ReqState = {
        r,
        out: outcomes[r.id],
        target: r.prompt,
        kv: 0,
        pages: [],
        cachedPages: 0,
        blocks: [],
        inserted: false,
      };
      if (r.prompt + r.output > poolTokens) {
        // Like SGLang, a request that can never fit in the KV pool is rejected on arrival.
        st.out.rejected = true;
        done++;
        continue;
      }
      waiting.push(st);
    }
    if (!running.length && !waiting.length && !chunked) {
      if (next >= requests.length) break;
      t = Math.max(t, requests[next].arrival * 1e6);
      continue;
    }

    entries.length = 0;
    let decode = false;
    let retractedNow = 0;
    const batchStates: ReqState[] = [];
    // ---- try an extend batch
    let budget = Math.min(eng.chunkedPrefillSize, eng.maxPrefillTokens);
    let reserve = 0;
    for (const st of running) reserve += (st.r.output - st.out.generated) * eng.newTokenRatio;
    let reservePages = Math.ceil(reserve / ps);
    const tryExtend = (st: ReqState): boolean => {
      const need = st.target - st.kv;
      let q = Math.min(need, budget);
      if (q < need && q >= ps) q -= q % ps; // chunks end on a page boundary
      if (q <= 0) return false;
      const newPages = pagesFor(st.kv + q) - st.pages.length;
      const avail = count + (cacheOn ? evictable() : 0);
      if (newPages + reservePages > avail) return false;
      if (newPages > count) evict(newPages);
      const prefix = st.kv;
      alloc(newPages, st.pages);
      st.kv += q;
      st.out.extendTokens += q;
      budget -= q;
      entries.push({ req: st.r.id, q, prefix, kv: st.kv, pages: st.pages });
      batchStates.push(st);
      return true;
    };
    let nextChunked: ReqState | null = null;
    if (chunked) {
      if (tryExtend(chunked)) {
        if (chunked.kv < chunked.target) nextChunked = chunked;
      } else nextChunked = chunked;
    }
    while (
      waiting.length && budget > 0 && !nextChunked &&
      running.length + batchStates.length < eng.maxRunningRequests
    ) {
      const st = waiting[0];
      admitState(st);
      if (!tryExtend(st)) {
        // Undo the prefix lock and stop: FCFS admission does not skip ahead.
        for (const b of st.blocks) b.refs--;
        st.out.hitTokens -= st.blocks.length * opts.blockTokens;
        st.out.admissions--;
        st.blocks = [];
        st.pages = [];
        st.cachedPages = 0;
        st.kv = 0;
        break;
      }
      waiting.shift();
      if (st.kv < st.target) nextChunked = st;
      reservePages += Math.ceil((st.r.output * eng.newTokenRatio) / ps);
    }
    chunked = nextChunked;

    let seqs = 0;
    if (entries.length) {
      for (const st of batchStates) {
        if (st.kv < st.target) continue;
        cachePrompt(st);
        st.out.generated++;
        seqs++;
        if (st.out.firstTokenUs < 0) st.out.firstTokenUs = t;
        if (st.out.generated >= st.r.output) {
          releaseState(st);
          done++;
        } else running.push(st);
      }
      // A request finishing in this iteration still gets its finish time after the clock moves.
    } else if (running.length) {
      decode = true;
      // Every running request writes one more KV entry; retract until the new pages fit.
      let need = 0;
      for (const st of running) if (st.kv % ps === 0) need++;
      if (need > count) evict(need);
      while (need > count && running.length > 1) {
        // SGLang retracts the request with the fewest output tokens (longest prompt on ties).
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
        const st = running[victim];
        running.splice(victim, 1);
        if (st.kv % ps === 0) need--;
        releaseState(st);
        st.out.retractions++;
        // Re-prefill prompt plus what it already generated, then decode the rest.
        st.target = st.r.prompt + st.out.generated;
        waiting.unshift(st);
        retractedNow++;
        evict(need);
      }
      for (const st of running) {
        if (st.kv % ps === 0) alloc(1, st.pages);
        const prefix = st.kv;
        st.kv++;
        st.out.decodeSteps++;
        entries.push({ req: st.r.id, q: 1, prefix, kv: st.kv, pages: st.pages });
      }
      seqs = running.length;
      peakDecode = Math.max(peakDecode, running.length);
    }
    if (!entries.length) {
      // Nothing could run (the next request waits for memory that only arrivals can't free).
      if (next >= requests.length) throw new Error("internal: scheduler stalled");
      t = Math.max(t, requests[next].arrival * 1e6);
      continue;
    }

    let tokens = 0, kvTokens = 0, kvPages = 0, qk = 0, maxKv = 0, maxQ = 0, hasPrefix = 0;
    for (const e of entries) {
      tokens += e.q;
      kvTokens += e.kv;
      kvPages += pagesFor(e.kv);
      // Causal attention: query i of the new tokens sees prefix + i + 1 keys.
      qk += e.q * e.prefix + (e.q * (e.q + 1)) / 2;
      if (e.kv > maxKv) maxKv = e.kv;
      if (e.q > maxQ) maxQ = e.q;
      if (e.prefix > 0) hasPrefix = 1;
    }
    const [active, maxPer] = routeStats(tokens);
    let dur = eng.iterationOverheadUs;
    for (const s of model.plan) {
      if (!siteRuns(s, decode, hasPrefix === 1)) continue;
      const rows = siteRows(s, model, tokens, seqs);
      if (rows === 0) continue; // not launched (see events.ts)
      dur += s.mult * siteCostUs(s, eng, { rows, qk, kvTokens, expertsActive: active });
    }
    opts.onIteration?.(iter, decode, entries);
    const used = poolPages - count;
    peakUsed = Math.max(peakUsed, used);
    cols.iter.push(iter);
    cols.tStartUs.push(t);
    cols.durUs.push(dur);
    cols.decode.push(decode ? 1 : 0);
    cols.hasPrefix.push(decode ? 0 : hasPrefix);
    cols.tokens.push(tokens);
    cols.seqs.push(seqs);
    cols.batch.push(entries.length);
    cols.kvTokens.push(kvTokens);
    cols.kvPages.push(kvPages);
    cols.qk.push(qk);
    cols.maxKv.push(maxKv);
    cols.maxQ.push(maxQ);
    cols.usedPages.push(used);
    cols.running.push(running.length);
    cols.expertsActive.push(active);
    cols.maxPerExpert.push(maxPer);
    cols.retracted.push(retractedNow);
    t += dur;
    iter++;

    if (decode) {
      const still: ReqState[] = [];
      for (const st of running) {
        st.out.generated++;
        if (st.out.generated >= st.r.output) {
          st.out.finishUs = t;
          releaseState(st);
          done++;
        } else still.push(st);
      }
      running = still;
    } else {
      for (const st of batchStates) {
        if (st.kv >= st.target && st.out.generated >= st.r.output && st.out.finishUs < 0) {
          st.out.finishUs = t;
        }
      }
    }
  }
  return {
    iterations: cols,
    requests: outcomes,
    poolPages,
    peakUsedPages: peakUsed,
    peakDecodeBatch: peakDecode,
    endUs: t,
  };
}
