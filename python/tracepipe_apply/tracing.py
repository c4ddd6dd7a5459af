"""Tracing: the calls that apply would dispatch (through apply() or the adapters) recorded as
FlashInfer workloads, while the original functions run.

Each call becomes a workload of its definition: the var-axis values read from the input shapes,
the index tensors (int and bool inputs, by default) in one safetensors blob per workload, scalars by
value, the other tensors `random`. flush() writes definitions/, workloads/ and blob/ under the
output folder: a TraceSet `tp validate` accepts and `collect` takes as an engine dump. Definitions
the dataset lacks are made from their names (templates.py). Errors never reach the model: they are
counted and logged.
"""

import atexit
import json
import logging
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field

import torch

from . import adapters, safetensors_io, state
from .calls import CallShape
from .templates import synthesize, trace_dtype
from .traceset import Definition, TraceSet

_log = logging.getLogger("tracepipe_apply.tracing")

DUMP_POLICIES = ("dump_all", "dump_none", "dump_int")
FILTER_POLICIES = ("keep_all", "keep_none", "keep_first", "keep_first_k", "keep_first_k_by_axes")


@dataclass
class TracingConfig:
    """input_dump_policy: which tensor inputs go into the blob (`dump_int`: int and bool tensors, the
    index tensors; `dump_all`; `dump_none`; or a list of input names). filter_policy: which calls of a
    definition become workloads (`keep_all`; `keep_none`; `keep_first`; `keep_first_k` with k;
    `keep_first_k_by_axes`: the first k per distinct axes), with filter_policy_kwargs {"k": n}."""

    input_dump_policy: object = "dump_int"
    filter_policy: str = "keep_all"
    filter_policy_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        p = self.input_dump_policy
        if not (isinstance(p, (list, tuple)) or p in DUMP_POLICIES):
            raise ValueError(f"TracingConfig.input_dump_policy: one of {DUMP_POLICIES} or a list of names, got {p!r}")
        if self.filter_policy not in FILTER_POLICIES:
            raise ValueError(f"TracingConfig.filter_policy: one of {FILTER_POLICIES}, got {self.filter_policy!r}")
        k = self.filter_policy_kwargs.get("k", 1)
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"TracingConfig.filter_policy_kwargs.k: must be an integer > 0, got {k!r}")


def _dumps(policy, name, t):
    if isinstance(policy, (list, tuple)):
        return name in policy
    if policy == "dump_all":
        return True
    if policy == "dump_int":
        return not (t.is_floating_point() or t.is_complex())
    return False


