"""GPU-only checks of the judge's later defences (run by test_harness.py --device cuda; the lead runs them on
an H100): a CUDA spin kernel's worker gone after its timeout and with a killed judge, the references' strict
precision on a real fp16 GEMM, and the persisting-L2 carveout reset between timed calls."""

import os

import torch

from th_testlib import REPORT, check  # first: puts the judge and cheaters/ on sys.path

import catalog  # noqa: E402
import th_precision  # noqa: E402
from test_lifecycle import CUDA_SPIN, lifeline_tests  # noqa: E402
from th_run import run_harness  # noqa: E402


def gpu_lifecycle_tests(work):
    """A worker spinning in a CUDA kernel is gone within seconds of its timeout, and with its judge."""
    lifeline_tests(work, "cuda", CUDA_SPIN, "a CUDA spin kernel")


def strict_gemm_test():
    """The fp16 GEMM reference under strict precision (fp32 reductions) is at least as close to an fp64 result
    as under PyTorch's defaults (reduced-precision reductions allowed), at the M >= 136 that failed on an A800."""
    g = torch.Generator(device="cuda").manual_seed(7)
    a = torch.randn(256, 8192, device="cuda", generator=g).half()
    b = torch.randn(8192, 512, device="cuda", generator=g).half()
    exact = a.double() @ b.double()
    default = (a @ b).double()
    with th_precision.strict_reference():
        strict = (a @ b).double()
    e_def, e_strict = (default - exact).abs().max().item(), (strict - exact).abs().max().item()
    check("strict reference: an fp16 GEMM (M=256, K=8192) is at least as accurate with reductions in fp32",
          e_strict <= e_def * 1.0001 + 1e-6, f"max abs error strict {e_strict:.4f}, default {e_def:.4f}")
    REPORT.append({"id": "strict_fp16_gemm", "family": "reference precision", "expect": "strict <= default",
                   "got": [e_strict, e_def], "device": "cuda"})


def l2_persist_tests(work):
    """A candidate that reserves a persisting-L2 carveout with an access-policy window over its inputs' addresses
    is timed like the honest relu: the worker resets the carveout and the persisting lines before each timed
    call, and reports the carveouts it found."""
    d = catalog.DEFS["tp_relu_f32"]
    wl = [{"uuid": "relu-16m", "axes": {"n": 16384}, "inputs": {"x": {"type": "random"}}}]  # 16 MiB in, 16 MiB out
    honest = catalog.sol("honest_relu_16m", "tp_relu_f32", catalog.RELU_VR)
    timing = {"rounds": 2, "warmup_calls": 5, "warmup_ms": 5, "min_samples": 50, "max_samples": 200,
              "max_seconds": 5, "input_sets": 2, "time_reference": False}

    def run(reset):
        cfg = {"timeout_s": 120, "timing": dict(timing, reset_persisting_l2=reset)}
        job = {"device": "cuda", "work_dir": os.path.join(work, "hw"), "definition": d, "workloads": wl,
               "solutions": [honest, catalog.L2_PERSIST], "config": cfg}
        rc, res, err, _ = run_harness("time", job, work)
        if rc != 0:
            check(f"persisting-L2 timing job (reset {reset}) ran", False, err[-2000:])
            return None
        return {x["solution"]: x for x in res["results"]}

    on, off = run(True), run(False)
    if not on or not off:
        return

    def med(r, name):
        perf = (r[name]["evaluation"] or {}).get("performance") or {}
        return perf.get("latency_ms") or float("nan")

    def l2(r, name):
        return ((r[name]["details"].get("gate") or {}).get("candidate") or {}).get("l2_persisting") or {}

    h, c = med(on, "honest_relu_16m"), med(on, "cheat_l2_persist")
    check("persisting L2: the worker found the cheater's carveout and reset it before its timed calls; none for "
          "the honest relu", l2(on, "cheat_l2_persist").get("found_carveout", 0) > 0
          and l2(on, "honest_relu_16m").get("found_carveout", 1) == 0 and l2(on, "honest_relu_16m").get("resets", 0) > 0,
          f"cheater {l2(on, 'cheat_l2_persist')}, honest {l2(on, 'honest_relu_16m')}")
    check("persisting L2: with the reset, the cheater is timed like the honest relu (>= 0.85 of its median)",
          on["cheat_l2_persist"]["evaluation"]["status"] == "PASSED" and c >= 0.85 * h,
          f"cheater {c:.4f} ms, honest {h:.4f} ms; without the reset: cheater {med(off, 'cheat_l2_persist'):.4f} ms, "
          f"honest {med(off, 'honest_relu_16m'):.4f} ms")
    REPORT.append({"id": "l2_persist_carveout", "family": "[7] persisting-L2 window survives the flush",
                   "expect": "cheater >= 0.85 x honest", "device": "cuda",
                   "got": {"reset": [c, h], "no_reset": [med(off, "cheat_l2_persist"), med(off, "honest_relu_16m")]}})
