/**
 * zod schemas of the FlashInfer Trace format, field for field compatible with flashinfer-bench
 * (see shared/research/flashinfer-bench-reference.md §1 and the conformance checklist §8.2).
 *
 * Conventions copied on purpose from flashinfer-bench's pydantic models:
 * - unknown keys are accepted and dropped (zod objects strip them by default);
 * - `type` fields have defaults, so `{}` is a var axis / a random input and `{"value": 4}` a const axis;
 * - `TensorSpec.shape` must be present, `null` meaning a scalar.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { checkPythonShape } from "./python_shape.ts";

const NonEmpty = z.string().min(1);
const NonNegInt = z.number().int().nonnegative();
const OptDescription = z.string().nullable().optional();

/** The format's floating-point dtypes (what a kernel manifest's `dtypes` may name). */
export const FLOATING_DTYPES = [
  "float32",
  "float16",
  "bfloat16",
  "float8_e4m3fn",
  "float8_e5m2",
  "float4_e2m1",
] as const;

/** The 11 dtypes of the format; any other string is an error. */
export const DTYPES = [
  ...FLOATING_DTYPES,
  "int64",
  "int32",
  "int16",
  "int8",
  "bool",
] as const;
/** A FlashInfer Trace dtype. */
export const DType = z.enum(DTYPES);
export type DType = z.infer<typeof DType>;

/** A constant axis: its value is fixed by the definition (0 allowed). */
export const AxisConst = z.object({
  type: z.literal("const").default("const"),
  value: NonNegInt,
  description: OptDescription,
});
/** A variable axis: its value comes from each workload. */
export const AxisVar = z.object({
  type: z.literal("var").default("var"),
  description: OptDescription,
});
/** Either axis kind; a const axis is tried first because only it requires `value`. */
export const Axis = z.union([AxisConst, AxisVar]);
export type Axis = z.infer<typeof Axis>;

/** A tensor (or, with `shape: null`, a scalar) in a definition's inputs or outputs. */
export const TensorSpec = z.object({
  shape: z.array(NonEmpty).nullable(),
  dtype: DType,
  description: OptDescription,
});
export type TensorSpec = z.infer<typeof TensorSpec>;

/** A kernel definition: axes, tensor specs, constraints and the Python reference. */
export const Definition = z
  .object({
    name: NonEmpty,
    op_type: NonEmpty,
    axes: z.record(NonEmpty, Axis),
    inputs: z.record(NonEmpty, TensorSpec),
    outputs: z.record(NonEmpty, TensorSpec),
    reference: NonEmpty,
    tags: z.array(NonEmpty).default([]),
    description: OptDescription,
    constraints: z.array(NonEmpty).default([]),
  })
  .superRefine((def, ctx) => {
    const shape = checkPythonShape(def.reference);
    if (shape) ctx.addIssue({ code: "custom", path: ["reference"], message: shape });
    for (const name of Object.keys(def.inputs)) {
      if (name in def.outputs) {
        ctx.addIssue({
          code: "custom",
          path: ["outputs", name],
          message: `Input and output names must not overlap ("${name}")`,
        });
      }
    }
    for (const [kind, specs] of [["inputs", def.inputs], ["outputs", def.outputs]] as const) {
      for (const [tensor, spec] of Object.entries(specs)) {
        (spec.shape ?? []).forEach((axis, i) => {
          if (!(axis in def.axes)) {
            ctx.addIssue({
              code: "custom",
              path: [kind, tensor, "shape", i],
              message: `${
                kind === "inputs" ? "Input" : "Output"
              } "${tensor}" references undefined axis "${axis}"`,
            });
          }
        });
      }
    }
  });
export type Definition = z.infer<typeof Definition>;

/** A workload input read from a safetensors blob; `path` is relative to the TraceSet root. */
export const SafetensorsInput = z.object({
  type: z.literal("safetensors").default("safetensors"),
  path: NonEmpty,
  tensor_key: NonEmpty,
});
/** A scalar workload input with a literal value. */
export const ScalarInput = z.object({
  type: z.literal("scalar").default("scalar"),
  value: z.union([z.number(), z.boolean()]),
});
/** A workload input generated at random by the harness. */
export const RandomInput = z.object({ type: z.literal("random").default("random") });
/** Any input descriptor; tried most-specific first, so `{}` is random as in flashinfer-bench. */
export const InputSpec = z.union([SafetensorsInput, ScalarInput, RandomInput]);
export type InputSpec = z.infer<typeof InputSpec>;

