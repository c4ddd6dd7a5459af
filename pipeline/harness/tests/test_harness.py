"""pytest-free tests of the harness (run by harness_test.ts with /usr/bin/python3, or directly).

    python3 pipeline/harness/tests/test_harness.py [--device cpu|cuda] [--only NAME] [--report FILE.json]
                                                    [--skip units,compile,cheaters,timing] [--timing-only]

Runs every part of the suite: test_units.py (unit checks, builds, probe) and test_judging.py (serve mode,
cheaters, honest controls, timing defences, the gate). Exit status 0 only if every check passed. Each
check prints one line.
"""

import argparse
import json
import sys
import tempfile
import time

from th_testlib import FAILS, REPORT  # first: puts the judge and cheaters/ on sys.path

from test_judging import (cheater_tests, gate_copy_tests, gate_timing_tests, sampling_tvd_test,  # noqa: E402
                          serve_tests, timing_tests)
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
        if "compile" not in skip:
            compile_tests(work, a.device)
    if "cheaters" not in skip:
        cheater_tests(work, a.device, a.only, a.jobs)
    if not a.only and "timing" not in skip:
        timing_tests(work, a.device)
        if a.device == "cuda":
            gate_copy_tests()
            gate_timing_tests(work)
    print(f"{len(FAILS)} failed; {time.time() - t0:.1f} s", flush=True)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(REPORT, f, indent=1)
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
