"""What the GPU scripts share: a Hugging Face Llama with random weights from a config (no download),
greedy generation through its own forward, the definitions it calls, and pinned TraceSets (the
fallback as the solution, or the project's kernels materialised from their folders as generate does).
Needs transformers (the GPU machine has 5.17 with torch 2.11)."""

import glob
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from helpers import KERNELS_SOURCE, kernel_solution, solution, write_json  # noqa: E402
from tracepipe_apply import templates  # noqa: E402
from tracepipe_apply.templates import trace_dtype  # noqa: E402


def llama_config(layers=2, hidden=512, heads=8, kv=2, inter=1024, vocab=1000):
    from transformers import LlamaConfig  # noqa: PLC0415
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv, head_dim=hidden // heads,
                       rms_norm_eps=1e-5, max_position_embeddings=4096, tie_word_embeddings=False)


def make_llama(cfg, dtype, seed=0, device="cuda"):
    """LlamaForCausalLM with random weights scaled so greedy choices are far from ties (made on the
    device: a 1B-parameter model initialises in seconds there)."""
    from transformers import LlamaForCausalLM  # noqa: PLC0415
    torch.manual_seed(seed)
    with torch.device(device):
        m = LlamaForCausalLM(cfg)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g, device=device))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g, device=device) / math.sqrt(p.shape[-1]))
    return m.to(dtype).eval()


