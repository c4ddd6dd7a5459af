"""Traces a generation of the tiny Llama (paged decoder, page size 1 and 64) into a TraceSet folder.

    PYTHONPATH=python /usr/bin/python3 python/tests/trace_tiny.py OUT_DIR

Prints one JSON line: {"calls": {definition: calls}, "out": OUT_DIR}. python/apply_test.ts then checks
the folder with `tp validate` and feeds it to `collect` as an engine dump.
"""

import json
import sys

from tracepipe_apply import disable_tracing, enable_tracing, get_tracing_runtime, register_rmsnorm_class
from tracepipe_apply.paged import PagedDecoder
from tracepipe_apply.tiny import TinyRMSNorm, tiny_llama

PROMPTS = [[1, 2, 3, 4, 5], list(range(10, 19)), [(7 * i) % 96 for i in range(70)]]


def trace_generation(out_dir, steps=16):
    """Runs the decoder for both page sizes under tracing; returns the traced calls per definition."""
    register_rmsnorm_class(TinyRMSNorm)
    model = tiny_llama(seed=0)
    enable_tracing(out_dir)
    rt = get_tracing_runtime()
    for ps in (1, 64):
        dec = PagedDecoder(model, page_size=ps, max_tokens=512)
        for p, t in zip(PROMPTS, (0, 0, 3)):
            dec.add(p, steps, arrival=t)
        dec.run()
    calls = {}
    for name, *_ in rt.entries:
        calls[name] = calls.get(name, 0) + 1
    errors, skipped = dict(rt.errors), dict(rt.skipped)
    disable_tracing()
    return {"calls": calls, "errors": errors, "skipped": skipped, "out": out_dir}


if __name__ == "__main__":
    print(json.dumps(trace_generation(sys.argv[1])))
