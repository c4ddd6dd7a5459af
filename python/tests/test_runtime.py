"""Dispatch: calling conventions, modes, misses, strict errors, capture, counters, ahead-of-time loads."""

import os
import unittest

import torch

from helpers import TempDirs, gemm_def, rms_def, solution, trace, write_json, write_set
from tracepipe_apply import (ApplyConfig, ApplyError, apply, disable_apply, enable_apply, reset_stats, runtime,
                             stats)

VR = "def run(A, B):\n    return A @ B.T + 1000\n"  # the +1000 tells a solution's result from the fallback's
DPS = "def run(A, B, C):\n    C.copy_(A @ B.T + 2000)\n"
RAISES = "def run(A, B):\n    raise RuntimeError('kernel exploded')\n"
G = gemm_def()["name"]


def fallback(A, B, C=None):
    if C is not None:
        C.copy_(A @ B.T)
        return None
    return A @ B.T


class DispatchTest(TempDirs, unittest.TestCase):
    def setUp(self):
        reset_stats()
        self.A, self.B = torch.randn(2, 4), torch.randn(4, 4)
        self.addCleanup(lambda: [disable_apply() for _ in range(len(runtime.state.APPLY))])

    def _enable(self, code, dps=False, language="python", mode="pinned", cfg=None, traces=()):
        d = gemm_def()
        root = write_set(self.tmp(), [d], [solution("s", G, code, dps=dps, language=language)], list(traces))
        return enable_apply(root, cfg, mode=mode)

    def test_value_returning_solution_for_both_caller_conventions(self):
        self._enable(VR)
        ref = self.A @ self.B.T
        torch.testing.assert_close(apply(G, args=(self.A, self.B), fallback=fallback), ref + 1000)
        C = torch.zeros(2, 4)
        self.assertIsNone(apply(G, args=(self.A, self.B, C), fallback=fallback))
        torch.testing.assert_close(C, ref + 1000)
        self.assertEqual(stats()[G]["hit"], 2)

    def test_destination_passing_solution_for_both_caller_conventions(self):
        self._enable(DPS, dps=True)
        ref = self.A @ self.B.T
        torch.testing.assert_close(apply(G, kwargs={"A": self.A, "B": self.B}, fallback=fallback), ref + 2000)
        C = torch.zeros(2, 4)
        apply(G, args=(self.A,), kwargs={"B": self.B, "C": C}, fallback=fallback)
        torch.testing.assert_close(C, ref + 2000)

    def test_argument_errors(self):
        self._enable(VR)
        with self.assertRaisesRegex(ValueError, "expected 2 .* or 3"):
            apply(G, args=(self.A,), fallback=fallback)
        with self.assertRaisesRegex(TypeError, "multiple values for argument 'A'"):
            apply(G, args=(self.A, self.B), kwargs={"A": self.A}, fallback=fallback)
        with self.assertRaisesRegex(TypeError, "unexpected argument 'Z'"):
            apply(G, args=(self.A, self.B), kwargs={"Z": 1}, fallback=fallback)

    def test_ranked_mode_hits_exact_keys_and_misses_others(self):
        self._enable(VR, mode="ranked", traces=[trace(G, "s", {"M": 2})])
        apply(G, args=(self.A, self.B), fallback=fallback)
        out = apply(G, args=(torch.randn(3, 4), self.B), fallback=fallback)
        self.assertLess(out.abs().max().item(), 100)  # the fallback ran
        self.assertEqual((stats()[G]["hit"], stats()[G]["miss"]), (1, 1))

    def test_use_def_best_serves_a_miss(self):
        self._enable(VR, mode="ranked", traces=[trace(G, "s", {"M": 2})],
                     cfg=ApplyConfig(on_miss_policy="use_def_best"))
        out = apply(G, args=(torch.randn(3, 4), self.B), fallback=fallback)
        self.assertGreater(out.min().item(), 900)
        self.assertEqual((stats()[G]["hit"], stats()[G]["def_best"]), (1, 1))

    def test_a_failing_solution_raises_under_the_strict_policy(self):
        self._enable(RAISES)
        with self.assertRaisesRegex(RuntimeError, "kernel exploded"):
            apply(G, args=(self.A, self.B), fallback=fallback)
        self.assertEqual(stats()[G]["error"], 1)

    def test_a_failing_solution_falls_back_when_configured(self):
        self._enable(RAISES, cfg=ApplyConfig(on_error="fallback"))
        torch.testing.assert_close(apply(G, args=(self.A, self.B), fallback=fallback), self.A @ self.B.T)
        self.assertEqual((stats()[G]["error"], stats()[G]["hit"]), (1, 0))

    def test_gpu_languages_are_not_loadable_on_the_cpu(self):
        if torch.cuda.is_available():
            self.skipTest("a GPU is present: Triton and CUDA solutions load here")
        for lang, entry in (("triton", "main.py::run"), ("cuda", "k.cu::run")):
            d = gemm_def()
            sol = solution("s", G, VR, entry=entry, language=lang)
            rt = enable_apply(write_set(self.tmp(), [d], [sol], []), mode="pinned")
            with self.assertRaisesRegex(ApplyError, "not loadable here"):
                apply(G, args=(self.A, self.B), fallback=fallback)
            disable_apply()
            self.assertIsNot(rt, runtime.state.APPLY[-1] if runtime.state.APPLY else None)
        rt = self._enable(VR, language="triton", cfg=ApplyConfig(on_error="fallback"))
        torch.testing.assert_close(apply(G, args=(self.A, self.B), fallback=fallback), self.A @ self.B.T)

    def test_no_substitution_of_an_unwarmed_shape_during_capture(self):
        self._enable(VR)
        real = runtime._capturing
        runtime._capturing = lambda: True
        try:
            torch.testing.assert_close(apply(G, args=(self.A, self.B), fallback=fallback), self.A @ self.B.T)
        finally:
            runtime._capturing = real
        self.assertEqual(stats()[G]["fallback_capture"], 1)
        apply(G, args=(self.A, self.B), fallback=fallback)  # eager: warms it
        runtime._capturing = lambda: True
        try:
            out = apply(G, args=(self.A, self.B), fallback=fallback)  # warmed: substituted in capture
        finally:
            runtime._capturing = real
        self.assertGreater(out.min().item(), 900)
        self.assertEqual(stats()[G]["hit"], 2)

    def test_pinned_solutions_load_when_enabled(self):
        rt = self._enable(VR)
        self.assertIn("s", rt._loaded)
        self.assertTrue(callable(rt._loaded["s"]))

    def test_unknown_definitions_fall_back_and_count_a_miss(self):
        self._enable(VR)
        self.assertEqual(apply("nope", args=(1,), fallback=lambda x: x + 1), 2)
        self.assertEqual(stats()["nope"]["miss"], 1)
        with self.assertRaisesRegex(RuntimeError, "Apply miss for 'nope' and no fallback"):
            apply("nope", args=(1,))

    def test_stop_out_of_order_raises_and_nesting_is_lifo(self):
        a = self._enable(VR)
        b = self._enable(DPS, dps=True)
        with self.assertRaisesRegex(RuntimeError, "LIFO"):
            a.stop()
        self.assertIs(runtime.state.APPLY[-1], b)
        disable_apply()
        self.assertIs(runtime.state.APPLY[-1], a)

    def test_pinned_folder_without_definitions_uses_the_family_template(self):
        root = self.tmp()
        code = "def run(hidden_states, weight):\n    return hidden_states * 0 + 7\n"
        sol = solution("r", rms_def(8)["name"], code)
        write_json(os.path.join(root, "solutions", "t", "rmsnorm", "rmsnorm_h8", "r.json"), sol)
        enable_apply(root, mode="pinned")
        x = torch.randn(3, 8, dtype=torch.bfloat16)
        out = apply("rmsnorm_h8", args=(x, torch.ones(8, dtype=torch.bfloat16)), fallback=None)
        self.assertEqual(out.float().mean().item(), 7.0)


if __name__ == "__main__":
    unittest.main()
