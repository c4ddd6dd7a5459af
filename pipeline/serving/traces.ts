/**
 * Request-trace loaders. Every format becomes the same `Request` list: arrival time (seconds from
 * the first request), prompt and output token counts, and (Mooncake only) the prefix-block hashes.
 * Bad input fails with one error naming the file and line; nothing is half-loaded.
 */
import { readFileSync } from "node:fs";

/** One request of a serving trace. */
import { rng } from "../lib/mod.ts";

export interface Request {
  /** 0-based position in the trace (after the optional limit). */
  id: number;
  /** Seconds since the first request of the trace. */
  arrival: number;
  /** Prompt (context) tokens. */
  prompt: number;
  /** Tokens to generate (at least 1: a request always samples one token after its prefill). */
  output: number;
  /** Mooncake prefix-block hashes (one per `blockSize` prompt tokens); absent when unknown. */
  hashIds?: number[];
}

/** The trace formats tracepipe reads. */
export type TraceFormat = "azure-csv" | "mooncake-jsonl" | "length-stats-csv";

/** Thrown for malformed trace input; the message names file and line. */
export class TraceError extends Error {}

/** Parsing options. */
export interface LoadOptions {
  /** Keep only the first `limit` requests (after sorting by arrival). */
  limit?: number;
  /** Poisson arrival rate (requests/s) for formats without timestamps. */
  rate?: number;
  /** Seed of the Poisson arrival process. */
  seed?: number;
}

function parseCount(raw: string | undefined, file: string, line: number, col: string): number {
  const s = (raw ?? "").trim();
  if (!/^-?\d+(\.0+)?$/.test(s)) {
    throw new TraceError(`${file}:${line}: column ${col}: "${s}" is not an integer token count`);
  }
  const v = Number(s);
  if (v < 0) throw new TraceError(`${file}:${line}: column ${col}: negative token count ${v}`);
  return v;
}

/** Azure timestamps: `2023-11-16 18:17:03.9799600` (7 fractional digits) → ms since epoch (UTC). */
function parseAzureTime(s: string, file: string, line: number): number {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$/.exec(s.trim());
  if (!m) throw new TraceError(`${file}:${line}: column TIMESTAMP: "${s}" is not a timestamp`);
  const [, y, mo, d, h, mi, se, frac] = m;
  const ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +se);
  // Keep microseconds: sub-ms order matters when requests arrive in bursts.
  return ms + (frac ? Number(`0.${frac}`) * 1000 : 0);
}

function splitCsv(text: string): string[] {
  const lines = text.split(/\r?\n/);
  while (lines.length && !lines[lines.length - 1].trim()) lines.pop();
  return lines;
}

function header(lines: string[], file: string, need: string[]): Map<string, number> {
  if (!lines.length) throw new TraceError(`${file}: empty file (no header)`);
  const cols = lines[0].split(",").map((c) => c.trim());
  const idx = new Map(cols.map((c, i) => [c, i]));
  for (const n of need) {
    if (!idx.has(n)) {
      throw new TraceError(`${file}:1: missing column ${n} (header: ${cols.join(",")})`);
    }
  }
  return idx;
}

function finish(reqs: Omit<Request, "id">[], limit?: number): Request[] {
  // Stable sort by arrival keeps file order among equal timestamps.
  const sorted = reqs.map((r, i) => [r, i] as const).sort((a, b) =>
    a[0].arrival - b[0].arrival || a[1] - b[1]
  );
  const t0 = sorted.length ? sorted[0][0].arrival : 0;
  const out = sorted.slice(0, limit ?? sorted.length).map(([r], id) => ({
    ...r,
    id,
    arrival: r.arrival - t0,
  }));
  if (!out.length) throw new TraceError("trace has no requests");
  return out;
}

/** Azure LLM inference 2023 (`TIMESTAMP,ContextTokens,GeneratedTokens`). */
export function parseAzureCsv(text: string, file: string, opts: LoadOptions = {}): Request[] {
  const lines = splitCsv(text);
  const idx = header(lines, file, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]);
  const reqs: Omit<Request, "id">[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const f = lines[i].split(",");
    if (f.length !== idx.size) {
      throw new TraceError(`${file}:${i + 1}: expected ${idx.size} fields, found ${f.length}`);
    }
    const prompt = parseCount(f[idx.get("ContextTokens")!], file, i + 1, "ContextTokens");
    const output = parseCount(f[idx.get("GeneratedTokens")!], file, i + 1, "GeneratedTokens");
    reqs.push({
      arrival: parseAzureTime(f[idx.get("TIMESTAMP")!], file, i + 1) / 1000,
      prompt: Math.max(1, prompt),
      output: Math.max(1, output),
    });
  }
  return finish(reqs, opts.limit);
}

