"""The GPU scripts' shared pieces that run on the CPU too: the deliberately slower solution of the
end-to-end additivity check."""

import unittest

import torch
import torch.nn.functional as F

from gpu_common import slow_solutions, write_pinned
from helpers import TempDirs
from tracepipe_apply import disable_apply, enable_apply, reset_stats, stats, templates


def linear_calls(fn):
    """aten::linear calls that fn() makes (the adapters send the solution's F.linear to the original)."""
    with torch.autograd.profiler.profile() as prof:
        fn()
    return sum(1 for e in prof.function_events if e.name == "aten::linear")


class SlowSolutionTest(TempDirs, unittest.TestCase):
    def setUp(self):
        reset_stats()
        self.addCleanup(lambda: [disable_apply() for _ in range(4)])

    def test_slow_gemm_computes_the_fallback_repeats_times_and_returns_its_result(self):
        gemm, rms = templates.gemm(3, 4, "float32"), templates.rmsnorm(4, "float32")
        root = write_pinned(self.tmp(), [gemm, rms], slow_solutions([gemm, rms], 3))
        x, w = torch.randn(5, 4), torch.randn(3, 4)
        plain = linear_calls(lambda: F.linear(x, w))
        self.assertGreater(plain, 0)  # the profiler sees the calls it counts
        with enable_apply(root, mode="pinned"):
            torch.testing.assert_close(F.linear(x, w), x @ w.T)
            self.assertEqual(linear_calls(lambda: F.linear(x, w)), 3 * plain)
        self.assertEqual(stats()["gemm_n3_k4"]["hit"], 2)

    def test_definitions_other_than_gemm_keep_the_fallback(self):
        gemm, rms = templates.gemm(3, 4, "float32"), templates.rmsnorm(4, "float32")
        sols = {s["definition"]: s for s in slow_solutions([gemm, rms], 3)}
        self.assertTrue(sols[gemm["name"]]["name"].startswith("slow_"))
        self.assertTrue(sols[rms["name"]]["name"].startswith("fallback_"))


if __name__ == "__main__":
    unittest.main()
