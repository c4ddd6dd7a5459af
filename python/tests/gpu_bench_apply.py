"""GPU measurement of tracepipe_apply (one call, under 8 minutes on an H100). From the repo root:

    PYTHONPATH=python python3 python/tests/gpu_bench_apply.py [--traceset DIR] [--layers 4] [--steps 64]

1. Dispatch overhead per call (host ns, best of 7 x 20k calls): apply() with no runtime, with an
   empty table, with a miss on a known definition, and with a hit on a solution that is the fallback
   itself; the F.linear adapter with an empty table and with a hit on F.linear itself. Goal < 1 us.
2. End to end on a Hugging Face Llama (Llama-3.1-8B dimensions, --layers layers, random weights),
   eager, prompt 32 + --steps greedy steps, batch 1/16/64, in bf16 and fp16: unpatched; patched with
   the fallback as the solution (pinned: torch_kernels.py); patched with the project's kernels where
   they serve a definition of that dtype (cuda/rmsnorm is bf16, cuda/gemm fp16), or with the pinned
   choice of --traceset DIR (an apply stage cell or .tracepipe/apply); and patched with a deliberately
   slower solution (each gemm computed SLOW_REPEATS times), whose measured slowdown over the fallback
   is checked against the sum over calls of its per-call difference (`slow_predicted_ms`; --skip slow
   leaves it out). Tokens compared with unpatched.
3. CUDA graphs: one decode-shaped forward (batch x 1 token, no KV cache) captured after eager warm-up
   and replayed, unpatched / fallback / project / slower, bf16 and fp16: apply()'s cost where the
   paper's Fig. 8 measured it (SGLang replays graphs, so dispatch happens at capture only); the
   counters show no call fell back for being captured unwarmed. The slower solution's slowdown over
   the fallback is checked against the sum over the forward's gemm calls of its per-call difference
   (`slow_predicted_ms`), where replay leaves no host time to blur it (eager generation spreads by
   as much as the check allows).
4. The paged decoder on the bf16 model (page size 1, batch 1/16/64): the torch attention fallback
   against the project's CUDA paged decode/prefill kernels.
Prints compact tables; writes $OUT/apply_bench.json (after each section, so a cut run keeps results).
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import traceback

import torch
import torch.nn.functional as F

from gpu_common import (device_ms, fallback_solutions, hf_greedy, interleaved, llama_config, llama_definitions,
                        make_llama, once, paired, predicted_slow_delta_ms, project_solutions, slow_forward_delta_ms,
                        slow_solutions, timed,
                        write_pinned)
from helpers import gemm_def, solution, write_set
from tracepipe_apply import apply, disable_apply, enable_apply, get_runtime, loader, patch_llama, reset_stats, stats
from tracepipe_apply.paged import PagedDecoder
from tracepipe_apply.traceset import Solution

KERNELS = ["cuda/rmsnorm", "cuda/gemm", "cuda/gqa_paged_decode", "cuda/gqa_paged_prefill"]
TRITON_KERNELS = ["triton/rmsnorm", "triton/gemm", "triton/gqa_paged_decode", "triton/gqa_paged_prefill"]
PROMPT = 32  # prompt tokens of every end-to-end generation
SLOW_REPEATS = 3  # the slower solution computes each gemm this many times
RESULT = {"device": None, "torch": torch.__version__, "dispatch": {}, "e2e": [], "graphs": [], "paged": [],
          "notes": []}


def save():
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "apply_bench.json"), "w") as f:
            json.dump(RESULT, f, indent=1, default=str)


def per_call_ns(fn, n=20000, repeats=7):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def bench_dispatch(tmp):
    """Section 1: ns per call, and the overhead over the plain call."""
    A, B = torch.randn(4, 8, device="cuda"), torch.randn(8, 8, device="cuda")

    def fb(a, b):
        return a

    d = gemm_def(8, 8)  # gemm_n8_k8, float32
    empty = write_set(os.path.join(tmp, "empty"), [], [], [])
    known = write_set(os.path.join(tmp, "known"), [d], [], [])
    same = write_set(os.path.join(tmp, "same"), [d], [solution("same", d["name"], "def run(A, B):\n    return A\n")], [])
    lin = write_pinned(os.path.join(tmp, "lin"), [d], fallback_solutions([d]))
    name = d["name"]

    @apply(name)
    def decorated(a, b):
        return a

    rows = {"plain call": per_call_ns(lambda: fb(A, B)),
            "apply, no runtime": per_call_ns(lambda: apply(name, args=(A, B), fallback=fb))}
    for label, root, mode in (("apply, empty table", empty, "ranked"), ("apply, miss (known definition)", known,
                                                                          "ranked"),
                              ("apply, hit (solution = fallback)", same, "pinned")):
        with enable_apply(root, mode=mode):
            rows[label] = per_call_ns(lambda: apply(name, args=(A, B), fallback=fb))
            if mode == "pinned":
                rows["decorator, hit (solution = fallback)"] = per_call_ns(lambda: decorated(A, B))
    orig = F.linear
    rows["F.linear, original"] = per_call_ns(lambda: orig(A, B))
    with enable_apply(empty):
        rows["F.linear adapter, empty table"] = per_call_ns(lambda: F.linear(A, B))
    with enable_apply(lin, mode="pinned"):
        rows["F.linear adapter, hit (solution = F.linear)"] = per_call_ns(lambda: F.linear(A, B))
    base = {k: ("F.linear, original" if k.startswith("F.linear") else "plain call") for k in rows}
    RESULT["dispatch"] = {k: {"ns_per_call": round(v, 1), "overhead_ns": round(v - rows[base[k]], 1)}
                          for k, v in rows.items()}
    print("\n== dispatch overhead (host ns per call, best of 7 x 20000) ==")
    print(f"{'case':46s} {'ns/call':>9s} {'overhead':>9s}")
    for k, v in RESULT["dispatch"].items():
        print(f"{k:46s} {v['ns_per_call']:9.1f} {v['overhead_ns']:9.1f}")
    save()


def project_root(tmp, cfg, dtype, traceset, kernels=KERNELS, label="project"):
    """(pinned folder, definitions served): the project's kernels (the `kernels` folders) for the
    definitions of this dtype, or the pinned choice of --traceset."""
    if traceset:
        if os.path.exists(os.path.join(traceset, "pinned.json")):
            return traceset, ["(--traceset)"]
        return os.path.join(traceset, "pinned"), ["(--traceset)"]
    defs = llama_definitions(cfg, dtype, attention_page_sizes=(1,))
    sols = [s for s in project_solutions(defs, kernels) if _dtype_ok(s, dtype)]
    served = {s["definition"] for s in sols}
    root = write_pinned(os.path.join(tmp, f"{label}_{dtype}".replace("torch.", "")),
                        [d for d in defs if d["name"] in served], sols)
    return root, sorted(served)


_VARIANTS = {}


def variant_roots(tmp, cfg, dtype, traceset):
    """([(label, pinned folder)] for fallback, project (CUDA), triton and slow, definitions the CUDA
    kernels serve) for `dtype`: written once and shared by the end-to-end and CUDA-graph sections."""
    if dtype not in _VARIANTS:
        defs = llama_definitions(cfg, dtype)
        name = str(dtype).replace("torch.", "")
        proj_root, served = project_root(tmp, cfg, dtype, traceset)
        roots = [("fallback", write_pinned(os.path.join(tmp, f"fb_{name}"), defs, fallback_solutions(defs))),
                 ("project", proj_root),
                 ("slow", write_pinned(os.path.join(tmp, f"slow_{name}"), defs, slow_solutions(defs, SLOW_REPEATS)))]
        if not traceset:
            # The project's Triton kernels as a variant of their own (JIT-compiled in the untimed
            # first round); --traceset pins one choice per definition instead.
            roots.insert(2, ("triton", project_root(tmp, cfg, dtype, None, TRITON_KERNELS, "triton")[0]))
        _VARIANTS[dtype] = (roots, served)
    return _VARIANTS[dtype]


def _dtype_ok(sol, dtype):
    """The project's kernels are written for the official dtypes (gemm fp16, the others bf16)."""
    official = "float16" if sol["definition"].startswith("gemm_") else "bfloat16"
    return str(dtype) == f"torch.{official}"


