"""The ranked table (flashinfer-bench's semantics) and the pinned selection."""

import json
import os
import unittest

from helpers import TempDirs, gemm_def, solution, trace, write_json, write_set
from tracepipe_apply import ApplyConfig, ApplyConfigRegistry, TraceSet, TraceSetError
from tracepipe_apply.table import build_table, key_json, load_pinned, runtime_keys

CODE = "def run(A, B):\n    return A @ B.T\n"


def _set(tmp, traces, sols=("a", "b", "c")):
    d = gemm_def()
    return TraceSet.from_path(write_set(tmp, [d], [solution(s, d["name"], CODE) for s in sols], traces))


class TableTest(TempDirs, unittest.TestCase):
    def test_key_json_is_flashinfer_benchs_compact_apply_key(self):
        self.assertEqual(key_json({"b": 2, "M": 16}), '{"axes":[["M",16],["b",2]],"feats":[]}')

    def test_fastest_per_key_and_def_best_by_keys_won(self):
        n = gemm_def()["name"]
        ts = _set(self.tmp(), [
            trace(n, "a", {"M": 1}, 2.0), trace(n, "b", {"M": 1}, 3.0),
            trace(n, "a", {"M": 2}, 5.0), trace(n, "b", {"M": 2}, 4.0),
            trace(n, "a", {"M": 4}, 1.5), trace(n, "c", {"M": 4}, 1.2),
        ])
        t = build_table(ts, ApplyConfigRegistry(ApplyConfig(max_rtol=1e-2)))
        self.assertEqual(t["index"][n], {key_json({"M": 1}): "b", key_json({"M": 2}): "a", key_json({"M": 4}): "a"})
        self.assertEqual(t["def_best"][n], "a")
        self.assertEqual(t["ranked"][n], [["a", 2], ["b", 1]])

    def test_only_passed_traces_within_both_limits_count(self):
        n = gemm_def()["name"]
        ts = _set(self.tmp(), [
            trace(n, "a", {"M": 1}, 9.0, rel_err=1e-3),  # over the default max_rtol 1e-5
            trace(n, "b", {"M": 1}, 9.0, abs_err=0.5),  # over max_atol
            trace(n, "c", {"M": 1}, 9.0, status="INCORRECT_NUMERICAL", abs_err=1.0),
            trace(n, "c", {"M": 1}, 1.1),
        ])
        t = build_table(ts, ApplyConfigRegistry())
        self.assertEqual(t["index"][n], {key_json({"M": 1}): "c"})
        loose = build_table(ts, ApplyConfigRegistry(ApplyConfig(max_rtol=1e-2)))
        self.assertEqual(loose["index"][n], {key_json({"M": 1}): "a"})

    def test_ties_go_to_the_smaller_name_whatever_the_order(self):
        n = gemm_def()["name"]
        for order in ((("b", 2.0), ("a", 2.0)), (("a", 2.0), ("b", 2.0))):
            ts = _set(self.tmp(), [trace(n, s, {"M": 1}, x) for s, x in order])
            self.assertEqual(build_table(ts, ApplyConfigRegistry(ApplyConfig(max_rtol=1e-2)))["index"][n],
                             {key_json({"M": 1}): "a"})

    def test_a_definition_configured_none_is_left_out(self):
        n = gemm_def()["name"]
        ts = _set(self.tmp(), [trace(n, "a", {"M": 1})])
        reg = ApplyConfigRegistry()
        reg.register(n, None)
        self.assertEqual(build_table(ts, reg)["index"], {})
        with self.assertRaises(ValueError):
            reg.register(n, ApplyConfig())

    def test_runtime_keys_keep_only_keys_a_call_can_produce(self):
        d = TraceSet.from_path(_set(self.tmp(), []).root).definitions[gemm_def()["name"]]
        keys = {key_json({"M": 3}): "a", key_json({"M": 3, "X": 1}): "b"}
        self.assertEqual(runtime_keys(d, keys), {3: "a"})  # one var axis: the value itself

    def test_config_bounds(self):
        for bad in ({"max_atol": 0}, {"max_rtol": -1}, {"aot_ratio": 2}, {"on_miss_policy": "x"}, {"on_error": "x"}):
            with self.assertRaises(ValueError):
                ApplyConfig(**bad)


class PinnedTest(TempDirs, unittest.TestCase):
    def test_one_solution_per_definition_or_a_pinned_json(self):
        root = _set(self.tmp(), [], sols=("a",)).root
        self.assertEqual(load_pinned(root)[1], {"gemm_n4_k4": "a"})
        root = _set(self.tmp(), [], sols=("a", "b")).root
        with self.assertRaisesRegex(TraceSetError, r"two solutions for 'gemm_n4_k4'.*pinned.json"):
            load_pinned(root)
        write_json(os.path.join(root, "pinned.json"), {"solutions": {"gemm_n4_k4": "b"}})
        self.assertEqual(load_pinned(root)[1], {"gemm_n4_k4": "b"})

    def test_a_pinned_json_naming_an_unknown_solution_is_one_line(self):
        root = _set(self.tmp(), [], sols=("a",)).root
        write_json(os.path.join(root, "pinned.json"), {"solutions": {"gemm_n4_k4": "zz"}})
        with self.assertRaises(TraceSetError) as cm:
            load_pinned(root)
        self.assertRegex(str(cm.exception), r"^pinned\.json: \$\.solutions\.gemm_n4_k4: solution 'zz' is not in ")
        self.assertNotIn("\n", str(cm.exception))


class TraceSetErrorsTest(TempDirs, unittest.TestCase):
    def test_bad_files_name_file_field_and_reason(self):
        root = self.tmp()
        write_json(os.path.join(root, "definitions", "gemm", "x.json"), {"name": "x", "op_type": "gemm"})
        with self.assertRaisesRegex(TraceSetError, r"^definitions/gemm/x\.json: \$\.axes: missing$"):
            TraceSet.from_path(root)
        root = _set(self.tmp(), [])
        path = os.path.join(root.root, "traces", "t", "gemm", "gemm_n4_k4.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(json.dumps(trace("gemm_n4_k4", "a", {"M": 1}, status="DONE")) + "\n")
        with self.assertRaisesRegex(TraceSetError, r"^traces/t/gemm/gemm_n4_k4\.jsonl:1: \$\.evaluation\.status"):
            TraceSet.from_path(root.root)

    def test_a_second_object_of_the_same_name_names_its_file(self):
        root = _set(self.tmp(), []).root
        write_json(os.path.join(root, "definitions", "zz", "again.json"), gemm_def())
        with self.assertRaisesRegex(TraceSetError, r"^definitions/zz/again\.json: \$\.name: duplicate definition "
                                                   r"'gemm_n4_k4'$"):
            TraceSet.from_path(root)
        root = _set(self.tmp(), [])
        write_json(os.path.join(root.root, "solutions", "zz", "again.json"), solution("a", "gemm_n4_k4", CODE))
        with self.assertRaisesRegex(TraceSetError, r"^solutions/zz/again\.json: \$\.name: duplicate solution 'a'$"):
            TraceSet.from_path(root.root)


if __name__ == "__main__":
    unittest.main()
