/**
 * Upgrades the early (July–August 2025) draft of the FlashInfer Trace format into the current one.
 * The draft is what `xslingcn/flashinfer-trace` @ 579673ce holds (SOURCES.md, "Schema differences
 * in the older variants"). Each step is documented in docs/generate.md; every function takes a raw
 * JSON value and returns the upgraded raw value with a list of the changes it made, or a reason
 * why it cannot be upgraded. The functions are idempotent: a current-format object is unchanged.
 *
 * | draft                                   | current                                       |
 * |-----------------------------------------|-----------------------------------------------|
 * | definition `type`                       | `op_type` (when `op_type` is absent)          |
 * | `return {"C": C}` in Python code        | `return C` (keys must be exactly the outputs)  |
 * | spec.language `Python`/`Triton`/`CUDA`  | lower-cased                                   |
 * | spec without destination_passing_style  | `false`: draft entry points return outputs     |
 * | spec.build_commands / build_steps       | dropped (no builder uses them)                |
 * | entry_point without `::`                | rejected, as flashinfer-bench rejects it      |
 * | workload `solution: ""`, `evaluation: {}` | `null`, `null`                              |
 * | workload without `uuid`                 | UUIDv5 of the workload's content              |
 * | evaluation.environment.device           | `hardware`; `log_file` dropped                |
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../engine/mod.ts";
import { splitTopLevel } from "./signature_text.ts";

/** Result of upgrading one object; a failure may name the JSON path at fault. */
export type Upgrade<T = Record<string, unknown>> =
  | { ok: true; value: T; changes: string[] }
  | { ok: false; reason: string; path?: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** RFC 4122 version-5 (SHA-1, name-based) UUID. */
export function uuidv5(namespace: string, name: string): string {
  const ns = Uint8Array.from(namespace.replace(/-/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
  const bytes = createHash("sha1").update(ns).update(new TextEncoder().encode(name)).digest()
    .subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** Namespace of derived workload UUIDs: UUIDv5(URL namespace, "tracepipe:workload"). */
export const WORKLOAD_UUID_NAMESPACE = uuidv5(
  "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
  "tracepipe:workload",
);

/**
 * A workload UUID derived from content: the definition, axes and inputs in canonical JSON, plus
 * the occurrence index when the same content appears more than once in one file (so repeated
 * identical workloads stay distinct, and the first one keeps the plain content UUID).
 */
export function deriveWorkloadUuid(definition: string, workload: Obj, occurrence = 0): string {
  const name = canonicalJson({
    definition,
    axes: workload.axes ?? {},
    inputs: workload.inputs ?? {},
  });
  return uuidv5(WORKLOAD_UUID_NAMESPACE, occurrence === 0 ? name : `${name}#${occurrence}`);
}

/**
 * Rewrites single-line `return {"a": x, "b": y}` statements whose keys are exactly `outputs` into
 * `return x, y` (outputs order). Other dict returns are left alone and counted as `unmatched`.
 */
export function rewriteDictReturns(
  code: string,
  outputs: string[],
): { code: string; rewritten: number; unmatched: number } {
  let rewritten = 0;
  let unmatched = 0;
  const lines = code.split("\n").map((line) => {
    const m = line.match(/^(\s*)return\s*\{(.*)\}\s*$/);
    if (!m) return line;
    const pairs = new Map<string, string>();
    for (const item of splitTopLevel(m[2])) {
      const kv = item.match(/^(["'])([^"']*)\1\s*:\s*([\s\S]+)$/);
      if (!kv) {
        unmatched++;
        return line;
      }
      pairs.set(kv[2], kv[3].trim());
    }
    if (pairs.size !== outputs.length || !outputs.every((o) => pairs.has(o))) {
      unmatched++;
      return line;
    }
    rewritten++;
    return `${m[1]}return ${outputs.map((o) => pairs.get(o)).join(", ")}`;
  });
  return { code: lines.join("\n"), rewritten, unmatched };
}

/** Upgrades a definition. */
export function upgradeDefinition(raw: unknown): Upgrade {
  if (!isObj(raw)) return { ok: false, reason: "a definition must be a JSON object" };
  const out: Obj = { ...raw };
  const changes: string[] = [];
  if (out.op_type === undefined && typeof out.type === "string") {
    out.op_type = out.type;
    delete out.type;
    changes.push(`type "${out.op_type}" → op_type`);
  }
  if (typeof out.reference === "string" && isObj(out.outputs)) {
    const r = rewriteDictReturns(out.reference, Object.keys(out.outputs));
    if (r.rewritten > 0) {
      out.reference = r.code;
      changes.push(
        `reference: ${r.rewritten} dict return(s) rewritten to return the outputs in order`,
      );
    }
  }
  return { ok: true, value: out, changes };
}

/**
 * Upgrades a solution. `draft` says the file comes from a draft-format corpus, where a missing
 * destination_passing_style means value-returning; `outputs` (the definition's output names, when
 * known) enables the dict-return rewrite in Python sources.
 */
export function upgradeSolution(raw: unknown, draft: boolean, outputs?: string[]): Upgrade {
  if (!isObj(raw)) return { ok: false, reason: "a solution must be a JSON object" };
  if (!isObj(raw.spec)) {
    return { ok: false, reason: "spec is missing or not an object", path: "$.spec" };
  }
  const spec: Obj = { ...raw.spec };
  const out: Obj = { ...raw, spec };
  const changes: string[] = [];
  if (typeof spec.entry_point === "string" && spec.entry_point.split("::").length !== 2) {
    return {
      ok: false,
      path: "$.spec.entry_point",
      reason: `spec.entry_point "${spec.entry_point}" does not have the form "<file>::<symbol>" ` +
        `(flashinfer-bench rejects entry points without exactly one "::")`,
    };
  }
  if (typeof spec.language === "string" && spec.language !== spec.language.toLowerCase()) {
    changes.push(`language "${spec.language}" → "${spec.language.toLowerCase()}"`);
    spec.language = spec.language.toLowerCase();
  }
  for (const k of ["build_commands", "build_steps"]) {
    if (k in spec) {
      delete spec[k];
      changes.push(`spec.${k} dropped`);
    }
  }
  if (draft && spec.destination_passing_style === undefined) {
    spec.destination_passing_style = false;
    changes.push("destination_passing_style=false (draft entry points return their outputs)");
  }
  if (
    draft && outputs && Array.isArray(out.sources) &&
    (spec.language === "python" || spec.language === "triton")
  ) {
    out.sources = out.sources.map((s) => {
      if (!isObj(s) || typeof s.content !== "string" || !String(s.path).endsWith(".py")) return s;
      const r = rewriteDictReturns(s.content, outputs);
      if (r.rewritten === 0) return s;
      changes.push(
        `${s.path}: ${r.rewritten} dict return(s) rewritten to return the outputs in order`,
      );
      return { ...s, content: r.code };
    });
  }
  return { ok: true, value: out, changes };
}

/** Upgrades the evaluation part of a trace line (environment.device → hardware, log_file dropped). */
function upgradeEvaluation(ev: unknown, changes: string[]): unknown {
  if (!isObj(ev)) return ev;
  if (Object.keys(ev).length === 0) {
    changes.push("evaluation {} → null");
    return null;
  }
  const out: Obj = { ...ev };
  if ("log_file" in out) {
    delete out.log_file;
    changes.push("evaluation.log_file dropped");
  }
  if (
    isObj(out.environment) && out.environment.hardware === undefined &&
    typeof out.environment.device === "string"
  ) {
    const env: Obj = { ...out.environment, hardware: out.environment.device };
    delete env.device;
    out.environment = env;
    changes.push("environment.device → hardware");
  }
  return out;
}

/**
 * Upgrades one trace line (workload-only or evaluated). `seen` counts content UUIDs derived so
 * far in the same file, so repeated identical workloads get distinct UUIDs.
 */
export function upgradeTraceLine(raw: unknown, seen: Map<string, number> = new Map()): Upgrade {
  if (!isObj(raw)) return { ok: false, reason: "a trace line must be a JSON object" };
  if (!isObj(raw.workload)) {
    return { ok: false, reason: "workload is missing or not an object", path: "$.workload" };
  }
  const changes: string[] = [];
  const out: Obj = { ...raw, workload: { ...raw.workload } };
  const wl = out.workload as Obj;
  if (out.solution === "") {
    out.solution = null;
    changes.push('solution "" → null');
  }
  if (!("evaluation" in out)) out.evaluation = null;
  out.evaluation = upgradeEvaluation(out.evaluation, changes);
  if (wl.uuid === undefined || wl.uuid === "") {
    if (typeof out.definition !== "string") {
      return {
        ok: false,
        reason: "definition is missing, so no uuid can be derived",
        path: "$.definition",
      };
    }
    const base = deriveWorkloadUuid(out.definition, wl);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    wl.uuid = n === 0 ? base : deriveWorkloadUuid(out.definition, wl, n);
    changes.push("workload.uuid derived from content (UUIDv5)");
  }
  return { ok: true, value: out, changes };
}

/** True when a raw definition or solution looks like the draft format. */
export function looksDraft(raw: unknown): boolean {
  if (!isObj(raw)) return false;
  if (raw.op_type === undefined && typeof raw.type === "string" && isObj(raw.axes)) return true;
  const spec = raw.spec;
  return isObj(spec) &&
    ((typeof spec.language === "string" && spec.language !== spec.language.toLowerCase()) ||
      "build_commands" in spec || "build_steps" in spec);
}

/**
 * True when a raw trace line looks like the draft format: an empty-string solution, an empty
 * evaluation object, or an evaluation with the draft's `log_file` or `environment.device`. (A
 * missing uuid alone is not enough: the current format requires one, so it is an error there.)
 */
export function looksDraftTrace(raw: unknown): boolean {
  if (!isObj(raw)) return false;
  if (raw.solution === "") return true;
  const ev = raw.evaluation;
  if (!isObj(ev)) return false;
  return Object.keys(ev).length === 0 || "log_file" in ev ||
    (isObj(ev.environment) && "device" in ev.environment && !("hardware" in ev.environment));
}

/** The draft upgrade as `loadTraceSet` takes it (`{ upgrade: DRAFT_UPGRADERS }`). */
export const DRAFT_UPGRADERS = {
  definition: upgradeDefinition,
  solution: (raw: unknown, outputs?: string[]) => upgradeSolution(raw, true, outputs),
  traceLine: () => {
    const seen = new Map<string, number>();
    return (raw: unknown) => upgradeTraceLine(raw, seen);
  },
};
