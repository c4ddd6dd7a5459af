"""pytest-free tests of the harness (run by harness_test.ts with /usr/bin/python3, or directly).

    python3 pipeline/harness/tests/test_harness.py [--device cpu|cuda] [--only NAME] [--report FILE.json]
                                                    [--skip units,compile,cheaters,timing] [--timing-only]

Runs every part of the suite: test_units.py (unit checks, builds, probe), test_judging.py (serve mode,
cheaters, honest controls, timing defences, the gate), test_lifecycle.py (worker exit statuses, timeouts, no
process outliving its judge), test_numerics.py (reference precision, matching infinities, per-workload
tolerances, failures that are the machine's) and, with --device cuda, test_gpu.py (a CUDA spin kernel's
worker, strict fp16 GEMM references, the persisting-L2 reset). Exit status 0 only if every check passed.
Each check prints one line.
"""

import argparse
import json
import sys
import tempfile
import time

from th_testlib import FAILS, REPORT  # first: puts the judge and cheaters/ on sys.path

from test_judging import (cheater_tests, gate_copy_tests, gate_timing_tests, sampling_tvd_test,  # noqa: E402
                          serve_tests, timing_tests)
from test_gpu import gpu_lifecycle_tests, l2_persist_tests, strict_gemm_test  # noqa: E402
from test_lifecycle import exit_status_tests, lifeline_tests, timeout_message_test  # noqa: E402
from test_numerics import (machine_capability_tests, matching_infinity_tests, reference_precision_tests,  # noqa: E402
                           workload_tolerance_tests)
from test_units import compile_tests, io_and_share_tests, probe_test, unit_tests  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only")
    ap.add_argument("--report")
    ap.add_argument("--skip", default="")
    ap.add_argument("--jobs", type=int, default=1, help="verify jobs run concurrently (correctness only)")
    ap.add_argument("--timing-only", action="store_true", help="only the timing checks (and the gate's, on a GPU)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tp_harness_test_")
    t0 = time.time()
    skip = set(a.skip.split(","))
    if a.timing_only:
        skip |= {"cheaters", "units"}
    if not a.only and "units" not in skip:
        unit_tests(work)
        io_and_share_tests(work)
        probe_test(work)
        serve_tests(work, a.device)
        sampling_tvd_test(work, a.device)
        exit_status_tests(work, a.device)
        timeout_message_test(work, a.device)
        lifeline_tests(work, a.device)
        reference_precision_tests(work, a.device)
        matching_infinity_tests(work, a.device)
        workload_tolerance_tests(work, a.device)
        machine_capability_tests(work, a.device)
        if a.device == "cuda":
            gpu_lifecycle_tests(work)
            strict_gemm_test()
        if "compile" not in skip:
            compile_tests(work, a.device)
    if "cheaters" not in skip:
        cheater_tests(work, a.device, a.only, a.jobs)
    if not a.only and "timing" not in skip:
        timing_tests(work, a.device)
        if a.device == "cuda":
            gate_copy_tests()
            gate_timing_tests(work)
            l2_persist_tests(work)
    print(f"{len(FAILS)} failed; {time.time() - t0:.1f} s", flush=True)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(REPORT, f, indent=1)
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
