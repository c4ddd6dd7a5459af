"""The committed fixture is what make_fixture.py writes (its solutions carry torch_kernels.py), and the
GPU scripts, which cannot run here, say why."""

import importlib.util
import json
import os
import unittest

import torch

from helpers import HERE, TempDirs
from make_fixture import FIXTURE, write_fixture


def _tree(root):
    out = {}
    for base, _, files in os.walk(root):
        for f in files:
            p = os.path.join(base, f)
            with open(p, encoding="utf-8") as fh:
                text = fh.read()
            # Compared parsed, so a formatter's whitespace is no drift.
            out[os.path.relpath(p, root)] = ([json.loads(x) for x in text.splitlines() if x.strip()]
                                             if f.endswith(".jsonl") else json.loads(text))
    return out


class FixtureTest(TempDirs, unittest.TestCase):
    def test_the_committed_fixture_is_up_to_date(self):
        fresh = write_fixture(os.path.join(self.tmp(), "tiny_llama"))
        self.assertEqual(_tree(FIXTURE), _tree(fresh),
                         "python/tests/fixtures/tiny_llama is stale: run python/tests/make_fixture.py")


def gpu_skip_reason():
    """Why the GPU scripts cannot run here, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device (GPU machine only: the lead runs python/tests/gpu_check_llama.py there)"
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed (it is on the GPU machine: transformers 5.17, torch 2.11)"
    return None


class GpuScriptsTest(unittest.TestCase):
    def test_gpu_check_llama(self):
        reason = gpu_skip_reason()
        if reason:
            self.skipTest(reason)
        import subprocess
        import sys
        r = subprocess.run([sys.executable, os.path.join(HERE, "gpu_check_llama.py")], capture_output=True,
                           text=True, timeout=900)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])


if __name__ == "__main__":
    unittest.main()
