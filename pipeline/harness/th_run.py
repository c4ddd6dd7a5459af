"""Runs the harness as a child process from Python: the Python counterpart of client.ts, used by the
harness's own test suite, the GPU benchmarks and tools/kcheck.py.

    rc, result, stderr, seconds = run_harness("verify", job, work_dir)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_harness(cmd, job, work, timeout=900, env=None, python=None, capture=True):
    """Writes `job` to a file in `work`, runs `tracepipe_harness.py CMD` on it and reads its result file.

    Returns (exit status, result object, stderr text or None when not captured, wall seconds). `env`
    entries are added to this process's environment; `python` defaults to this interpreter.
    """
    os.makedirs(work, exist_ok=True)
    fd, jp = tempfile.mkstemp(prefix=f"{cmd}_", suffix=".json", dir=work)
    op = jp[:-len(".json")] + ".out.json"
    with os.fdopen(fd, "w") as f:
        json.dump(job, f)
    t0 = time.time()
    p = subprocess.run([python or sys.executable, os.path.join(HERE, "tracepipe_harness.py"), cmd, "--job", jp,
                        "--out", op], stderr=subprocess.PIPE if capture else None, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    seconds = time.time() - t0
    with open(op) as f:
        return p.returncode, json.load(f), p.stderr, seconds