def prebuild(tmp, cfg):
    """Builds every project kernel the runs need, in parallel, before anything is timed."""
    sols = []
    for dt in (torch.bfloat16, torch.float16):
        defs = llama_definitions(cfg, dt, attention_page_sizes=(1,))
        sols += [s for s in project_solutions(defs, KERNELS) if _dtype_ok(s, dt)]
    t0 = time.time()
    built = loader.build_native([Solution(s, s["name"]) for s in sols])
    outcomes = {n: b.get("outcome") for n, b in built.items()}
    RESULT["notes"].append({"prebuild_s": round(time.time() - t0, 1), "builds": outcomes})
    bad = {n: (b.get("reason") or "")[-300:] for n, b in built.items() if b.get("outcome") != "built"}
    print(f"prebuilt {len(sols)} project solutions in {time.time() - t0:.0f} s; not built: {bad or 'none'}", flush=True)


def bench_e2e(tmp, cfg, model32, steps, batches, traceset, with_slow=True, rounds=5):
    """Section 2. The variants run interleaved, one generation each per round in rotating order
    (`interleaved`), and each is compared with the unpatched model round by round (`paired`): timed
    in blocks one after the other, the eleventh session's eager runs drifted ±20 % between blocks,
    more than any overhead they were to show."""
    patch_llama()
    print(f"\n== end to end: HF Llama ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}), prompt {PROMPT} + "
          f"{steps} steps, eager, {rounds} interleaved rounds (ms, medians); ovh: fallback over unpatched, "
          "round by round, with its interquartile range; slow-fb: the slower solution's slowdown over the "
          "fallback, round by round; predicted: the sum over calls of its per-call difference ==")
    print(f"{'dtype':9s} {'batch':>5s} {'unpatched':>10s} {'fallback':>10s} {'project':>10s} {'triton':>10s} "
          f"{'ovh %':>6s} {'iqr %':>6s} {'tok=fb':>7s} {'tok=proj':>8s} {'slow-fb':>8s} {'predicted':>9s}  substituted")
    for dtype in (torch.bfloat16, torch.float16):
        model = copy.deepcopy(model32).to(dtype)
        roots, served = variant_roots(tmp, cfg, dtype, traceset)
        variants = [("unpatched", None)] + [(label, root) for label, root in roots if with_slow or label != "slow"]
        for b in batches:
            prompts = torch.randint(0, cfg.vocab_size, (b, PROMPT), device="cuda",
                                    generator=torch.Generator(device="cuda").manual_seed(b))

            def generate(root):
                """(seconds, tokens) of one generation, apply enabled around it (not timed) for a root."""
                if root is None:
                    return once(lambda: hf_greedy(model, prompts, steps)[0])
                with enable_apply(root, mode="pinned"):
                    return once(lambda: hf_greedy(model, prompts, steps)[0])

            row = {"dtype": str(dtype), "batch": b, "rounds": rounds}
            # A first, untimed round: builds and warms each variant, and gives its tokens and counters.
            _, ref = generate(None)
            runners = {}
            for label, root in variants[1:]:
                reset_stats()
                try:
                    _, out = generate(root)
                    row[f"{label}_tokens_equal"] = float((out == ref).float().mean())
                    row[f"{label}_hits"] = {n: c["hit"] for n, c in stats().items() if c["hit"]}
                    runners[label] = (lambda r: lambda: generate(r)[0])(root)
                except Exception as e:  # noqa: BLE001 - one failed variant is a result, not the end
                    row[f"{label}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                while get_runtime() is not None:
                    disable_apply()
            times, errors = interleaved({"unpatched": lambda: generate(None)[0], **runners}, rounds)
            for label, err in errors.items():
                row[f"{label}_error"] = err
            for label, ts in times.items():
                if ts:
                    row[f"{label}_ms"] = sorted(ts)[len(ts) // 2] * 1e3
            fb = paired(times, "fallback", "unpatched")
            row["fallback_overhead_pct"] = fb[0] if fb else float("nan")
            row["fallback_overhead_iqr_pct"] = fb[1] if fb else float("nan")
            slow = paired(times, "slow", "fallback")
            if slow:
                row["slow_delta_ms"] = slow[2] * 1e3
            if with_slow:
                row["slow_predicted_ms"] = predicted_slow_delta_ms(cfg, dtype, b, PROMPT, steps, SLOW_REPEATS)
            RESULT["e2e"].append(row)
            save()
            print(f"{str(dtype)[6:]:9s} {b:5d} {row['unpatched_ms']:10.1f} {row.get('fallback_ms', float('nan')):10.1f} "
                  f"{row.get('project_ms', float('nan')):10.1f} {row.get('triton_ms', float('nan')):10.1f} "
                  f"{row['fallback_overhead_pct']:6.2f} {row['fallback_overhead_iqr_pct']:6.2f} "
                  f"{row.get('fallback_tokens_equal', float('nan')):7.3f} {row.get('project_tokens_equal', float('nan')):8.3f}"
                  f" {row.get('slow_delta_ms', float('nan')):8.1f}"
                  f" {row.get('slow_predicted_ms', float('nan')):9.1f}"
                  f"  {', '.join(sorted({x.split('_')[0] for x in served if not x.startswith('gqa')}))}"
                  f"{''.join(f'  {k}: {v}' for k, v in row.items() if k.endswith('_error'))}", flush=True)
        del model
        torch.cuda.empty_cache()


def graph_forward_ms(model, ids, reps=20):
    """(median ms of one replay, logits) of a CUDA graph of model(ids) without a KV cache, captured
    after three eager calls on a side stream (PyTorch's recipe; with apply() enabled they also load
    the solutions, which the runtime never does during capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(input_ids=ids, use_cache=False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = model(input_ids=ids, use_cache=False).logits
    ms = device_ms(graph.replay, reps)
    out = logits.clone()
    del graph
    return ms, out


@torch.no_grad()
def bench_graphs(tmp, cfg, model32, batches, traceset):
    """Section 3."""
    patch_llama()
    print("\n== CUDA graphs: one decode-shaped forward (batch x 1 token, no KV cache), median replay (ms) ==")
    print(f"{'dtype':9s} {'batch':>5s} {'unpatched':>10s} {'fallback':>10s} {'project':>10s} {'triton':>10s} "
          f"{'slow':>8s} {'ovh %':>6s} {'argmax=':>8s} {'in capture':>10s} {'slow-fb':>8s} {'predicted':>9s}")
    for dtype in (torch.bfloat16, torch.float16):
        model = copy.deepcopy(model32).to(dtype)
        roots, _ = variant_roots(tmp, cfg, dtype, traceset)
        for b in batches:
            ids = torch.randint(0, cfg.vocab_size, (b, 1), device="cuda",
                                generator=torch.Generator(device="cuda").manual_seed(b))
            row = {"dtype": str(dtype), "batch": b}
            try:
                row["unpatched_ms"], ref = graph_forward_ms(model, ids)
            except Exception as e:  # noqa: BLE001 - a model that cannot be captured is a result
                row["unpatched_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                RESULT["graphs"].append(row)
                save()
                print(f"{str(dtype)[6:]:9s} {b:5d} ERROR {row['unpatched_error']}", flush=True)
                continue
            for label, root in roots:
                reset_stats()
                try:
                    with enable_apply(root, mode="pinned"):
                        t, out = graph_forward_ms(model, ids)
                    row[f"{label}_ms"] = t
                    row[f"{label}_argmax_equal"] = float((out[:, -1].argmax(-1) == ref[:, -1].argmax(-1)).float().mean())
                    row[f"{label}_fallback_capture"] = sum(c["fallback_capture"] for c in stats().values())
                except Exception as e:  # noqa: BLE001
                    row[f"{label}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                    while get_runtime() is not None:
                        disable_apply()
            row["fallback_overhead_pct"] = 100 * (row.get("fallback_ms", float("nan")) / row["unpatched_ms"] - 1)
            if "slow_ms" in row and "fallback_ms" in row:
                # one forward of b tokens: each gemm call once, at M = b
                row["slow_delta_ms"] = row["slow_ms"] - row["fallback_ms"]
                row["slow_predicted_ms"] = slow_forward_delta_ms(cfg, dtype, b, SLOW_REPEATS)
            RESULT["graphs"].append(row)
            save()
            print(f"{str(dtype)[6:]:9s} {b:5d} {row['unpatched_ms']:10.3f} {row.get('fallback_ms', float('nan')):10.3f} "
                  f"{row.get('project_ms', float('nan')):10.3f} {row.get('triton_ms', float('nan')):10.3f} "
                  f"{row.get('slow_ms', float('nan')):8.3f} "
                  f"{row['fallback_overhead_pct']:6.2f} {row.get('fallback_argmax_equal', float('nan')):8.3f} "
                  f"{row.get('fallback_fallback_capture', -1):10d}"
                  f" {row.get('slow_delta_ms', float('nan')):8.3f} {row.get('slow_predicted_ms', float('nan')):9.3f}"
                  f"{''.join(f'  {k}: {v}' for k, v in row.items() if k.endswith('_error'))}", flush=True)
        del model
        torch.cuda.empty_cache()


def bench_paged(tmp, cfg, model32, steps, batches, traceset):
    """Section 4."""
    model = copy.deepcopy(model32).to(torch.bfloat16)
    root, _ = project_root(tmp, cfg, torch.bfloat16, traceset)
    print(f"\n== paged decoder (bf16, page size 1), prompt 32 + {steps} steps (ms) ==")
    print(f"{'batch':>5s} {'torch attn':>11s} {'project':>10s} {'speedup':>8s} {'tok equal':>9s}")
    for b in batches:
        g = torch.Generator().manual_seed(b)
        prompts = [torch.randint(0, cfg.vocab_size, (32,), generator=g).tolist() for _ in range(b)]

        def run():
            dec = PagedDecoder(model, page_size=1, max_tokens=b * (32 + steps) + 64, max_batch=max(64, b))
            for p in prompts:
                dec.add(p, steps)
            return dec.run()
        t_ref, ref = timed(run, repeats=1)
        row = {"batch": b, "torch_ms": t_ref * 1e3}
        reset_stats()
        try:
            with enable_apply(root, mode="pinned"):
                t, out = timed(run, repeats=1)
            row.update(project_ms=t * 1e3, speedup=t_ref / t,
                       tokens_equal=sum(x == y for k in ref for x, y in zip(ref[k], out[k])) / (b * steps),
                       hits={n: c["hit"] for n, c in stats().items() if c["hit"]})
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            while get_runtime() is not None:
                disable_apply()
        RESULT["paged"].append(row)
        save()
        print(f"{b:5d} {row['torch_ms']:11.1f} {row.get('project_ms', float('nan')):10.1f} "
              f"{row.get('speedup', float('nan')):8.2f} {row.get('tokens_equal', float('nan')):9.3f}"
              f"{'  ERROR ' + row['error'] if 'error' in row else ''}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traceset", help="an apply stage cell (or .tracepipe/apply): its pinned choice is 'project'")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the eager end-to-end section")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: dispatch,e2e,graphs,paged; slow: e2e without the slower "
                    "solution")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    RESULT["device"] = torch.cuda.get_device_name()
    RESULT["args"] = vars(a)  # the setup (layers, steps, batches), for the report to state
    batches = [int(x) for x in a.batches.split(",")]
    skip = set(a.skip.split(","))
    t0 = time.time()
    cfg = llama_config(layers=a.layers, hidden=4096, heads=32, kv=8, inter=14336, vocab=32000)
    with tempfile.TemporaryDirectory() as tmp:
        model32 = None
        sections = [("dispatch", lambda: bench_dispatch(tmp)),
                    ("prebuild", lambda: None if a.traceset or {"e2e", "graphs", "paged"} <= skip
                     else prebuild(tmp, cfg)),
                    ("e2e", lambda: bench_e2e(tmp, cfg, model32, a.steps, batches, a.traceset, "slow" not in skip,
                                                   a.rounds)),
                    ("graphs", lambda: bench_graphs(tmp, cfg, model32, batches, a.traceset)),
                    ("paged", lambda: bench_paged(tmp, cfg, model32, a.steps, batches, a.traceset))]
        for name, run in sections:
            if name in skip:
                continue
            if name in ("e2e", "graphs", "paged") and model32 is None:
                model32 = make_llama(cfg, torch.float32)
            try:
                run()
            except Exception:  # noqa: BLE001 - a broken section is reported; the next one still runs
                RESULT["notes"].append({"section": name, "error": traceback.format_exc()[-2000:]})
                print(f"ERROR in section {name}:\n{traceback.format_exc()[-2000:]}", flush=True)
            while get_runtime() is not None:
                disable_apply()
            save()
    RESULT["wall_s"] = round(time.time() - t0, 1)
    save()
    print(f"\ndone in {RESULT['wall_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
