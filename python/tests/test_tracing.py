"""Tracing: every call of a generation recorded as a workload with its index tensors."""

import json
import os
import unittest

import torch

from helpers import TempDirs
from trace_tiny import trace_generation
from tracepipe_apply import (TraceSet, TracingConfig, apply, disable_apply, disable_tracing, enable_apply,
                             enable_tracing, get_tracing_runtime, safetensors_io)


def _workloads(root):
    out = {}
    for base, _, files in os.walk(os.path.join(root, "workloads")):
        for f in files:
            with open(os.path.join(base, f)) as fh:
                out[f[:-len(".jsonl")]] = [json.loads(x) for x in fh if x.strip()]
    return out


class TracingTest(TempDirs, unittest.TestCase):
    def test_a_traced_generation_is_a_traceset_with_index_blobs(self):
        out = self.tmp()
        res = trace_generation(out)
        self.assertEqual((res["errors"], res["skipped"]), ({}, {}))
        ts = TraceSet.from_path(out)
        wls = _workloads(out)
        self.assertEqual({n: len(v) for n, v in wls.items()}, res["calls"])
        self.assertEqual(set(ts.definitions), set(wls))
        dec = wls["gqa_paged_decode_h4_kv2_d16_ps64"][0]["workload"]
        ins = dec["inputs"]
        self.assertEqual(ins["q"], {"type": "random"})
        self.assertEqual(ins["sm_scale"], {"type": "scalar", "value": 0.25})
        blob = safetensors_io.load(os.path.join(out, ins["kv_indptr"]["path"]))
        self.assertEqual(sorted(blob), ["kv_indices", "kv_indptr", "kv_last_page_len"])
        self.assertEqual(blob["kv_indptr"].dtype, torch.int32)
        self.assertEqual(dec["axes"]["len_indptr"], blob["kv_indptr"].shape[0])
        self.assertEqual(int(blob["kv_indptr"][-1]), dec["axes"]["num_kv_indices"])
        self.assertEqual(wls["rmsnorm_h64"][0]["workload"]["inputs"],
                         {"hidden_states": {"type": "random"}, "weight": {"type": "random"}})

    def test_apply_wins_over_tracing_and_tracing_filters(self):
        out = self.tmp()
        enable_tracing(out, TracingConfig(filter_policy="keep_first_k_by_axes", filter_policy_kwargs={"k": 1}))
        A, B = torch.randn(2, 4), torch.randn(4, 4)
        for _ in range(3):
            apply("gemm_n4_k4", args=(A, B), fallback=lambda a, b: a @ b.T)
        apply("gemm_n4_k4", args=(torch.randn(3, 4), B), fallback=lambda a, b: a @ b.T)
        rt = get_tracing_runtime()
        self.assertEqual(len(rt.entries), 2)
        empty = self.tmp()
        os.makedirs(os.path.join(empty, "definitions"))
        with enable_apply(empty):
            apply("gemm_n4_k4", args=(A, B), fallback=lambda a, b: a @ b.T)
        self.assertEqual(len(rt.entries), 2)  # apply active: not traced
        disable_tracing()
        wl = _workloads(out)["gemm_n4_k4"]
        self.assertEqual([w["workload"]["axes"] for w in wl], [{"M": 2}, {"M": 3}])
        with open(os.path.join(out, "definitions", "gemm", "gemm_n4_k4.json")) as f:
            self.assertEqual(json.load(f)["inputs"]["A"]["dtype"], "float32")  # the traced call's dtype

    def test_unknown_definitions_are_skipped_and_never_break_the_call(self):
        enable_tracing(self.tmp())
        self.assertEqual(apply("mystery_op", args=(1,), fallback=lambda x: x + 1), 2)
        self.assertEqual(dict(get_tracing_runtime().skipped), {"mystery_op": 1})
        disable_tracing()

    def tearDown(self):
        while get_tracing_runtime():
            disable_tracing()
        disable_apply()


if __name__ == "__main__":
    unittest.main()
