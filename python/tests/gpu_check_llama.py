"""GPU check: tracepipe_apply inside an unmodified Hugging Face Llama (transformers' LlamaForCausalLM,
random weights from a config, no download). Run on the GPU machine from the repository root:

    PYTHONPATH=python python3 python/tests/gpu_check_llama.py        (about a minute)

Checks, each printed as one PASS/FAIL line (exit 1 on any FAIL; JSON to $OUT/gpu_check_llama.json):
  1. bf16, pinned with the fallback as the solution (LlamaRMSNorm -> rmsnorm_h{H}, F.linear ->
     gemm_n{N}_k{K}): greedy tokens identical to the unpatched model over 16 steps, counters equal to
     calls per forward x forwards, no error; disabling restores LlamaRMSNorm.forward and F.linear.
  2. fp32, the paged decoder over the same model's weights (page size 1 and 64, continuous batching)
     gives the model's own greedy tokens; with the attention definitions pinned to the fallback it
     gives the same tokens and counts layers x iterations attention calls.
  3. A CUDA graph captured with an unwarmed shape runs the fallback (fallback_capture counted), and
     once warmed eagerly, the captured graph holds the solution.
"""

import json
import os
import sys
import tempfile
import traceback

import torch
import torch.nn.functional as F

from gpu_common import (expected_per_forward, fallback_solutions, hf_greedy, llama_config, llama_definitions,
                        make_llama, write_pinned)
from tracepipe_apply import disable_apply, enable_apply, get_runtime, patch_llama, reset_stats, stats
from tracepipe_apply.paged import PagedDecoder

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + str(detail) if detail else ''}", flush=True)


def check_hf_substitution(cfg, tmp):
    llama_rms = patch_llama()
    orig_forward, orig_linear = llama_rms.forward, F.linear
    model = make_llama(cfg, torch.bfloat16)
    prompts = torch.randint(0, cfg.vocab_size, (4, 12), generator=torch.Generator().manual_seed(1)).cuda()
    ref, forwards = hf_greedy(model, prompts, 16)
    defs = llama_definitions(cfg, torch.bfloat16)
    root = write_pinned(os.path.join(tmp, "fallback_bf16"), defs, fallback_solutions(defs))
    reset_stats()
    with enable_apply(root, mode="pinned"):
        patched = llama_rms.forward is not orig_forward and F.linear is not orig_linear
        out, _ = hf_greedy(model, prompts, 16)
    check("hf bf16: adapters patched while enabled", patched)
    check("hf bf16: greedy tokens identical to the unpatched model (16 steps)", torch.equal(out, ref),
          f"{int((out == ref).sum())}/{ref.numel()} equal")
    got = {n: c["hit"] for n, c in stats().items() if c["hit"] or c["miss"]}
    exp = {n: c * forwards for n, c in expected_per_forward(cfg).items()}
    check("hf bf16: counters = calls per forward x forwards", got == exp, {"got": got, "expected": exp})
    check("hf bf16: no miss or error", all(c["miss"] == 0 and c["error"] == 0 for c in stats().values()))
    check("hf bf16: disabling restores LlamaRMSNorm.forward and F.linear",
          llama_rms.forward is orig_forward and F.linear is orig_linear)
    return model


def check_paged(cfg, tmp):
    model = make_llama(cfg, torch.float32)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in (7, 12, 70)]
    ref = [hf_greedy(model, torch.tensor([p]).cuda(), 16)[0][0].tolist() for p in prompts]
    defs = llama_definitions(cfg, torch.float32, attention_page_sizes=(1, 64))
    root = write_pinned(os.path.join(tmp, "fallback_fp32"), defs, fallback_solutions(defs))
    for ps in (1, 64):
        def run():
            dec = PagedDecoder(model, page_size=ps, max_tokens=1024)
            for p, t in zip(prompts, (0, 0, 3)):
                dec.add(p, 16, arrival=t)
            return dec.run(), dec.log
        out, log = run()
        check(f"paged ps{ps}: the decoder gives the model's own greedy tokens",
              [out[i] for i in range(3)] == ref, f"{sum(a == b for x, y in zip(out.values(), ref) for a, b in zip(x, y))}/48")
        reset_stats()
        with enable_apply(root, mode="pinned"):
            out2, log2 = run()
        check(f"paged ps{ps}: substituted attention keeps the tokens", out2 == out and log2 == log)
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        L = cfg.num_hidden_layers
        got = {k: stats().get(f"gqa_paged_{k}_h{h}_kv{kv}_d{d}_ps{ps}", {}).get("hit", 0)
               for k in ("decode", "prefill_causal")}
        exp = {"decode": L * sum(1 for k, _ in log if k == "decode"),
               "prefill_causal": L * sum(1 for k, _ in log if k == "prefill")}
        check(f"paged ps{ps}: attention counters = layers x iterations", got == exp, {"got": got, "expected": exp})


def check_capture(cfg, tmp):
    defs = llama_definitions(cfg, torch.bfloat16)
    root = write_pinned(os.path.join(tmp, "capture"), defs, fallback_solutions(defs))
    x = torch.randn(5, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(cfg.intermediate_size, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    name = f"gemm_n{cfg.intermediate_size}_k{cfg.hidden_size}"
    F.linear(x, w)  # cuBLAS initialised before any capture
    torch.cuda.synchronize()
    for warm in (False, True):
        reset_stats()
        with enable_apply(root, mode="pinned"):  # a fresh runtime: no shape resolved yet
            if warm:
                F.linear(x, w)  # an eager call resolves the definition
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = F.linear(x, w)
            graph.replay()
            torch.cuda.synchronize()
            c = dict(stats()[name])
        ok = torch.allclose(y.float(), (x @ w.T).float(), atol=1e-1, rtol=1e-2)
        want = {"hit": 2, "fallback_capture": 0} if warm else {"hit": 0, "fallback_capture": 1}
        check(f"capture ({'warmed' if warm else 'unwarmed'}): {want}, replayed result right",
              all(c[k] == v for k, v in want.items()) and ok, c)


def main():
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    cfg = llama_config()
    with tempfile.TemporaryDirectory() as tmp:
        for section in (check_hf_substitution, check_paged, check_capture):
            try:
                section(cfg, tmp)
            except Exception:  # noqa: BLE001 - one broken section is a FAIL line, the others still run
                check(f"{section.__name__} ran to its end", False, traceback.format_exc()[-1500:])
            while get_runtime() is not None:
                disable_apply()
    failed = [r for r in RESULTS if not r["ok"]]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed", flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check_llama.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": RESULTS}, f,
                      indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
