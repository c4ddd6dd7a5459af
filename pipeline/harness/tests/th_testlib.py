"""What the harness's Python test modules share: where things are, and the check() that records a result.

The tests import the judge's modules in-process (the judge folder goes on sys.path, as it does when Python
runs the folder) and run the judge itself as `python3 <judge folder> COMMAND` (th_run.py).
"""

import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.dirname(TESTS)  # pipeline/harness: gate/, include/, cheaters/, testdata/
JUDGE = os.path.join(HARNESS, "judge")  # the judge, run as `python3 JUDGE COMMAND ...`
for _p in (os.path.join(HARNESS, "cheaters"), TESTS, JUDGE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

FAILS = []
REPORT = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(' — ' + detail) if detail else ''}", flush=True)
    if not ok:
        FAILS.append(name)