/** A tolerance: a finite number, zero or more. */
const Tolerance = z.number().nonnegative();

/**
 * One concrete instance of a definition: var-axis values and input descriptors. `max_atol`,
 * `max_rtol` and `required_matched_ratio` are SOL-ExecBench's per-workload tolerances, an
 * optional extension flashinfer-bench does not know (its pydantic model ignores them): when
 * present they replace the judge's default absolute and relative tolerances and the share of
 * output elements that must be within them. Absent, the workload is flashinfer-bench's exactly.
 */
export const Workload = z.object({
  axes: z.record(z.string(), NonNegInt),
  inputs: z.record(z.string(), InputSpec),
  uuid: NonEmpty,
  max_atol: Tolerance.optional(),
  max_rtol: Tolerance.optional(),
  required_matched_ratio: z.number().min(0).max(1).optional(),
});
export type Workload = z.infer<typeof Workload>;

/** The languages flashinfer-bench's BuildSpec accepts. */
export const LANGUAGES = ["python", "triton", "cpp", "cuda", "tilelang"] as const;

/** How a solution is built and called. */
export const BuildSpec = z.object({
  language: z.enum(LANGUAGES),
  target_hardware: z.array(z.string()).min(1),
  entry_point: NonEmpty.refine((s) => s.split("::").length === 2, {
    message: 'entry_point must have the form "<file>::<symbol>" with exactly one "::"',
  }),
  dependencies: z.array(NonEmpty).default([]),
  destination_passing_style: z.boolean().default(true),
  binding: z.enum(["tvm-ffi", "torch"]).nullable().default(null),
});
export type BuildSpec = z.infer<typeof BuildSpec>;

/** One source file of a solution; paths are relative and never climb out of the solution. */
export const SourceFile = z.object({
  path: NonEmpty.superRefine((p, ctx) => {
    if (p.startsWith("/") || /^[A-Za-z]:[\\/]/.test(p)) {
      ctx.addIssue({ code: "custom", message: `absolute path not allowed: "${p}"` });
    }
    if (p.split(/[\\/]/).includes("..")) {
      ctx.addIssue({ code: "custom", message: `parent directory traversal not allowed: "${p}"` });
    }
  }),
  content: NonEmpty,
});
export type SourceFile = z.infer<typeof SourceFile>;

/** A candidate implementation of a definition. */
export const Solution = z
  .object({
    name: NonEmpty,
    definition: NonEmpty,
    author: NonEmpty,
    spec: BuildSpec,
    sources: z.array(SourceFile).min(1),
    description: OptDescription,
  })
  .superRefine((sol, ctx) => {
    const seen = new Set<string>();
    sol.sources.forEach((s, i) => {
      if (seen.has(s.path)) {
        ctx.addIssue({
          code: "custom",
          path: ["sources", i, "path"],
          message: `Duplicate source path "${s.path}"`,
        });
      }
      seen.add(s.path);
    });
    const entryFile = sol.spec.entry_point.split("::")[0];
    if (sol.spec.entry_point.includes("::") && !seen.has(entryFile)) {
      ctx.addIssue({
        code: "custom",
        path: ["spec", "entry_point"],
        message: `Entry source file "${entryFile}" not found in sources`,
      });
    }
  });
export type Solution = z.infer<typeof Solution>;

/** The 7 evaluation statuses; there are no others. */
export const STATUSES = [
  "PASSED",
  "INCORRECT_SHAPE",
  "INCORRECT_NUMERICAL",
  "INCORRECT_DTYPE",
  "RUNTIME_ERROR",
  "COMPILE_ERROR",
  "TIMEOUT",
] as const;
export const EvaluationStatus = z.enum(STATUSES);
export type EvaluationStatus = z.infer<typeof EvaluationStatus>;