@torch.no_grad()
def hf_greedy(model, prompts, steps):
    """Greedy tokens [B, steps] from the model's own forward and KV cache; also the forward count."""
    out = model(input_ids=prompts, use_cache=True)
    cache, toks = out.past_key_values, [out.logits[:, -1].argmax(-1)]
    for _ in range(steps - 1):
        out = model(input_ids=toks[-1][:, None], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        toks.append(out.logits[:, -1].argmax(-1))
    return torch.stack(toks, 1), steps


def once(fn):
    """(seconds, result) of one call of fn, the GPU synchronised around it."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, res


def timed(fn, repeats=3):
    """(median seconds, result) of fn() after one warm-up call, the GPU synchronised around each."""
    res = fn()
    times = []
    for _ in range(repeats):
        t, res = once(fn)
        times.append(t)
    return sorted(times)[len(times) // 2], res


def interleaved(runners, rounds):
    """{label: [seconds, one per round]} and {label: error}: each runner (a callable returning the
    seconds it measured) is called once per round, the order rotating round by round, so drift over
    the measurement (clocks, host state, allocator) falls on every runner alike instead of on whichever
    ran last. A runner that raises is left out of the later rounds, its error kept."""
    labels = list(runners)
    times, errors = {label: [] for label in labels}, {}
    for r in range(rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            if label in errors:
                continue
            try:
                times[label].append(runners[label]())
            except Exception as e:  # noqa: BLE001 - one failed variant is a result, not the end
                errors[label] = f"{type(e).__name__}: {str(e)[:300]}"
    return times, errors


def paired(times, label, base):
    """label against base, round by round: (median of label/base - 1 in %, interquartile range of
    that ratio in %, median of label - base in seconds); None where either has no round."""
    pairs = list(zip(times.get(label) or [], times.get(base) or []))
    if not pairs:
        return None
    ratios = sorted(a / b for a, b in pairs)
    deltas = sorted(a - b for a, b in pairs)

    def quantile(xs, q):
        pos = q * (len(xs) - 1)
        lo = int(pos)
        return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)

    return (100 * (quantile(ratios, 0.5) - 1), 100 * (quantile(ratios, 0.75) - quantile(ratios, 0.25)),
            quantile(deltas, 0.5))


def llama_gemms(cfg):
    """(N, K) of every linear a Llama forward calls, with calls per forward."""
    h, d = cfg.hidden_size, cfg.head_dim
    L = cfg.num_hidden_layers
    calls = {}
    for n, k, c in ((cfg.num_attention_heads * d, h, L), (cfg.num_key_value_heads * d, h, 2 * L),
                    (h, cfg.num_attention_heads * d, L), (cfg.intermediate_size, h, 2 * L),
                    (h, cfg.intermediate_size, L), (cfg.vocab_size, h, 1)):
        calls[(n, k)] = calls.get((n, k), 0) + c
    return calls


def expected_per_forward(cfg):
    """{definition: calls per forward} of the rmsnorm and gemm adapters."""
    exp = {f"rmsnorm_h{cfg.hidden_size}": 2 * cfg.num_hidden_layers + 1}
    for (n, k), c in llama_gemms(cfg).items():
        exp[f"gemm_n{n}_k{k}"] = c
    return exp


def llama_definitions(cfg, dtype, attention_page_sizes=()):
    """Definition dicts for the model's rmsnorm and gemm calls (and paged attention), in `dtype`:
    the official definition where data/definitions has one of that dtype, else the family template."""
    dt = trace_dtype(dtype)
    names = [f"rmsnorm_h{cfg.hidden_size}"] + [f"gemm_n{n}_k{k}" for n, k in llama_gemms(cfg)]
    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    for ps in attention_page_sizes:
        names += [f"gqa_paged_decode_h{h}_kv{kv}_d{d}_ps{ps}", f"gqa_paged_prefill_causal_h{h}_kv{kv}_d{d}_ps{ps}"]
    official = {}
    for p in glob.glob(os.path.join(ROOT, "data", "definitions", "*", "*.json")):
        with open(p) as f:
            raw = json.load(f)
        official[raw["name"]] = raw
    out = []
    for n in names:
        raw = official.get(n)
        first = next(iter(raw["inputs"].values()))["dtype"] if raw else None
        out.append(raw if raw and first == dt else templates.synthesize(n, dt))
    return out


def write_pinned(root, definitions, solutions):
    """A pinned folder: definitions/ and one solution per definition."""
    for d in definitions:
        write_json(os.path.join(root, "definitions", d["op_type"], d["name"] + ".json"), d)
    ops = {d["name"]: d["op_type"] for d in definitions}
    for s in solutions:
        write_json(os.path.join(root, "solutions", s["author"], ops[s["definition"]], s["definition"],
                                s["name"] + ".json"), s)
    return root


def fallback_solutions(definitions):
    """torch_kernels.py as the solution of each definition: the fallback itself."""
    return [kernel_solution("fallback_" + d["name"], d["name"]) for d in definitions]


def slow_solutions(definitions, repeats):
    """The fallback made deliberately slower by a known amount: each gemm is computed `repeats` times
    (the last result returned, so the output is the fallback's); the other definitions keep the
    fallback. The end-to-end section checks that the slowdown it measures is the sum over calls of
    the per-call difference (`predicted_slow_delta_ms`)."""
    code = KERNELS_SOURCE + (f"\n\ndef slow_gemm(A, B):\n    for _ in range({repeats - 1}):\n"
                             "        gemm(A, B)\n    return gemm(A, B)\n")
    return [solution("slow_" + d["name"], d["name"], code, entry="torch_kernels.py::slow_gemm", author="tracepipe")
            if d["name"].startswith("gemm_") else kernel_solution("fallback_" + d["name"], d["name"])
            for d in definitions]


def device_ms(fn, reps=30):
    """Median device ms of fn() between two CUDA events, after a warm-up call (no L2 flush: inside
    the model the same weights are read warm too)."""
    fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def slow_delta_ms(cfg, dtype, forwards, repeats):
    """What `slow_solutions` should add to `forwards`, a list of (tokens m, number of forwards): over the
    model's gemm definitions, calls per forward x (slow - fallback) per call at M = m, each timed on its own."""
    from tracepipe_apply import torch_kernels  # noqa: PLC0415

    total = 0.0
    for (n, k), calls in llama_gemms(cfg).items():
        B = torch.randn(n, k, device="cuda", dtype=dtype)
        for m, count in forwards:
            A = torch.randn(m, k, device="cuda", dtype=dtype)
            once = device_ms(lambda: torch_kernels.gemm(A, B))
            slow = device_ms(lambda: [torch_kernels.gemm(A, B) for _ in range(repeats)])
            total += calls * count * (slow - once)
        del A, B
    return total


def slow_forward_delta_ms(cfg, dtype, m, repeats):
    """What `slow_solutions` should add to one forward of m tokens (a replayed CUDA graph)."""
    return slow_delta_ms(cfg, dtype, [(m, 1)], repeats)


def predicted_slow_delta_ms(cfg, dtype, batch, prompt, steps, repeats):
    """What `slow_solutions` should add to one greedy generation (`hf_greedy`: one prefill forward of
    batch x prompt tokens, then steps - 1 decode forwards of batch tokens)."""
    return slow_delta_ms(cfg, dtype, [(batch * prompt, 1), (batch, steps - 1)], repeats)


def project_solutions(definitions, kernel_dirs):
    """The project's kernels (default sweep point), materialised as tools/kcheck.py and generate do,
    for each definition a kernel folder serves (the first folder that serves it wins)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import kcheck  # noqa: PLC0415

    out = []
    for d in definitions:
        for kdir in kernel_dirs:
            sols = kcheck.solutions_of(os.path.join(ROOT, kdir), d, False)
            if sols:
                out.append(sols[0])
                break
    return out
