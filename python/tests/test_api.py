"""The public API: decorator and function modes, resolvers, no runtime, environment activation."""

import json
import os
import subprocess
import sys
import unittest

import torch

from helpers import TempDirs, gemm_def, solution, trace, write_set
from tracepipe_apply import apply, disable_apply, enable_apply, get_runtime, reset_stats, stats

PY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = gemm_def()["name"]
VR = "def run(A, B):\n    return A @ B.T + 1000\n"


class ApiTest(TempDirs, unittest.TestCase):
    def setUp(self):
        reset_stats()
        self.A, self.B = torch.randn(2, 4), torch.randn(4, 4)

    def test_without_a_runtime_the_fallback_runs_or_it_raises(self):
        self.assertIsNone(get_runtime())
        self.assertEqual(apply("x", args=(2,), fallback=lambda v: v * 3), 6)
        with self.assertRaisesRegex(RuntimeError, "Apply or tracing is not enabled and no fallback provided"):
            apply("x", args=(2,))

    def test_decorator_keeps_metadata_and_dispatches_by_resolver(self):
        @apply(lambda A, B: f"gemm_n{B.shape[0]}_k{B.shape[1]}")
        def my_gemm(A, B):
            """doc"""
            return A @ B.T

        self.assertEqual((my_gemm.__name__, my_gemm.__doc__), ("my_gemm", "doc"))
        torch.testing.assert_close(my_gemm(self.A, self.B), self.A @ self.B.T)
        root = write_set(self.tmp(), [gemm_def()], [solution("s", G, VR)], [])
        with enable_apply(root, mode="pinned"):
            torch.testing.assert_close(my_gemm(self.A, B=self.B), self.A @ self.B.T + 1000)
        self.assertIsNone(get_runtime())
        torch.testing.assert_close(my_gemm(self.A, self.B), self.A @ self.B.T)

    def _env_run(self, env, code):
        full = {**os.environ, "PYTHONPATH": PY, **env}
        r = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_environment_enables_ranked_and_pinned_modes(self):
        root = write_set(self.tmp(), [gemm_def()], [solution("s", G, VR)], [trace(G, "s", {"M": 2})])
        code = ("import json, torch, tracepipe_apply as t\n"
                "rt = t.get_runtime()\n"
                "A, B = torch.ones(2, 4), torch.ones(4, 4)\n"
                f"out = t.apply('{G}', args=(A, B), fallback=lambda A, B: A @ B.T)\n"
                "print(json.dumps([rt.mode if rt else None, float(out[0, 0])]))\n")
        r = self._env_run({"FIB_ENABLE_APPLY": "1", "FIB_DATASET_PATH": root}, code)
        self.assertEqual(json.loads(r.stdout.strip().splitlines()[-1]), ["ranked", 1004.0])
        r = self._env_run({"FLASHINFER_TRACE_APPLY": "1", "FLASHINFER_TRACE_APPLY_PATH": root}, code)
        self.assertEqual(json.loads(r.stdout.strip().splitlines()[-1]), ["pinned", 1004.0])

    def test_a_bad_environment_warns_in_one_line_and_import_still_works(self):
        code = "import tracepipe_apply as t\nprint(t.get_runtime())\n"
        r = self._env_run({"FIB_ENABLE_APPLY": "1", "FIB_DATASET_PATH": "/nonexistent/set"}, code)
        self.assertIn("None", r.stdout)
        self.assertRegex(r.stderr, r"not enabled from the environment: /nonexistent/set: \$: not a TraceSet folder")
        r = self._env_run({"FLASHINFER_TRACE_APPLY": "yes"}, code)
        self.assertIn("FLASHINFER_TRACE_APPLY must be '0' or '1'", r.stderr)

    def test_counters_outlive_disable_until_reset(self):
        root = write_set(self.tmp(), [gemm_def()], [solution("s", G, VR)], [])
        enable_apply(root, mode="pinned")
        apply(G, args=(self.A, self.B), fallback=None)
        disable_apply()
        self.assertEqual(stats()[G]["hit"], 1)
        reset_stats()
        self.assertEqual(stats()[G]["hit"], 0)


if __name__ == "__main__":
    unittest.main()
