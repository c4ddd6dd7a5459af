"""Builders of small TraceSets for the tests (definitions, solutions, traces written to a folder)."""

import inspect
import json
import os
import shutil
import tempfile

from tracepipe_apply import templates, torch_kernels

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS_SOURCE = inspect.getsource(torch_kernels)
ENV = {"hardware": "test", "libs": {"torch": "test"}}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def solution(name, definition, code, entry="main.py::run", language="python", dps=False, author="t"):
    """A solution dict with one source (`code` in main.py unless the entry names another file)."""
    path = entry.split("::")[0]
    return {"name": name, "definition": definition, "author": author,
            "spec": {"language": language, "target_hardware": ["cpu"], "entry_point": entry,
                     "dependencies": [], "destination_passing_style": dps},
            "sources": [{"path": path, "content": code}]}


def kernel_solution(name, definition, author="tracepipe"):
    """A Python solution running torch_kernels.py's implementation of `definition`."""
    fn = torch_kernels.entry_for(definition)
    return solution(name, definition, KERNELS_SOURCE, entry=f"torch_kernels.py::{fn}", author=author)


def trace(definition, sol, axes, speedup=2.0, status="PASSED", abs_err=0.0, rel_err=0.0, uuid=None):
    ev = {"status": status, "environment": ENV, "timestamp": "2026-01-01T00:00:00", "log": ""}
    if status in ("PASSED", "INCORRECT_NUMERICAL"):
        ev["correctness"] = {"max_relative_error": rel_err, "max_absolute_error": abs_err}
    if status == "PASSED":
        ev["performance"] = {"latency_ms": 1.0 / speedup, "reference_latency_ms": 1.0, "speedup_factor": speedup}
    wl_uuid = uuid or f"w-{definition}-" + "-".join(f"{k}{v}" for k, v in sorted(axes.items()))
    return {"definition": definition, "workload": {"axes": axes, "inputs": {}, "uuid": wl_uuid},
            "solution": sol, "evaluation": ev}


def write_set(root, definitions, solutions, traces):
    """Writes a TraceSet in the canonical layout; returns root."""
    os.makedirs(root, exist_ok=True)
    ops = {d["name"]: d["op_type"] for d in definitions}
    for d in definitions:
        write_json(os.path.join(root, "definitions", d["op_type"], d["name"] + ".json"), d)
    authors = {}
    for s in solutions:
        authors[s["name"]] = s["author"]
        write_json(os.path.join(root, "solutions", s["author"], ops[s["definition"]], s["definition"],
                                s["name"] + ".json"), s)
    files = {}
    for t in traces:
        rel = os.path.join("traces", authors[t["solution"]], ops[t["definition"]], t["definition"] + ".jsonl")
        files.setdefault(rel, []).append(json.dumps(t))
    for rel, lines in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
            f.write("".join(x + "\n" for x in lines))
    return root


class TempDirs:
    """Mixin: self.tmp() gives a fresh folder removed after the test."""

    def tmp(self):
        d = tempfile.mkdtemp(prefix="tpa_test_")
        self.addCleanup(shutil.rmtree, d, True)
        return d


def rms_def(h=8, dtype="float32"):
    return templates.rmsnorm(h, dtype)


def gemm_def(n=4, k=4, dtype="float32"):
    return templates.gemm(n, k, dtype)
