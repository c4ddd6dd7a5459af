/** Params of the aggregate stage (zod, with the defaults that reproduce the paper's choices). */
import { z } from "zod";

/** One baseline candidate: solutions by `author` whose name matches the regex `match`. */
export const BaselineRule = z.object({
  author: z.string().min(1),
  /** Regex on the solution name ("" matches every solution of the author). */
  match: z.string().default(""),
  /** Words the captions use for this baseline. */
  label: z.string().min(1),
  kind: z.enum(["flashinfer", "torch", "other"]).default("other"),
});
export type BaselineRule = z.infer<typeof BaselineRule>;

/** Splits an op type into figure panels by definition name (e.g. GQA decode vs prefill). */
export const PanelRule = z.object({
  opType: z.string().min(1),
  /** Regex on the definition name. */
  match: z.string().min(1),
  panel: z.string().min(1),
});
export type PanelRule = z.infer<typeof PanelRule>;

/**
 * Paper's baselines: FlashInfer for every op type but GEMM, torch.matmul (cuBLAS) for GEMM
 * (shared/research/paper.md §4). The later rules are fallbacks, used where the earlier ones match
 * no solution, and every caption says so.
 */
export const DEFAULT_BASELINES: Record<string, BaselineRule[]> = {
  "*": [
    { author: "baseline", match: "^flashinfer", label: "FlashInfer", kind: "flashinfer" },
    { author: "baseline", match: "^torch", label: "torch (FlashInfer absent)", kind: "torch" },
    { author: "baseline", match: "", label: "author 'baseline'", kind: "other" },
  ],
  gemm: [
    { author: "baseline", match: "^torch_matmul", label: "torch.matmul (cuBLAS)", kind: "torch" },
    { author: "baseline", match: "", label: "author 'baseline'", kind: "other" },
  ],
};

/** Default panels: the paper's Fig. 6 shows GQA paged *decode*; prefill goes to its own panel. */
export const DEFAULT_PANELS: PanelRule[] = [
  { opType: "gqa_paged", match: "decode", panel: "gqa_paged_decode" },
  { opType: "gqa_paged", match: "prefill", panel: "gqa_paged_prefill" },
  { opType: "mla_paged", match: "decode", panel: "mla_paged_decode" },
  { opType: "mla_paged", match: "prefill", panel: "mla_paged_prefill" },
];

/** The aggregate stage's params. */
export const AggregateParams = z.object({
  /** Op type (or "*") → ordered baseline candidates. */
  baselines: z.record(z.string(), z.array(BaselineRule).min(1)).default(DEFAULT_BASELINES),
  /** fast_p comparison: the paper's strict ">" or the web leaderboard's ">=". */
  fastPOperator: z.enum([">", ">="]).default(">"),
  /** Step of the fast_p p grid (Fig. 6 uses 0.1). */
  pGridStep: z.number().positive().default(0.1),
  /** Largest p per panel ("*" for the rest): Fig. 6 runs to 1.5, and to 4.0 for RMSNorm. */
  pGridMax: z.record(z.string(), z.number().positive()).default({ "*": 1.5, rmsnorm: 4.0 }),
  panels: z.array(PanelRule).default(DEFAULT_PANELS),
  /** The leaderboard's headline p (the paper ranks at fast_0.95). */
  winP: z.number().nonnegative().default(0.95),
  /**
   * Table C ranks only authors with comparable coverage: at least this fraction of the best-covered
   * author's judged workloads. The others are listed after the ranked ones, without a rank: a win
   * rate over a few workloads does not compare with one over most of them.
   */
  leaderboardMinCoverage: z.number().min(0).max(1).default(0.8),
  /** A group without a baseline latency: compare against its fastest author (win_at_p.py) or count no wins. */
  winBaselineFallback: z.enum(["fastest", "none"]).default("fastest"),
  /** Step and cap of the win@p curve's p grid. */
  winGridStep: z.number().positive().default(0.01),
  winGridCap: z.number().positive().default(4),
  /** Our author name → the paper's model key (gpt-5, o3, gemini-2.5-pro, claude-opus-4.1) for side-by-side rows. */
  authorAliases: z.record(z.string(), z.string()).default({}),
  /** Roofline ceilings (measured H100, shared/research/h100-baselines.md). */
  bandwidthTBs: z.number().positive().default(3.001),
  tflops: z.number().positive().default(743.4),
  /** Trace files are copied next to the report (so its links work after publishing) up to this total size. */
  copyTracesMaxBytes: z.number().int().nonnegative().default(64 * 1024 * 1024),
  /**
   * The folder of shipped runs (repo-relative; one folder per run with a run.json), reported beside
   * this machine's judgements; "" reports this machine's alone.
   */
  shippedRuns: z.string().default("results"),
  /** Rows of a long table shown in the HTML report (the CSV always has every row). */
  htmlMaxRows: z.number().int().positive().default(200),
});
/** Parsed params. */
export type AggregateParams = z.infer<typeof AggregateParams>;
