"""Reads a FlashInfer TraceSet (the layout of pipeline/trace/traceset.ts):

    definitions/<op_type>/<definition>.json
    solutions/<author>/<op_type>/<definition>/<solution>.json
    traces/<author>/<op_type>/<definition>.jsonl
    workloads/<op_type>/<definition>.jsonl  (+ blob/...)

Loading is depth-agnostic, as flashinfer-bench's is, and unknown JSON keys are ignored. Bad input
raises TraceSetError with one line naming the file, the field and the reason.
"""

import json
import math
import os

STATUSES = ("PASSED", "INCORRECT_SHAPE", "INCORRECT_NUMERICAL", "INCORRECT_DTYPE",
            "RUNTIME_ERROR", "COMPILE_ERROR", "TIMEOUT")


class TraceSetError(ValueError):
    """A TraceSet file that cannot be used: the message names the file, the field and the reason."""


def _need(obj, key, kind, file, where="$"):
    if not isinstance(obj, dict) or key not in obj:
        raise TraceSetError(f"{file}: {where}.{key}: missing")
    v = obj[key]
    if not isinstance(v, kind) or (isinstance(v, str) and not v):
        raise TraceSetError(f"{file}: {where}.{key}: expected {getattr(kind, '__name__', kind)}")
    return v


def _float(v):
    """FlashInfer serialises non-finite floats as strings ("Infinity", "NaN"), case-insensitively."""
    if isinstance(v, str):
        s = v.strip().lower().lstrip("+")
        if s in ("inf", "infinity"):
            return math.inf
        if s in ("-inf", "-infinity"):
            return -math.inf
        if s == "nan":
            return math.nan
        raise ValueError(v)
    return float(v) if v is not None else 0.0


class Definition:
    """A kernel definition: axes, inputs and outputs in call order, and what the dispatcher needs
    from them (where each var axis is read from the inputs, the output shapes)."""

    def __init__(self, raw, file="<definition>"):
        self.raw = raw
        self.name = _need(raw, "name", str, file)
        self.op_type = _need(raw, "op_type", str, file)
        axes = _need(raw, "axes", dict, file)
        inputs = _need(raw, "inputs", dict, file)
        outputs = _need(raw, "outputs", dict, file)
        self.const_axes = {}
        self.var_axes = []
        for a, spec in axes.items():
            if not isinstance(spec, dict):
                raise TraceSetError(f"{file}: $.axes.{a}: expected an object")
            if spec.get("type", "const" if "value" in spec else "var") == "const":
                v = spec.get("value")
                if not isinstance(v, int) or v < 0:
                    raise TraceSetError(f"{file}: $.axes.{a}.value: expected an integer >= 0")
                self.const_axes[a] = v
            else:
                self.var_axes.append(a)
        self.var_axes.sort()  # flashinfer-bench's ApplyKey: (name, value) pairs sorted by name
        self.inputs = [(n, self._spec(s, f"$.inputs.{n}", file, axes)) for n, s in inputs.items()]
        self.outputs = [(n, self._spec(s, f"$.outputs.{n}", file, axes)) for n, s in outputs.items()]
        self.input_names = [n for n, _ in self.inputs]
        self.output_names = [n for n, _ in self.outputs]
        self.n_in = len(self.inputs)
        self.n_out = len(self.outputs)
        # Where each var axis can be read: the first (input index, dim) whose shape names it.
        self.axis_source = {}
        for i, (_, (shape, _dt)) in enumerate(self.inputs):
            for d, a in enumerate(shape or ()):
                if a in self.var_axes and a not in self.axis_source:
                    self.axis_source[a] = (i, d)
        # The key reads the var axes an input shows, in sorted order; axes seen only in outputs are
        # not in a runtime key (as in flashinfer-bench, such a definition's keys never match).
        self.key_sources = tuple(self.axis_source[a] for a in self.var_axes if a in self.axis_source)
        self.key_axes = tuple(a for a in self.var_axes if a in self.axis_source)

    @staticmethod
    def _spec(spec, where, file, axes):
        if not isinstance(spec, dict) or "shape" not in spec:
            raise TraceSetError(f"{file}: {where}.shape: missing")
        shape = spec["shape"]
        if shape is not None:
            if not isinstance(shape, list) or not all(isinstance(a, str) and a in axes for a in shape):
                raise TraceSetError(f"{file}: {where}.shape: every entry must name an axis of the definition")
        dtype = _need(spec, "dtype", str, file, where)
        return (tuple(shape) if shape is not None else None, dtype)

    def axes_of(self, args):
        """Every axis value (const and var) of a call, var axes read from the input shapes."""
        out = dict(self.const_axes)
        for a, (i, d) in self.axis_source.items():
            out[a] = int(args[i].shape[d])
        return out

    def pack_key(self, values):
        """The runtime form of a key: the value itself for one var axis, else the tuple of values."""
        return values[0] if len(values) == 1 else tuple(values)

    def key_fn(self):
        """A function computing a call's key (var-axis values in sorted-name order, packed), specialised
        to this definition: the dispatcher calls it on every call of a ranked runtime."""
        src = self.key_sources
        if not src:
            return lambda a: ()
        if len(src) == 1:
            (i, d), = src
            return lambda a: a[i].shape[d]
        if len(src) == 2:
            (i0, d0), (i1, d1) = src
            return lambda a: (a[i0].shape[d0], a[i1].shape[d1])
        return lambda a: tuple([a[i].shape[d] for i, d in src])

    def key_of(self, args):
        """The ranked table's key of a call (see key_fn)."""
        return self.pack_key([args[i].shape[d] for i, d in self.key_sources])


