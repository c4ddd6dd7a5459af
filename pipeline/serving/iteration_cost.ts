/**
 * The clock of the scheduling model: which kernel call sites an iteration launches, with what
 * leading dimension, and a roofline estimate of their cost. It orders events and is not a
 * performance prediction.
 */
import type { EngineConfig } from "./engine.ts";
import type { ModelShape, PlanSite } from "./model.ts";

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

/** Per-iteration totals over a batch's entries. */
export interface BatchTotals {
  tokens: number;
  kvTokens: number;
  kvPages: number;
  qk: number;
  maxKv: number;
  maxQ: number;
  /** 1 if any entry has KV before this iteration, else 0. */
  hasPrefix: number;
}

/** Token, KV and attention-work totals of a batch. */
export function batchTotals(
  entries: ReadonlyArray<{ q: number; prefix: number; kv: number }>,
  pageSize: number,
): BatchTotals {
  let tokens = 0, kvTokens = 0, kvPages = 0, qk = 0, maxKv = 0, maxQ = 0, hasPrefix = 0;
  for (const e of entries) {
    tokens += e.q;
    kvTokens += e.kv;
    kvPages += Math.ceil(e.kv / pageSize);
    // Causal attention: query i of the new tokens sees prefix + i + 1 keys.
    qk += e.q * e.prefix + (e.q * (e.q + 1)) / 2;
    if (e.kv > maxKv) maxKv = e.kv;
    if (e.q > maxQ) maxQ = e.q;
    if (e.prefix > 0) hasPrefix = 1;
  }
  return { tokens, kvTokens, kvPages, qk, maxKv, maxQ, hasPrefix };
}

/** The iteration's duration: scheduler overhead plus the roofline of every site that launches. */
export function iterationUs(
  model: ModelShape,
  eng: EngineConfig,
  decode: boolean,
  seqs: number,
  x: BatchTotals,
  expertsActive: number,
): number {
  let dur = eng.iterationOverheadUs;
  for (const s of model.plan) {
    if (!siteRuns(s, decode, x.hasPrefix === 1)) continue;
    const rows = siteRows(s, model, x.tokens, seqs);
    if (rows === 0) continue; // not launched (see events.ts)
    dur += s.mult * siteCostUs(s, eng, { rows, qk: x.qk, kvTokens: x.kvTokens, expertsActive });
  }
  return dur;
}
