"""Writes the tiny-Llama fixture TraceSet (python/tests/fixtures/tiny_llama): the definitions the
TinyLlama and its paged decoder call (float32), one Python solution each (torch_kernels.py, the very
code of the fallbacks, so substituted runs are bit-identical), and PASSED traces on a few shapes.

    PYTHONPATH=python /usr/bin/python3 python/tests/make_fixture.py

test_fixture.py fails when the committed copy differs from what this writes (torch_kernels.py edited).
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import HERE, kernel_solution, trace, write_set  # noqa: E402
from tracepipe_apply import templates  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "tiny_llama")


def tiny_definitions(h=64, inter=128, vocab=96, heads=4, kv=2, d=16, dtype="float32"):
    """Every definition a TinyLlama of these sizes calls through the adapters and the paged decoder."""
    defs = [templates.rmsnorm(h, dtype)]
    for n, k in sorted({(heads * d, h), (kv * d, h), (h, heads * d), (inter, h), (h, inter), (vocab, h)}):
        defs.append(templates.gemm(n, k, dtype))
    for ps in (1, 64):
        defs.append(templates.gqa_paged("decode", heads, kv, d, ps, dtype))
        defs.append(templates.gqa_paged("prefill", heads, kv, d, ps, dtype))
    return defs


def fixture_contents():
    defs = tiny_definitions()
    sols, traces = [], []
    for d in defs:
        name = "torch_" + d["name"]
        sols.append(kernel_solution(name, d["name"]))
        if d["op_type"] == "gemm":
            traces += [trace(d["name"], name, {"M": m}, speedup=1.0) for m in (1, 2, 3)]
        elif d["op_type"] == "rmsnorm":
            traces += [trace(d["name"], name, {"batch_size": b}, speedup=1.0) for b in (1, 2, 3)]
        else:
            var = sorted(a for a, s in d["axes"].items() if s["type"] == "var")
            traces.append(trace(d["name"], name, {a: 1 for a in var}, speedup=1.0))
    return defs, sols, traces


def write_fixture(root):
    if os.path.exists(root):
        shutil.rmtree(root)
    return write_set(root, *fixture_contents())


if __name__ == "__main__":
    write_fixture(FIXTURE)
    print(f"wrote {FIXTURE}")