class Solution:
    """A candidate implementation: how it is built (spec) and its sources."""

    def __init__(self, raw, file="<solution>"):
        self.raw = raw
        self.name = _need(raw, "name", str, file)
        self.definition = _need(raw, "definition", str, file)
        self.author = _need(raw, "author", str, file)
        spec = _need(raw, "spec", dict, file)
        self.language = _need(spec, "language", str, file, "$.spec")
        self.entry_point = _need(spec, "entry_point", str, file, "$.spec")
        if self.entry_point.count("::") != 1:
            raise TraceSetError(f"{file}: $.spec.entry_point: expected \"<file>::<symbol>\"")
        self.dps = bool(spec.get("destination_passing_style", True))
        self.binding = spec.get("binding")
        sources = _need(raw, "sources", list, file)
        self.sources = []
        for i, s in enumerate(sources):
            p = _need(s, "path", str, file, f"$.sources[{i}]")
            c = _need(s, "content", str, file, f"$.sources[{i}]")
            if os.path.isabs(p) or ".." in p.replace("\\", "/").split("/"):
                raise TraceSetError(f"{file}: $.sources[{i}].path: unsafe path {p!r}")
            self.sources.append((p, c))
        if self.entry_point.split("::")[0] not in {p for p, _ in self.sources}:
            raise TraceSetError(f"{file}: $.spec.entry_point: its file is not among the sources")


class Trace:
    """An evaluated trace, reduced to what the ranked table reads."""

    __slots__ = ("definition", "solution", "axes", "status", "max_abs", "max_rel", "speedup", "latency_ms")

    def __init__(self, raw, file, line):
        where = f"{file}:{line}"
        self.definition = _need(raw, "definition", str, where)
        self.solution = raw.get("solution")
        wl = _need(raw, "workload", dict, where)
        axes = wl.get("axes") or {}
        if not isinstance(axes, dict) or not all(isinstance(v, int) for v in axes.values()):
            raise TraceSetError(f"{where}: $.workload.axes: expected integers")
        self.axes = axes
        ev = raw.get("evaluation") or {}
        self.status = ev.get("status")
        if self.status is not None and self.status not in STATUSES:
            raise TraceSetError(f"{where}: $.evaluation.status: unknown status {self.status!r}")
        corr = ev.get("correctness") or {}
        perf = ev.get("performance") or {}
        try:
            self.max_abs = _float(corr.get("max_absolute_error", 0.0))
            self.max_rel = _float(corr.get("max_relative_error", 0.0))
            self.speedup = _float(perf.get("speedup_factor", 0.0))
            self.latency_ms = _float(perf.get("latency_ms", 0.0))
        except (TypeError, ValueError) as e:
            raise TraceSetError(f"{where}: $.evaluation: not a number: {e}") from None


def _json_files(d, suffix):
    out = []
    for base, dirs, files in os.walk(d):
        dirs.sort()
        out += [os.path.join(base, f) for f in sorted(files) if f.endswith(suffix)]
    return sorted(out)


def _read_named(root, section, kind, into, what):
    """Reads every JSON file under `root`/`section` as a `kind` (Definition or Solution) into `into`, by name;
    a second object of the same name is an error naming its file."""
    for path in _json_files(os.path.join(root, section), ".json"):
        raw, rel = _read_json(path, root)
        obj = kind(raw, rel)
        if obj.name in into:
            raise TraceSetError(f"{rel}: $.name: duplicate {what} {obj.name!r}")
        into[obj.name] = obj


def _read_json(path, root):
    rel = os.path.relpath(path, root)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), rel
    except (OSError, ValueError) as e:
        raise TraceSetError(f"{rel}: $: cannot read: {e}") from None


class TraceSet:
    """Definitions, solutions and evaluated traces of one TraceSet folder."""

    def __init__(self, root=None):
        self.root = root
        self.definitions = {}
        self.solutions = {}
        self.traces = []
        self.workload_count = 0

    @classmethod
    def from_path(cls, root, traces=True):
        """Loads `root`; raises TraceSetError (one line: file, field, reason) for bad content."""
        if not root or not os.path.isdir(root):
            raise TraceSetError(f"{root}: $: not a TraceSet folder")
        ts = cls(os.path.abspath(root))
        _read_named(root, "definitions", Definition, ts.definitions, "definition")
        _read_named(root, "solutions", Solution, ts.solutions, "solution")
        if traces:
            ts.traces = ts._read_traces(os.path.join(root, "traces"))
        for path in _json_files(os.path.join(root, "workloads"), ".jsonl"):
            with open(path, encoding="utf-8") as f:
                ts.workload_count += sum(1 for line in f if line.strip())
        return ts

    def _read_traces(self, d):
        out = []
        for path in _json_files(d, ".jsonl"):
            rel = os.path.relpath(path, self.root)
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        raw = json.loads(line)
                    except ValueError as e:
                        raise TraceSetError(f"{rel}:{i}: $: malformed JSON: {e}") from None
                    t = Trace(raw, rel, i)
                    if t.solution is not None and t.status is not None:
                        out.append(t)
        return out

    def filter_traces(self, def_name, max_atol, max_rtol):
        """flashinfer-bench's filter: PASSED, abs <= atol and rel <= rtol, solution known."""
        return [t for t in self.traces
                if t.definition == def_name and t.status == "PASSED" and t.solution in self.solutions
                and t.max_abs <= max_atol and t.max_rel <= max_rtol]
