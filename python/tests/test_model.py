"""The whole path on the CPU: a tiny Llama (plain torch, Hugging Face's module layout) decoded by the
paged-KV decoder with continuous batching, with its RMSNorms, linears and paged attention substituted
by the Python solutions of the fixture TraceSet."""

import os
import unittest

import torch
import torch.nn.functional as F

from helpers import HERE
from tracepipe_apply import (ApplyConfig, disable_apply, enable_apply, register_rmsnorm_class, reset_stats,
                             stats)
from tracepipe_apply.paged import PagedDecoder
from tracepipe_apply.tiny import TinyRMSNorm, tiny_llama

FIXTURE = os.path.join(HERE, "fixtures", "tiny_llama")
PROMPTS = [[1, 2, 3, 4, 5], list(range(10, 19)), [(7 * i) % 96 for i in range(70)]]
ARRIVALS = [0, 0, 3]
STEPS = 16
L = 2  # layers of the tiny model
ORIGINAL_LINEAR = F.linear
ORIGINAL_RMS_FORWARD = TinyRMSNorm.forward


def decode(model, page_size):
    dec = PagedDecoder(model, page_size=page_size, max_tokens=512)
    for p, t in zip(PROMPTS, ARRIVALS):
        dec.add(p, STEPS, arrival=t)
    return dec.run(), dec.log


def dense_greedy(model, prompt, n):
    ids, out = list(prompt), []
    for _ in range(n):
        tok = int(model(torch.tensor([ids]))[0, -1].argmax())
        out.append(tok)
        ids.append(tok)
    return out


def expected_calls(log, page_size, hit_m=None):
    """{definition: (calls, of them with M/batch_size in hit_m)} for a decoder log (hit_m None: all)."""
    exp = {}

    def add(name, m, n=1):
        calls, hits = exp.get(name, (0, 0))
        exp[name] = (calls + n, hits + (n if hit_m is None or m in hit_m else 0))

    waiting = list(zip(PROMPTS, ARRIVALS))
    for kind, r in log:
        if kind == "prefill":
            batch, waiting = waiting[:r], waiting[r:]
            t = sum(len(p) for p, _ in batch)
        else:
            t = r
        add("rmsnorm_h64", t, 2 * L)
        add("rmsnorm_h64", r)
        for name, n in (("gemm_n64_k64", 2 * L), ("gemm_n32_k64", 2 * L), ("gemm_n128_k64", 2 * L),
                        ("gemm_n64_k128", L)):
            add(name, t, n)
        add("gemm_n96_k64", r)
        attn = "gqa_paged_decode" if kind == "decode" else "gqa_paged_prefill_causal"
        add(f"{attn}_h4_kv2_d16_ps{page_size}", -1 if hit_m is not None else t, L)
    return exp


class TinyLlamaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        register_rmsnorm_class(TinyRMSNorm)
        cls.model = tiny_llama(seed=0)
        cls.ref = {ps: decode(cls.model, ps) for ps in (1, 64)}

    def setUp(self):
        reset_stats()
        self.addCleanup(lambda: [disable_apply() for _ in range(8)])

    def test_the_paged_decoder_reproduces_the_dense_model(self):
        dense = [dense_greedy(self.model, p, STEPS) for p in PROMPTS]
        for ps in (1, 64):
            out, log = self.ref[ps]
            self.assertEqual([out[i] for i in range(3)], dense, f"page size {ps}")
            self.assertIn(("prefill", 1), log)  # the late request joined a running batch
            self.assertEqual(sum(1 for k, _ in log if k == "decode"), STEPS - 1 + 2)

    def test_pinned_substitution_keeps_every_token_and_counts_every_call(self):
        for ps in (1, 64):
            reset_stats()
            with enable_apply(FIXTURE, mode="pinned"):
                self.assertIsNot(F.linear, ORIGINAL_LINEAR)
                out, log = decode(self.model, ps)
            self.assertEqual(out, self.ref[ps][0], f"page size {ps}")
            self.assertEqual(log, self.ref[ps][1])
            got = {n: (c["hit"] + c["miss"], c["hit"]) for n, c in stats().items() if c["hit"] + c["miss"]}
            self.assertEqual(got, expected_calls(log, ps))
            self.assertTrue(all(c["error"] == 0 for c in stats().values()))

    def test_ranked_substitution_hits_exact_keys_and_falls_back_elsewhere(self):
        for miss_policy in ("fallback_only", "use_def_best"):
            reset_stats()
            with enable_apply(FIXTURE, ApplyConfig(max_rtol=1e-2, on_miss_policy=miss_policy)):
                out, log = decode(self.model, 64)
            self.assertEqual(out, self.ref[64][0])
            got = {n: (c["hit"] + c["miss"], c["hit"]) for n, c in stats().items() if c["hit"] + c["miss"]}
            exp = expected_calls(log, 64, hit_m={1, 2, 3})
            if miss_policy == "use_def_best":
                exp = {n: (calls, calls) for n, (calls, _) in exp.items()}
            self.assertEqual(got, exp, miss_policy)

    def test_disabling_apply_restores_the_original_functions(self):
        enable_apply(FIXTURE, mode="pinned")
        self.assertIsNot(TinyRMSNorm.forward, ORIGINAL_RMS_FORWARD)
        enable_apply(FIXTURE)  # nested: the patches stay until the last runtime stops
        disable_apply()
        self.assertIsNot(F.linear, ORIGINAL_LINEAR)
        disable_apply()
        self.assertIs(F.linear, ORIGINAL_LINEAR)
        self.assertIs(TinyRMSNorm.forward, ORIGINAL_RMS_FORWARD)
        if hasattr(torch.nn.functional, "rms_norm"):
            self.assertFalse(getattr(torch.nn.functional.rms_norm, "_tracepipe_apply", False))

    def test_the_dense_model_runs_substituted_with_3d_activations(self):
        ids = torch.tensor([PROMPTS[0], PROMPTS[1][:5]])
        ref = self.model(ids)
        with enable_apply(FIXTURE, mode="pinned"):
            out = self.model(ids)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        self.assertEqual(stats()["rmsnorm_h64"]["hit"], 2 * L + 1)
        self.assertEqual(stats()["gemm_n96_k64"]["hit"], 1)


if __name__ == "__main__":
    unittest.main()