class TracingRuntime(state.StackedRuntime):
    """Collects calls in memory; flush() (also on stop and at exit) writes them under `out_path`."""

    stack = state.TRACING

    def __init__(self, out_path, definitions=None, config=None, install_adapters=True):
        self.out_path = os.path.abspath(out_path)
        self.config = config or TracingConfig()
        self.definitions = dict(definitions or {})
        super().__init__(install_adapters)
        self.entries = []
        self.kept = Counter()
        self.skipped = Counter()
        self.errors = Counter()
        self._shapes = {}
        self._written_defs = set()

    def after_stop(self):
        self.flush()

    # -- collection ---------------------------------------------------------------------------------
    def _definition(self, name, args):
        d = self.definitions.get(name)
        if d is None:
            dt = next((trace_dtype(a.dtype) for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
            raw = synthesize(name, dt)
            if raw is None:
                return None
            d = self.definitions[name] = Definition(raw, f"<synthesized {name}>")
        return d

    def _keep(self, name, axes):
        p, k = self.config.filter_policy, self.config.filter_policy_kwargs.get("k", 1)
        if p == "keep_all":
            return True
        if p == "keep_none":
            return False
        key = name if p != "keep_first_k_by_axes" else (name, tuple(sorted(axes.items())))
        limit = 1 if p == "keep_first" else k
        if self.kept[key] >= limit:
            return False
        self.kept[key] += 1
        return True

    def collect(self, name, args, kwargs):
        """Records one call (inputs only); never raises."""
        try:
            d = self._definition(name, args)
            if d is None:
                self.skipped[name] += 1
                return
            cs = self._shapes.get(name) or self._shapes.setdefault(name, CallShape(d))
            a = cs.merge(args, kwargs) if kwargs else list(args)
            if len(a) not in (cs.n_in, cs.n_all):
                self.skipped[name] += 1
                return
            missing = [v for v in d.var_axes if v not in d.axis_source]
            if missing:
                self.skipped[name] += 1
                return
            axes = {v: int(a[i].shape[dim]) for v, (i, dim) in d.axis_source.items()}
            if not self._keep(name, axes):
                return
            dumped, scalars = {}, {}
            for (iname, (shape, _dt)), x in zip(d.inputs, a[:cs.n_in]):
                if shape is None:
                    scalars[iname] = x.item() if isinstance(x, torch.Tensor) else x
                elif isinstance(x, torch.Tensor) and _dumps(self.config.input_dump_policy, iname, x):
                    dumped[iname] = x.detach().to("cpu", copy=True)
            self.entries.append((name, axes, dumped, scalars))
        except Exception:  # noqa: BLE001 - tracing must never break the traced model
            self.errors[name] += 1
            _log.exception("tracing: cannot record a call of %s", name)

    # -- output -------------------------------------------------------------------------------------
    def flush(self):
        """Writes the collected calls as workloads (and their definitions) under out_path."""
        if not self.entries:
            return 0
        lines = {}
        for name, axes, dumped, scalars in self.entries:
            d = self.definitions[name]
            uid = str(uuid.uuid4())
            inputs = {}
            blob_rel = None
            if dumped:
                blob_rel = f"blob/workloads/{d.op_type}/{name}/{name}_{uid}.safetensors"
                safetensors_io.save(os.path.join(self.out_path, blob_rel), dumped)
            for iname in d.input_names:
                if iname in dumped:
                    inputs[iname] = {"type": "safetensors", "path": blob_rel, "tensor_key": iname}
                elif iname in scalars:
                    inputs[iname] = {"type": "scalar", "value": scalars[iname]}
                else:
                    inputs[iname] = {"type": "random"}
            rec = {"definition": name, "workload": {"axes": axes, "inputs": inputs, "uuid": uid},
                   "solution": None, "evaluation": None}
            lines.setdefault(name, []).append(json.dumps(rec))
        for name, recs in lines.items():
            d = self.definitions[name]
            self._write_definition(d)
            path = os.path.join(self.out_path, "workloads", d.op_type, f"{name}.jsonl")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(r + "\n" for r in recs))
        n = len(self.entries)
        self.entries = []
        return n

    def _write_definition(self, d):
        path = os.path.join(self.out_path, "definitions", d.op_type, f"{d.name}.json")
        if d.name in self._written_defs or os.path.exists(path):
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(d.raw, indent=2) + "\n")
        self._written_defs.add(d.name)


def make_tracing_runtime(dataset_path, tracing_config=None, out_path=None, install_adapters=True):
    """A tracing runtime reading definitions from `dataset_path` (when it holds any) and writing the
    workloads to `out_path` (default: `dataset_path`, as flashinfer-bench does)."""
    if not dataset_path:
        raise ValueError("enable_tracing: give dataset_path (or set FIB_DATASET_PATH)")
    defs = {}
    if os.path.isdir(os.path.join(dataset_path, "definitions")):
        defs = TraceSet.from_path(dataset_path, traces=False).definitions
    return TracingRuntime(out_path or dataset_path, defs, tracing_config, install_adapters)


def _flush_all():
    for rt in list(state.TRACING):
        try:
            rt.flush()
        except Exception:  # noqa: BLE001 - at exit, a failed flush is only reported
            _log.exception("tracing: flush at exit failed")


atexit.register(_flush_all)
