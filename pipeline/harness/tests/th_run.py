"""Runs the harness as a child process from Python: the Python counterpart of client.ts, used by the
harness's own test suite, the GPU benchmarks and tools/kcheck.py (a test and tool runner: not part of the
judge, whose folder's bytes enter the judging stages' cell keys).

    rc, result, stderr, seconds = run_harness("verify", job, work_dir)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JUDGE = os.path.join(os.path.dirname(HERE), "judge")  # pipeline/harness/judge, run as `python3 JUDGE CMD`


def run_harness(cmd, job, work, timeout=900, env=None, python=None, capture=True):
    """Writes `job` to a file in `work`, runs the judge (`python3 JUDGE CMD`) on it and reads its result file.

    Returns (exit status, result object, stderr text or None when not captured, wall seconds). `env`
    entries are added to this process's environment; `python` defaults to this interpreter.
    """
    os.makedirs(work, exist_ok=True)
    fd, jp = tempfile.mkstemp(prefix=f"{cmd}_", suffix=".json", dir=work)
    op = jp[:-len(".json")] + ".out.json"
    with os.fdopen(fd, "w") as f:
        json.dump(job, f)
    t0 = time.time()
    p = subprocess.run([python or sys.executable, JUDGE, cmd, "--job", jp,
                        "--out", op], stderr=subprocess.PIPE if capture else None, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    seconds = time.time() - t0
    with open(op) as f:
        return p.returncode, json.load(f), p.stderr, seconds
