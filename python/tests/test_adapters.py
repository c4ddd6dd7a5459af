"""Adapters: preconditions, the re-entry guard, in-place write-back and caller `out=` buffers."""

import math
import unittest

import torch
import torch.nn.functional as F

from helpers import TempDirs, kernel_solution, solution, write_set
from tracepipe_apply import (disable_apply, enable_apply, fused_add_rmsnorm, paged_decode, reset_stats, stats,
                             templates)
from tracepipe_apply import torch_kernels as K


class AdapterTest(TempDirs, unittest.TestCase):
    def setUp(self):
        reset_stats()
        self.addCleanup(lambda: [disable_apply() for _ in range(4)])

    def _pinned(self, defs, sols):
        return enable_apply(write_set(self.tmp(), defs, sols, []), mode="pinned")

    def test_linear_is_substituted_once_per_call_even_when_the_solution_calls_linear(self):
        d = templates.gemm(3, 4, "float32")
        self._pinned([d], [kernel_solution("lin", d["name"])])  # its code calls F.linear again
        x, w = torch.randn(5, 4), torch.randn(3, 4)
        torch.testing.assert_close(F.linear(x, w), x @ w.T)
        self.assertEqual(stats()["gemm_n3_k4"]["hit"], 1)
        F.linear(x, w, torch.zeros(3))  # a bias: not the definition, the original runs
        self.assertEqual(stats()["gemm_n3_k4"]["miss"], 0)
        torch.testing.assert_close(F.linear(x.double(), w.double()), x.double() @ w.double().T)
        self.assertEqual(stats()["gemm_n3_k4"]["miss"], 1)  # float64, the definition float32: a miss

    def test_fused_add_rmsnorm_writes_input_and_residual_in_place_for_both_conventions(self):
        d = templates.rmsnorm(8, "float32", fused=True)
        dps = ("def run(hidden_states, residual, weight, output):\n"
               "    x = hidden_states + residual\n"
               "    output.copy_(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight)\n")
        for sol in (kernel_solution("vr", d["name"]),
                    solution("dps", d["name"], "import torch\n" + dps, dps=True)):
            reset_stats()
            self._pinned([d], [sol])
            x, r, w = torch.randn(3, 8), torch.randn(3, 8), torch.rand(8) + 0.5
            x0, r0 = x.clone(), r.clone()
            fused_add_rmsnorm(x, r, w, eps=1e-5)
            s = x0 + r0
            torch.testing.assert_close(r, s)
            torch.testing.assert_close(x, s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5) * w)
            self.assertEqual(stats()["fused_add_rmsnorm_h8"]["hit"], 1, sol["name"])
            fused_add_rmsnorm(x, r, w, eps=1e-6)  # another eps: the reference runs, nothing dispatched
            self.assertEqual(stats()["fused_add_rmsnorm_h8"]["hit"], 1)
            disable_apply()

    def test_paged_attention_writes_into_caller_buffers(self):
        d = templates.gqa_paged("decode", 4, 2, 8, 1, "float32")
        dps_code = ("import torch_kernels as K\n"
                    "def run(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale, output, lse):\n"
                    "    o, l = K.gqa_paged_decode_ps1(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale)\n"
                    "    output.copy_(o)\n    lse.copy_(l)\n")
        vr = kernel_solution("vr", d["name"])
        dps = {**vr, "name": "dps", "spec": {**vr["spec"], "entry_point": "main.py::run",
                                               "destination_passing_style": True},
               "sources": vr["sources"] + [{"path": "main.py", "content": dps_code}]}
        g = torch.Generator().manual_seed(0)
        q = torch.randn(2, 4, 8, generator=g)
        kc, vc = torch.randn(6, 1, 2, 8, generator=g), torch.randn(6, 1, 2, 8, generator=g)
        indptr, idx = torch.tensor([0, 2, 5], dtype=torch.int32), torch.tensor([0, 1, 2, 3, 4], dtype=torch.int32)
        ref_o, ref_l = K.gqa_paged_decode_ps1(q, kc, vc, indptr, idx, 1 / math.sqrt(8))
        for sol in (vr, dps):
            reset_stats()
            self._pinned([d], [sol])
            out, lse = torch.zeros(2, 4, 8), torch.zeros(2, 4)
            o, l = paged_decode(q, kc, vc, indptr, idx, None, 1 / math.sqrt(8), out=out, lse=lse)
            self.assertIs(o, out)
            self.assertIs(l, lse)
            torch.testing.assert_close(out, ref_o)
            torch.testing.assert_close(lse, ref_l)
            self.assertEqual(stats()[d["name"]]["hit"], 1, sol["name"])
            disable_apply()


if __name__ == "__main__":
    unittest.main()
