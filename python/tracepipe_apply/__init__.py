"""tracepipe_apply: the kernels tracepipe judged, substituted into a running PyTorch model.

flashinfer-bench's API (`apply`, `enable_apply`, `disable_apply`, tracing) over a FlashInfer
TraceSet, in two modes: `ranked` (the fastest solution per exact var-axes key, from the traces) and
`pinned` (FlashInfer Trace Apply: one solution per definition). See python/README.md.
"""

from .adapters import fused_add_rmsnorm, patch_llama, register_rmsnorm_class
from .api import (apply, disable_apply, disable_tracing, enable_apply, enable_tracing, get_runtime,
                  get_tracing_runtime, init_from_env)
from .attention import paged_decode, paged_prefill
from .config import ApplyConfig, ApplyConfigRegistry
from .loader import LoadError
from .runtime import ApplyError, ApplyRuntime
from .state import reset_stats, stats
from .tracing import TracingConfig, TracingRuntime
from .traceset import TraceSet, TraceSetError

__all__ = [
    "ApplyConfig", "ApplyConfigRegistry", "ApplyError", "ApplyRuntime", "LoadError", "TraceSet", "TraceSetError",
    "TracingConfig", "TracingRuntime", "apply", "disable_apply", "disable_tracing", "enable_apply",
    "enable_tracing", "fused_add_rmsnorm", "get_runtime", "get_tracing_runtime", "init_from_env", "paged_decode",
    "paged_prefill", "patch_llama", "register_rmsnorm_class", "reset_stats", "stats",
]

init_from_env()
