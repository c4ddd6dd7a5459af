/**
 * The one workload checker, shared by `validate`, `extract` and `verify`: a workload against its
 * definition. Var axes exactly; every input present, of the right kind, and no
 * input the definition lacks; blobs confined to the TraceSet (no `..`, no absolute path, no link
 * leading outside), present, with the right key, shape and dtype; the definition's constraints;
 * and the index-tensor invariants the kernels rely on (indptr starts at 0 and never decreases,
 * indices within [0, num_pages), last-page lengths within [1, page_size], causal prefill never
 * has more queries than keys).
 *
 * Every problem carries the JSON path `validate` reports it under, and whether flashinfer-bench
 * tolerates it when it runs the workload (a missing input is drawn at random, an extra axis or
 * input is ignored, a causal-incompatible layout still runs): `validate` reports them all, the
 * judging stages skip a workload only for the others.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { blobPathEscapes } from "./confine.ts";
import { checkConstraints, type ConstraintResult, type TensorValue } from "./constraints.ts";
import {
  decodeSafetensors,
  type RawTensor,
  tensorToNumbers,
  TRACE_TO_SAFETENSORS,
} from "./safetensors.ts";
import type { Definition, Workload } from "./schema.ts";

/** One problem: where in the workload (a JSON path), what, and whether a run tolerates it. */
export interface WorkloadProblem {
  path: string;
  message: string;
  tolerated: boolean;
}

/** Problems found in one workload (constraint failures, shape/dtype/range errors), plus unsupported. */
export interface WorkloadCheck {
  /** Every problem's message (the tolerated ones too). */
  problems: string[];
  /** The messages of the problems flashinfer-bench tolerates when it runs the workload. */
  tolerated: string[];
  unsupported: string[];
  constraints: ConstraintResult[];
  /** The problems with their JSON paths, in the order found. */
  located: WorkloadProblem[];
}

const CAUSAL_ONLY = "causal prefill needs";

/**
 * Splits a check's problems into the causal-layout ones (some official prefill captures hold more
 * queries than keys; their blobs are otherwise valid and kernels still run) and the rest, which
 * make the workload impossible to materialise or run.
 */
export function splitProblems(chk: WorkloadCheck): { causal: string[]; blocking: string[] } {
  return {
    causal: chk.problems.filter((p) => p.includes(CAUSAL_ONLY)),
    blocking: chk.problems.filter((p) => !p.includes(CAUSAL_ONLY)),
  };
}

/** The problems that keep a workload from being run at all (see `WorkloadCheck.tolerated`). */
export const runBlockers = (chk: WorkloadCheck): string[] =>
  chk.problems.filter((p) => !chk.tolerated.includes(p));

/** Checks the axes; returns the full axis environment (const and var). */
function checkAxes(def: Definition, w: Workload, add: Add): Record<string, number> {
  const axes: Record<string, number> = {};
  for (const [name, ax] of Object.entries(def.axes)) {
    if (ax.type === "const") axes[name] = ax.value;
    else if (w.axes[name] === undefined) add("$.workload.axes", `missing var axis "${name}"`);
    else axes[name] = w.axes[name]; // zero is legal: an empty batch is a valid workload
  }
  for (const k of Object.keys(w.axes)) {
    if (!(k in def.axes) || def.axes[k].type === "const") {
      add(`$.workload.axes.${k}`, `axis "${k}" is not a var axis of ${def.name}`, true);
    }
  }
  return axes;
}

type Add = (path: string, message: string, tolerated?: boolean) => void;

/** Reads one tensor input's blob (when `root` is given) into `tv`, reporting what is wrong. */
function readBlob(
  name: string,
  inp: { path: string; tensor_key: string },
  dtype: string,
  tv: TensorValue,
  root: string,
  blobs: Map<string, Record<string, RawTensor>>,
  add: Add,
): void {
  const path = `$.workload.inputs.${name}`;
  const escape = blobPathEscapes(root, inp.path);
  if (escape) return add(`${path}.path`, `blob path "${inp.path}" ${escape}`);
  const file = join(root, inp.path);
  if (!existsSync(file)) return add(`${path}.path`, `blob ${inp.path} does not exist`);
  let ts = blobs.get(file);
  if (!ts) {
    try {
      ts = decodeSafetensors(readFileSync(file)).tensors;
    } catch (e) {
      return add(`${path}.path`, `${inp.path}: ${(e as Error).message}`);
    }
    blobs.set(file, ts);
  }
  const t = ts[inp.tensor_key];
  if (!t) return add(`${path}.tensor_key`, `blob ${inp.path} has no tensor "${inp.tensor_key}"`);
  if (t.shape.join(",") !== tv.shape.join(",")) {
    add(path, `input "${name}": blob shape [${t.shape}] != expected [${tv.shape}]`);
  }
  if (TRACE_TO_SAFETENSORS[dtype as keyof typeof TRACE_TO_SAFETENSORS] !== t.dtype) {
    add(path, `input "${name}": blob dtype ${t.dtype} != ${dtype}`);
  }
  if (t.dtype.startsWith("I") || t.dtype === "U8" || t.dtype.startsWith("F")) {
    tv.data = tensorToNumbers(t);
  }
}

