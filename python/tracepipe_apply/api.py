"""The public API, flashinfer-bench's (`apply`, `enable_apply`, `disable_apply`, `enable_tracing`,
`disable_tracing`) with FlashInfer Trace Apply's pinned mode beside the ranked one.

Environment, read when the package is imported (a bad setting warns, never breaks the import):
  FIB_ENABLE_APPLY=1 + FIB_DATASET_PATH                      ranked mode on that TraceSet
  FLASHINFER_TRACE_APPLY=1 + FLASHINFER_TRACE_APPLY_PATH     pinned mode on that folder
  FIB_ENABLE_TRACING=1 + FIB_DATASET_PATH                    tracing into that folder
"""

import functools
import os
import warnings

from . import state
from .core import dispatch_named
from .runtime import ApplyRuntime
from .table import load_pinned
from .templates import synthesize
from .tracing import make_tracing_runtime
from .traceset import Definition, TraceSet, TraceSetError

DEFAULT_DATASET = "~/.cache/flashinfer_bench/dataset"


def apply(def_name_or_resolver, args=None, kwargs=None, fallback=None):
    """Routes a call to the solution chosen for its definition.

    With `args` or `kwargs` it dispatches at once and returns the result; with the name alone it is a
    decorator whose wrapped function becomes the fallback. The name may be a resolver
    `(*args, **kwargs) -> definition name`. Passing the definition's inputs makes a value-returning
    call; inputs then outputs, a destination-passing one (returns None)."""
    if args is not None or kwargs is not None:
        return _dispatch(def_name_or_resolver, tuple(args) if args is not None else (), kwargs or {}, fallback)

    def decorator(fn):
        @functools.wraps(fn)
        def wrapped(*a, **kw):
            return _dispatch(def_name_or_resolver, a, kw, fn)

        return wrapped

    return decorator


def _dispatch(r, args, kwargs, fallback):
    if not (state.APPLY or state.TRACING):
        if fallback is None:
            raise RuntimeError("Apply or tracing is not enabled and no fallback provided")
        return fallback(*args, **kwargs) if kwargs else fallback(*args)
    name = r if r.__class__ is str else r(*args, **kwargs)
    return dispatch_named(name, args, kwargs, fallback)


def _pinned_set(path):
    ts, pinned = load_pinned(path)
    for def_name in pinned:
        if def_name not in ts.definitions:
            # A solution does not state its dtype: the family's official one is used.
            raw = synthesize(def_name)
            if raw is None:
                raise TraceSetError(f"{path}: definitions/: no definition {def_name!r}, and its name is no known family")
            ts.definitions[def_name] = Definition(raw, f"<synthesized {def_name}>")
    return ts, pinned


def enable_apply(dataset_path=None, apply_config=None, *, mode="ranked", install_adapters=True):
    """Loads a TraceSet, builds the chosen solutions and pushes an apply runtime (returned; also a
    context manager). `mode` "ranked": flashinfer-bench's table from the traces of `dataset_path`
    (default $FIB_DATASET_PATH). "pinned": one solution per definition from `dataset_path` (default
    $FLASHINFER_TRACE_APPLY_PATH): its pinned.json, or its only solution of each definition.
    `apply_config`: an ApplyConfig or ApplyConfigRegistry. `install_adapters`: patch F.linear,
    F.rms_norm and the registered RMSNorm classes while the runtime is active."""
    if mode == "pinned":
        path = dataset_path or os.environ.get("FLASHINFER_TRACE_APPLY_PATH") or os.environ.get("FIB_DATASET_PATH")
        if not path:
            raise ValueError("enable_apply(mode='pinned'): give dataset_path (or set FLASHINFER_TRACE_APPLY_PATH)")
        ts, pinned = _pinned_set(os.path.expanduser(path))
        rt = ApplyRuntime(ts, apply_config, "pinned", pinned, install_adapters)
    elif mode == "ranked":
        path = os.path.expanduser(dataset_path or os.environ.get("FIB_DATASET_PATH") or DEFAULT_DATASET)
        rt = ApplyRuntime(TraceSet.from_path(path), apply_config, "ranked", None, install_adapters)
    else:
        raise ValueError(f"enable_apply: mode must be 'ranked' or 'pinned', got {mode!r}")
    return rt.start()


def disable_apply():
    """Pops the most recent apply runtime (the previous one, if any, dispatches again). When no
    runtime remains, the patched functions are the originals again."""
    if state.APPLY:
        state.APPLY[-1].stop()


def get_runtime():
    """The apply runtime that dispatches now, or None."""
    return state.APPLY[-1] if state.APPLY else None


def enable_tracing(dataset_path=None, tracing_config=None, *, out_path=None, install_adapters=True):
    """Pushes a tracing runtime: while no apply runtime is active, every call apply would dispatch is
    recorded as a workload. Definitions come from `dataset_path` (default $FIB_DATASET_PATH) or from
    their names; workloads go to `out_path` (default: `dataset_path`) on disable_tracing() and at exit."""
    path = dataset_path or os.environ.get("FIB_DATASET_PATH")
    rt = make_tracing_runtime(os.path.expanduser(path) if path else None, tracing_config,
                              os.path.expanduser(out_path) if out_path else None, install_adapters)
    return rt.start()


def disable_tracing():
    """Pops the most recent tracing runtime and writes what it recorded."""
    if state.TRACING:
        state.TRACING[-1].stop()


def get_tracing_runtime():
    return state.TRACING[-1] if state.TRACING else None


def init_from_env(environ=None):
    """Enables apply and/or tracing as the environment asks; a bad setting warns, one line."""
    env = os.environ if environ is None else environ
    try:
        fi = env.get("FLASHINFER_TRACE_APPLY", "0")
        if fi not in ("", "0", "1"):
            warnings.warn(f"FLASHINFER_TRACE_APPLY must be '0' or '1', got {fi!r}; apply stays off", stacklevel=2)
        elif fi == "1":
            enable_apply(env.get("FLASHINFER_TRACE_APPLY_PATH"), mode="pinned")
        elif env.get("FIB_ENABLE_APPLY") == "1":
            enable_apply(env.get("FIB_DATASET_PATH"))
        if env.get("FIB_ENABLE_TRACING") == "1":
            enable_tracing(env.get("FIB_DATASET_PATH"))
    except (TraceSetError, ValueError, OSError) as e:
        warnings.warn(f"tracepipe_apply: not enabled from the environment: {e}", stacklevel=2)