/** Mooncake FAST'25 JSONL: `{timestamp (ms), input_length, output_length, hash_ids[]}`. */
export function parseMooncakeJsonl(text: string, file: string, opts: LoadOptions = {}): Request[] {
  const reqs: Omit<Request, "id">[] = [];
  text.split("\n").forEach((raw, i) => {
    if (!raw.trim()) return;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(raw);
    } catch (e) {
      throw new TraceError(`${file}:${i + 1}: malformed JSON: ${(e as Error).message}`);
    }
    const num = (k: string) => {
      const v = o[k];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw new TraceError(
          `${file}:${i + 1}: field ${k}: expected a number, got ${JSON.stringify(v)}`,
        );
      }
      if (v < 0) throw new TraceError(`${file}:${i + 1}: field ${k}: negative value ${v}`);
      return v;
    };
    const hashes = o.hash_ids;
    if (!Array.isArray(hashes) || !hashes.every((h) => Number.isInteger(h))) {
      throw new TraceError(`${file}:${i + 1}: field hash_ids: expected an array of integers`);
    }
    reqs.push({
      arrival: num("timestamp") / 1000,
      prompt: Math.max(1, num("input_length")),
      output: Math.max(1, num("output_length")),
      hashIds: hashes as number[],
    });
  });
  return finish(reqs, opts.limit);
}

/**
 * Length statistics without timestamps (ShareGPT, arXiv: `num_prefill_tokens,num_decode_tokens`):
 * arrivals are a seeded Poisson process at `rate` requests/s (exponential gaps).
 */
export function parseLengthStatsCsv(text: string, file: string, opts: LoadOptions = {}): Request[] {
  const lines = splitCsv(text);
  const idx = header(lines, file, ["num_prefill_tokens", "num_decode_tokens"]);
  if (!(opts.rate && opts.rate > 0)) {
    throw new TraceError(`${file}: a length-statistics trace needs rate > 0`);
  }
  const rand = rng(opts.seed ?? 0);
  let t = 0;
  const reqs: Omit<Request, "id">[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const f = lines[i].split(",");
    const prompt = parseCount(f[idx.get("num_prefill_tokens")!], file, i + 1, "num_prefill_tokens");
    const output = parseCount(f[idx.get("num_decode_tokens")!], file, i + 1, "num_decode_tokens");
    reqs.push({ arrival: t, prompt: Math.max(1, prompt), output: Math.max(1, output) });
    t += -Math.log(1 - rand()) / opts.rate;
    if (opts.limit !== undefined && reqs.length >= opts.limit) break;
  }
  return finish(reqs, opts.limit);
}

/** Loads a trace file in the given format. */
export function loadTrace(
  path: string,
  format: TraceFormat,
  opts: LoadOptions = {},
  display = path,
): Request[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TraceError(`${display}: cannot read: ${(e as Error).message}`);
  }
  switch (format) {
    case "azure-csv":
      return parseAzureCsv(text, display, opts);
    case "mooncake-jsonl":
      return parseMooncakeJsonl(text, display, opts);
    case "length-stats-csv":
      return parseLengthStatsCsv(text, display, opts);
  }
}

/** The traces shipped in data/serving-traces, by the name params use. */
export const KNOWN_TRACES: Record<
  string,
  { path: string; format: TraceFormat; blockSize?: number }
> = {
  "azure-conv": {
    path: "data/serving-traces/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv",
    format: "azure-csv",
  },
  "azure-code": {
    path: "data/serving-traces/azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv",
    format: "azure-csv",
  },
  "mooncake-conversation": {
    path: "data/serving-traces/mooncake-fast25/conversation_trace.jsonl",
    format: "mooncake-jsonl",
    blockSize: 512,
  },
  "mooncake-synthetic": {
    path: "data/serving-traces/mooncake-fast25/synthetic_trace.jsonl",
    format: "mooncake-jsonl",
    blockSize: 512,
  },
  "sharegpt": {
    path:
      "data/serving-traces/sharegpt-length-stats/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    format: "length-stats-csv",
  },
};
