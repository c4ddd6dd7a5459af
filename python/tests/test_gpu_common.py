"""The GPU scripts' shared pieces that run on the CPU too: the deliberately slower solution of the
end-to-end additivity check, and the interleaved rounds the end-to-end comparison is timed in."""

import unittest

import torch
import torch.nn.functional as F

from gpu_common import interleaved, paired, slow_solutions, write_pinned
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


class InterleavedRoundsTest(unittest.TestCase):
    def test_each_runner_once_per_round_in_rotating_order_and_a_failing_one_dropped(self):
        calls, clock = [], iter(range(100))

        def runner(label, fail_on_call=None):
            own = []

            def run():
                calls.append(label)
                own.append(1)
                if len(own) == fail_on_call:
                    raise RuntimeError("boom")
                return float(next(clock))
            return run

        times, errors = interleaved({"a": runner("a"), "b": runner("b"), "c": runner("c", fail_on_call=2)}, 3)
        # Rounds: a b c | b c a | c a b, with c dropped after it raised in round 2.
        self.assertEqual(calls, ["a", "b", "c", "b", "c", "a", "a", "b"])
        self.assertEqual(errors, {"c": "RuntimeError: boom"})
        self.assertEqual([len(times[x]) for x in "abc"], [3, 3, 1])

    def test_paired_compares_round_by_round_so_a_drift_shared_by_both_cancels(self):
        # Both slow down by the same factor over the rounds: b is 10 % slower than a in every round.
        drift = [1.0, 1.2, 1.5, 1.1, 2.0]
        times = {"a": [d * 1.0 for d in drift], "b": [d * 1.1 for d in drift]}
        pct, iqr, delta = paired(times, "b", "a")
        self.assertAlmostEqual(pct, 10.0)
        self.assertAlmostEqual(iqr, 0.0)
        self.assertAlmostEqual(delta, 0.12)
        # Unpaired medians of the same times would say the same here, but not their spread:
        self.assertGreater(max(times["a"]) / min(times["a"]), 1.9)
        self.assertIsNone(paired(times, "c", "a"))