/** Checks the inputs; returns the evaluation environment of the constraints. */
function checkInputs(
  def: Definition,
  w: Workload,
  axes: Record<string, number>,
  root: string | undefined,
  add: Add,
): Record<string, number | TensorValue> {
  const env: Record<string, number | TensorValue> = { ...axes };
  const blobs = new Map<string, Record<string, RawTensor>>();
  for (const name of Object.keys(w.inputs)) {
    if (!(name in def.inputs)) {
      add(`$.workload.inputs.${name}`, `"${name}" is not an input of ${def.name}`, true);
    }
  }
  for (const [name, spec] of Object.entries(def.inputs)) {
    const inp = w.inputs[name];
    const path = `$.workload.inputs.${name}`;
    if (!inp) {
      add("$.workload.inputs", `input "${name}" missing`, true);
      continue;
    }
    if (spec.shape === null) {
      if (inp.type === "scalar") env[name] = Number(inp.value);
      else if (inp.type === "safetensors") {
        add(path, `input "${name}" is a scalar but given as a blob`);
      }
      continue;
    }
    const tv: TensorValue = { shape: spec.shape.map((a) => axes[a] ?? NaN) };
    if (inp.type === "scalar") add(path, `input "${name}" is a tensor but given as a scalar`);
    if (inp.type === "safetensors" && root !== undefined) {
      readBlob(name, inp, spec.dtype, tv, root, blobs, add);
    }
    env[name] = tv;
  }
  return env;
}

/** Checks the index tensors' invariants (see the module doc). */
function checkIndices(
  def: Definition,
  env: Record<string, number | TensorValue>,
  axes: Record<string, number>,
  add: Add,
): void {
  const data = (n: string) => (env[n] as TensorValue | undefined)?.data;
  for (const n of ["kv_indptr", "qo_indptr", "cu_seqlens"]) {
    const d = data(n);
    if (!d) continue;
    if (d[0] !== 0) add(`$.workload.inputs.${n}`, `${n}[0] = ${d[0]}, expected 0`);
    const at = d.findIndex((v, i) => i > 0 && v < d[i - 1]);
    if (at > 0) add(`$.workload.inputs.${n}`, `${n} decreases at ${at}`);
  }
  const idx = data("kv_indices");
  if (idx && axes.num_pages !== undefined) {
    const bad = idx.findIndex((v) => v < 0 || v >= axes.num_pages || !Number.isInteger(v));
    if (bad >= 0) {
      add(
        "$.workload.inputs.kv_indices",
        `kv_indices[${bad}] = ${idx[bad]} outside [0, ${axes.num_pages})`,
      );
    }
  }
  const last = data("kv_last_page_len");
  const ps = axes.page_size;
  if (last && ps !== undefined) {
    const bad = last.findIndex((v) => v < 1 || v > ps);
    if (bad >= 0) {
      add(
        "$.workload.inputs.kv_last_page_len",
        `kv_last_page_len[${bad}] = ${last[bad]} outside [1, ${ps}]`,
      );
    }
  }
  const qo = data("qo_indptr"), kvp = data("kv_indptr");
  if (qo && kvp && def.name.includes("causal") && qo.length === kvp.length) {
    for (let i = 0; i + 1 < qo.length; i++) {
      const q = qo[i + 1] - qo[i];
      let kv = kvp[i + 1] - kvp[i];
      if ("kv_indices" in def.inputs && ps !== undefined) {
        // Paged: KV tokens = pages × page_size, less the unused tail of the last page.
        kv = kv * ps - (last ? ps - last[i] : 0);
      }
      if (q > kv) {
        add(
          "$.workload.inputs.qo_indptr",
          `request ${i}: ${q} queries but ${kv} keys (${CAUSAL_ONLY} qo <= kv)`,
          true,
        );
        break;
      }
    }
  }
}

/**
 * Checks a workload against its definition (see the module doc). Blobs are read from `root`, the
 * TraceSet the workload belongs to; without it they are not opened.
 */
export function checkWorkload(def: Definition, w: Workload, root?: string): WorkloadCheck {
  const located: WorkloadProblem[] = [];
  const add: Add = (path, message, tolerated = false) =>
    void located.push({ path, message, tolerated });
  const axes = checkAxes(def, w, add);
  const env = checkInputs(def, w, axes, root, add);
  const constraints = checkConstraints(def, env);
  for (const c of constraints) {
    if (c.status === "fail") add("$.workload", `constraint "${c.expr}" ${c.detail}`);
  }
  checkIndices(def, env, axes, add);
  const unsupported = constraints.filter((c) => c.status === "unsupported").map((c) =>
    `${c.expr}: ${(c as { detail: string }).detail}`
  );
  return {
    problems: located.map((p) => p.message),
    tolerated: located.filter((p) => p.tolerated).map((p) => p.message),
    unsupported,
    constraints,
    located,
  };
}
