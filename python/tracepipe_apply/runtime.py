"""The apply runtime: per call, find the solution for a definition and run it in the caller's
convention, or run the fallback.

Hot path (a call of a definition seen before with this key): one dict lookup for the definition,
the key read from the input shapes (ranked mode only), one dict lookup for the resolved entry, the
solution call. Everything else (loading, building, the table) happens once per key or at start.
"""

import logging

import torch

from . import adapters, loader, state
from .state import COUNTERS
from .calls import CallShape, call, torch_dtype
from .config import as_registry
from .table import aot_solutions, build_table, runtime_keys

_log = logging.getLogger("tracepipe_apply")
_MISSING = object()
_CACHE_LIMIT = 1 << 16  # distinct keys remembered per definition before the cache starts over


def _no_capture():
    return False


# Whether a CUDA graph is being captured on the current stream (always False without CUDA).
_capturing = torch.cuda.is_current_stream_capturing if torch.cuda.is_available() else _no_capture


class ApplyError(RuntimeError):
    """A matched solution that failed to load or run, under the strict error policy."""


class _Entry:
    """A resolved choice: the solution's callable (or the reason it cannot load)."""

    __slots__ = ("fn", "dps", "name", "error", "via_best")

    def __init__(self, fn, dps, name, error, via_best):
        self.fn, self.dps, self.name, self.error, self.via_best = fn, dps, name, error, via_best


class _DefState:
    __slots__ = ("d", "cs", "cfg", "table", "def_best", "pinned", "cache", "c", "keyed", "key", "dt_idx", "dt")

    def __init__(self, d, cfg, keyed):
        self.d, self.cs, self.cfg, self.keyed, self.key = d, CallShape(d), cfg, keyed, d.key_fn()
        # The first tensor input and its dtype: a call in another dtype is not this definition's.
        self.dt_idx = next((i for i, (_, (shape, _dt)) in enumerate(d.inputs) if shape is not None), None)
        self.dt = torch_dtype(d.inputs[self.dt_idx][1][1]) if self.dt_idx is not None else None
        self.table, self.def_best, self.pinned = {}, None, None
        self.cache = {}
        self.c = state.counter(d.name)


def _fallback(name, fallback, args, kwargs):
    if fallback is None:
        raise RuntimeError(f"Apply miss for '{name}' and no fallback provided")
    # No `**{}`: a builtin (torch.nn.functional.linear) called with it takes a slower path (~0.5 us).
    return fallback(*args, **kwargs) if kwargs else fallback(*args)


