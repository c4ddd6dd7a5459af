"""GPU: traces a generation of a Hugging Face Llama with Llama-3.1-8B's dimensions (hidden 4096, 32 query
heads, 8 KV heads, head_dim 128, intermediate 14336, vocabulary 128256; random weights from a config, no
download; 2 layers unless --layers) through the paged decoder (page size 1 and 64, continuous batching) into a
FlashInfer TraceSet: every RMSNorm, linear and paged-attention call, with its axes and index tensors. Run on
the GPU machine from the repository root:

    PYTHONPATH=python:python/tests python3 python/tests/gpu_trace_llama.py OUT_DIR [--layers 2] [--steps 24]

Prints one JSON line (calls per definition, errors, the device). `tp validate OUT_DIR` checks the folder and
`collect` reads it as an engine dump (profiles/llama-traced.json runs it through the pipeline)."""

import argparse
import json
import sys

import torch

from gpu_common import make_llama
from tracepipe_apply import TracingConfig, disable_tracing, enable_tracing, get_tracing_runtime, patch_llama
from tracepipe_apply.paged import PagedDecoder

# Prompt lengths of a small mixed batch (short chat turns to a long document) and their arrival iterations,
# so the decoder interleaves prefills with running decodes as continuous batching does.
PROMPT_LENGTHS = (5, 17, 40, 96, 300, 700)
ARRIVALS = (0, 0, 2, 4, 6, 9)


def llama_3_1_8b_config(layers):
    """Llama-3.1-8B's published dimensions (meta-llama/Llama-3.1-8B config.json) with `layers` layers."""
    from transformers import LlamaConfig  # noqa: PLC0415
    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
                       max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False)


def trace(out_dir, layers, steps):
    """Runs the decoder at page sizes 1 and 64 under tracing; returns the traced calls per definition."""
    cfg = llama_3_1_8b_config(layers)
    model = make_llama(cfg, torch.bfloat16)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    patch_llama()
    # One workload per distinct axes of a definition: layers repeat the same shapes, and the TraceSet is
    # committed to the repository.
    enable_tracing(out_dir, TracingConfig(filter_policy="keep_first_k_by_axes", filter_policy_kwargs={"k": 1}))
    rt = get_tracing_runtime()
    tokens = {}
    for ps in (1, 64):
        dec = PagedDecoder(model, page_size=ps, max_tokens=4096)
        for p, t in zip(prompts, ARRIVALS):
            dec.add(p, steps, arrival=t)
        tokens[ps] = dec.run()
    calls = {}
    for name, *_ in rt.entries:
        calls[name] = calls.get(name, 0) + 1
    errors, skipped = dict(rt.errors), dict(rt.skipped)
    disable_tracing()
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "layers": layers,
            "steps": steps, "calls": calls, "errors": errors, "skipped": skipped,
            "same_tokens_ps1_ps64": tokens[1] == tokens[64], "out": out_dir}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=24)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    print(json.dumps(trace(a.out, a.layers, a.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