/** A float that may be serialised as "Infinity"/"-Infinity"/"NaN" (case-insensitive on read). */
export const FloatOrSpecial = z.union([
  z.number(),
  // zod's number() rejects NaN and ±Infinity, which parsed data (not JSON) may hold.
  z.nan(),
  z.custom<number>((v) => v === Infinity || v === -Infinity, { message: "expected a number" }),
  z.string().regex(/^[+-]?(infinity|inf|nan)$/i).transform((s) => {
    const lower = s.toLowerCase();
    if (lower.includes("nan")) return NaN;
    return lower.startsWith("-") ? -Infinity : Infinity;
  }),
]);
const ErrorValue = FloatOrSpecial.refine((v) => Number.isNaN(v) || v >= 0, {
  message: "must be >= 0 or NaN",
}).default(0);

/** Numerical comparison of a solution against the reference. */
export const Correctness = z.object({
  max_relative_error: ErrorValue,
  max_absolute_error: ErrorValue,
  extra: z.record(z.string(), z.unknown()).nullable().optional(),
});
export type Correctness = z.infer<typeof Correctness>;

const NonNegFloat = z.number().nonnegative().default(0);
/** Latency of the solution and of the reference, and their ratio. */
export const Performance = z.object({
  latency_ms: NonNegFloat,
  reference_latency_ms: NonNegFloat,
  speedup_factor: NonNegFloat,
});
export type Performance = z.infer<typeof Performance>;

/** Hardware and library versions an evaluation ran on. */
export const Environment = z.object({
  hardware: NonEmpty,
  libs: z.record(z.string(), z.string()).default({}),
});
export type Environment = z.infer<typeof Environment>;

/** The outcome of running one solution on one workload. */
export const Evaluation = z
  .object({
    status: EvaluationStatus,
    environment: Environment,
    timestamp: NonEmpty,
    log: z.string().default(""),
    correctness: Correctness.nullable().optional(),
    performance: Performance.nullable().optional(),
  })
  .superRefine((ev, ctx) => {
    const has = (v: unknown) => v !== null && v !== undefined;
    const needC = ev.status === "PASSED" || ev.status === "INCORRECT_NUMERICAL";
    const needP = ev.status === "PASSED";
    if (needC && !has(ev.correctness)) {
      ctx.addIssue({
        code: "custom",
        path: ["correctness"],
        message: `status ${ev.status} requires correctness`,
      });
    }
    if (!needC && has(ev.correctness)) {
      ctx.addIssue({
        code: "custom",
        path: ["correctness"],
        message: `status ${ev.status} must not carry correctness`,
      });
    }
    if (needP && !has(ev.performance)) {
      ctx.addIssue({
        code: "custom",
        path: ["performance"],
        message: `status ${ev.status} requires performance`,
      });
    }
    if (!needP && has(ev.performance)) {
      ctx.addIssue({
        code: "custom",
        path: ["performance"],
        message: `status ${ev.status} must not carry performance`,
      });
    }
  });
export type Evaluation = z.infer<typeof Evaluation>;

/** A workload, optionally with the solution run on it and the result. */
export const Trace = z.object({
  definition: NonEmpty,
  workload: Workload,
  solution: z.string().nullable().default(null),
  evaluation: Evaluation.nullable().default(null),
});
export type Trace = z.infer<typeof Trace>;

/** True iff the trace only describes a workload (no solution and no evaluation). */
export function isWorkloadTrace(t: Trace): boolean {
  return t.solution === null && t.evaluation === null;
}

/**
 * flashinfer-bench's solution content hash: SHA-1 over the unseparated UTF-8 concatenation of
 * definition, language, entry_point, binding (or ""), each dependency, then each source's path
 * and content. Name, author, description, target_hardware and the DPS flag are not part of it.
 */
export function solutionHash(sol: Solution): string {
  const h = createHash("sha1");
  for (
    const part of [
      sol.definition,
      sol.spec.language,
      sol.spec.entry_point,
      sol.spec.binding ?? "",
      ...sol.spec.dependencies,
      ...sol.sources.flatMap((s) => [s.path, s.content]),
    ]
  ) h.update(part, "utf8");
  return h.digest("hex");
}

/** The name flashinfer-bench's serve API gives a solution: `<name>_<hash[:8]>`. */
export const uniqueSolutionName = (sol: Solution) => `${sol.name}_${solutionHash(sol).slice(0, 8)}`;