class ApplyRuntime(state.StackedRuntime):
    """Dispatches calls by definition name. `mode` "ranked" (flashinfer-bench: the table from the
    traces) or "pinned" (FlashInfer Trace Apply: `pinned` maps each definition to one solution)."""

    stack = state.APPLY

    def __init__(self, trace_set, apply_config=None, mode="ranked", pinned=None, install_adapters=True):
        if mode not in ("ranked", "pinned"):
            raise ValueError(f"mode: expected 'ranked' or 'pinned', got {mode!r}")
        self.trace_set = trace_set
        self.mode = mode
        self.registry = as_registry(apply_config)
        super().__init__(install_adapters)
        self._loaded = {}
        self._states = {}
        self.table = None
        if mode == "ranked":
            self.table = build_table(trace_set, self.registry)
        for name, d in trace_set.definitions.items():
            cfg = self.registry.get(name)
            if cfg is None:
                continue  # registry says: do not apply this definition
            st = _DefState(d, cfg, keyed=mode == "ranked")
            if mode == "pinned":
                st.pinned = (pinned or {}).get(name)
            else:
                st.table = runtime_keys(d, self.table["index"].get(name, {}))
                st.def_best = self.table["def_best"].get(name)
            self._states[name] = st

    # -- lifecycle ----------------------------------------------------------------------------------
    def before_start(self):
        """Builds the solutions chosen ahead of time before this runtime dispatches."""
        self.prewarm()

    def prewarm(self):
        """Loads (builds) the pinned solutions, or in ranked mode each definition's top solutions by
        keys won (aot_ratio) and def_best under use_def_best; failures are remembered, not raised."""
        names = []
        for name, st in self._states.items():
            if self.mode == "pinned":
                if st.pinned:
                    names.append(st.pinned)
            else:
                names += aot_solutions(self.table, name, st.cfg)
        self._load([n for n in dict.fromkeys(names) if n in self.trace_set.solutions])

    def _load(self, names):
        todo = [self.trace_set.solutions[n] for n in names if n not in self._loaded]
        if todo:
            self._loaded.update(loader.load_many(todo, self.trace_set.definitions))

    # -- dispatch -----------------------------------------------------------------------------------
    def _resolve(self, st, key):
        via_best = False
        if self.mode == "pinned":
            sol = st.pinned
        else:
            sol = st.table.get(key)
            if sol is None and st.def_best is not None and st.cfg.on_miss_policy == "use_def_best":
                sol, via_best = st.def_best, True
        ent = None
        if sol is not None:
            if sol not in self.trace_set.solutions:
                ent = _Entry(None, False, sol, f"solution {sol!r} is not in the TraceSet", via_best)
            else:
                self._load([sol])
                fn = self._loaded[sol]
                if isinstance(fn, Exception):
                    ent = _Entry(None, False, sol, str(fn), via_best)
                else:
                    ent = _Entry(fn, self.trace_set.solutions[sol].dps, sol, None, via_best)
        if len(st.cache) >= _CACHE_LIMIT:
            st.cache.clear()
        st.cache[key] = ent
        return ent

    def dispatch(self, name, args, kwargs, fallback):
        """Runs the call `name(*args, **kwargs)` (inputs, or inputs then outputs) on the chosen
        solution, or `fallback(*args, **kwargs)` on a miss. Written for speed: this runs per call."""
        st = self._states.get(name)
        if st is None:
            (COUNTERS.get(name) or state.counter(name)).miss += 1
            return _fallback(name, fallback, args, kwargs)
        cs = st.cs
        a = cs.merge(args, kwargs) if kwargs else args
        n = len(a)
        if n != cs.n_in and n != cs.n_all:
            raise ValueError(f"Invalid number of arguments for '{name}': expected {cs.n_in} (value-returning) "
                             f"or {cs.n_all} (destination-passing), got {n}")
        if st.dt is not None and a[st.dt_idx].dtype != st.dt:
            st.c.miss += 1
            return _fallback(name, fallback, args, kwargs)
        key = st.key(a) if st.keyed else None
        ent = st.cache.get(key, _MISSING)
        if ent is _MISSING:
            if _capturing():
                # FlashInfer's rule: never load or build during capture; warm shapes eagerly first.
                st.c.fallback_capture += 1
                return _fallback(name, fallback, args, kwargs)
            ent = self._resolve(st, key)
        if ent is None:
            st.c.miss += 1
            return _fallback(name, fallback, args, kwargs)
        if ent.error is not None:
            st.c.error += 1
            if st.cfg.on_error == "raise":
                raise ApplyError(f"apply: {name}: solution {ent.name} cannot run: {ent.error}")
            return _fallback(name, fallback, args, kwargs)
        try:
            if n == cs.n_in and not ent.dps:  # both value-returning: the common case, inline
                out = ent.fn(*a)
                if type(out) is tuple and len(out) == 1:
                    out = out[0]
            else:
                out = call(ent.fn, ent.dps, cs, a, n != cs.n_in, ent.name)
        except Exception:
            st.c.error += 1
            if st.cfg.on_error == "raise":
                _log.error("apply: %s: solution %s raised (strict: re-raised)", name, ent.name)
                raise
            _log.warning("apply: %s: solution %s raised; running the fallback", name, ent.name, exc_info=True)
            return _fallback(name, fallback, args, kwargs)
        st.c.hit += 1
        if ent.via_best:
            st.c.def_best += 1
        return out

    def solution_for(self, name, key=None):
        """The solution a call of `name` with var-axes `key` (Definition.pack_key form, ranked mode)
        would run, or None."""
        st = self._states.get(name)
        if st is None:
            return None
        if self.mode == "pinned":
            return st.pinned
        sol = st.table.get(key)
        if sol is None and st.cfg.on_miss_policy == "use_def_best":
            sol = st.def_best
        return sol
