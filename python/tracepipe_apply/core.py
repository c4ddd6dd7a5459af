"""The one dispatch rule, shared by apply() and the adapters: an active apply runtime dispatches;
else an active tracing runtime records the call and the fallback runs (apply and tracing exclude each
other, as in flashinfer-bench); else the fallback runs."""

from .state import APPLY, TRACING

NO_KWARGS = {}


def dispatch_named(name, args, kwargs, fallback):
    if APPLY:
        return APPLY[-1].dispatch(name, args, kwargs, fallback)
    if TRACING:
        TRACING[-1].collect(name, args, kwargs)
    if fallback is None:
        raise RuntimeError("Apply or tracing is not enabled and no fallback provided")
    return fallback(*args, **kwargs) if kwargs else fallback(*args)
