"""Adapters: the functions of an unmodified PyTorch model that apply substitutes, patched while an
apply or tracing runtime is active and restored when the last one stops.

    torch.nn.functional.linear (no bias, 2-D)  -> gemm_n{N}_k{K}
    torch.nn.functional.rms_norm (eps 1e-5)     -> rmsnorm_h{H}
    <RMSNorm class>.forward (Hugging Face style) -> rmsnorm_h{H}   (LlamaRMSNorm, or any registered)
    fused_add_rmsnorm(input, residual, weight)   -> fused_add_rmsnorm_h{H}  (in place, FlashInfer's API)

A call that does not fit its definition (a bias, another eps, mixed dtypes) runs the original; so
does one whose first tensor is not in the definition's dtype (the runtime checks that).
Wrappers raise the shared guard while they dispatch, so whatever the solution or the fallback calls
(a Python solution using torch.nn.functional.linear) reaches the original function, once.
"""

import sys

import torch
import torch.nn.functional as F

from .core import NO_KWARGS, dispatch_named
from .state import APPLY, GUARD, TRACING

EPS = 1e-5  # the eps the rmsnorm definitions fix

_patches = []  # (owner, attr, original), in patch order
_refs = [0]
_rms_classes = {}  # class -> (eps attribute, weight attribute)


def _eps_ok(eps):
    return eps is not None and abs(eps - EPS) <= 1e-12


def patch(owner, attr, make):
    """Replaces owner.attr by make(original) once; returns False when it is already patched."""
    cur = getattr(owner, attr)
    if getattr(cur, "_tracepipe_apply", False):
        return False
    wrapper = make(cur)
    wrapper._tracepipe_apply = True
    setattr(owner, attr, wrapper)
    _patches.append((owner, attr, cur))
    return True


def unpatch_all():
    """Restores every patched attribute (latest first)."""
    while _patches:
        owner, attr, orig = _patches.pop()
        setattr(owner, attr, orig)


def patched():
    """[(owner, attribute name)] currently patched."""
    return [(o, a) for o, a, _ in _patches]


def _dispatch(name, args, fallback):
    """dispatch_named for the adapters' positional calls, one Python call shorter."""
    if APPLY:
        return APPLY[-1].dispatch(name, args, NO_KWARGS, fallback)
    return dispatch_named(name, args, NO_KWARGS, fallback)


_GEMM_NAMES = {}


def _make_linear(orig):
    def linear(input, weight, bias=None):
        if GUARD[0] or bias is not None or not (APPLY or TRACING):
            return orig(input, weight, bias)
        shape = weight.shape
        name = _GEMM_NAMES.get(shape)
        if name is None:
            if len(shape) != 2:
                return orig(input, weight, bias)
            name = _GEMM_NAMES.setdefault(shape, f"gemm_n{shape[0]}_k{shape[1]}")
        # No dtype check here: the runtime compares the input's with the definition's (weight and input
        # in different dtypes is an error of F.linear itself).
        flat = input.ndim == 2
        GUARD[0] += 1
        try:
            y = _dispatch(name, (input if flat else input.reshape(-1, shape[1]), weight), orig)
        finally:
            GUARD[0] -= 1
        return y if flat else y.reshape(*input.shape[:-1], shape[0])

    linear.__doc__ = orig.__doc__
    return linear


def _make_rms_norm(orig):
    def rms_norm(input, normalized_shape, weight=None, eps=None):
        if (GUARD[0] or not (APPLY or TRACING) or weight is None or not _eps_ok(eps)
                or len(normalized_shape) != 1 or weight.dtype != input.dtype):
            return orig(input, normalized_shape, weight, eps)
        h = input.shape[-1]
        GUARD[0] += 1
        try:
            y = _dispatch(f"rmsnorm_h{h}", (input.reshape(-1, h), weight), lambda x, w: orig(x, (h,), w, eps))
        finally:
            GUARD[0] -= 1
        return y.reshape(input.shape)

    return rms_norm


def _make_rms_forward(eps_attr, weight_attr):
    def make(orig):
        def forward(self, hidden_states, *rest, **kw):
            if GUARD[0] or not (APPLY or TRACING) or rest or kw:
                return orig(self, hidden_states, *rest, **kw)
            w = getattr(self, weight_attr, None)
            if (w is None or w.dim() != 1 or not _eps_ok(getattr(self, eps_attr, None))
                    or hidden_states.dtype != w.dtype):
                return orig(self, hidden_states)
            h = hidden_states.shape[-1]
            GUARD[0] += 1
            try:
                y = _dispatch(f"rmsnorm_h{h}", (hidden_states.reshape(-1, h), w), lambda x, _w: orig(self, x))
            finally:
                GUARD[0] -= 1
            return y.reshape(hidden_states.shape)

        return forward

    return make


def register_rmsnorm_class(cls, eps_attr="variance_epsilon", weight_attr="weight"):
    """Has `cls.forward(hidden_states)` (an RMSNorm module: weight * normalize(x), eps in `eps_attr`)
    substituted by rmsnorm_h{H} while a runtime is active (at once if one is)."""
    _rms_classes[cls] = (eps_attr, weight_attr)
    if _refs[0]:
        patch(cls, "forward", _make_rms_forward(eps_attr, weight_attr))


def _reference_fused_add_rmsnorm(eps):
    def run(hidden_states, residual, weight):
        x = hidden_states.to(torch.float32) + residual.to(torch.float32)
        y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.to(torch.float32)
        return y.to(hidden_states.dtype)

    return run


def fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None):
    """FlashInfer's in-place API: residual += input, then input = rmsnorm(residual) * weight.

    Dispatches fused_add_rmsnorm_h{H} (a value-returning definition of the normalized output) and
    writes its result back into `input`, and the sum into `residual`, whichever convention the
    solution uses. Other eps values or mixed dtypes run the torch reference."""
    del enable_pdl
    h = input.shape[-1]
    x, r = input.reshape(-1, h), residual.reshape(-1, h)
    fb = _reference_fused_add_rmsnorm(eps)
    if GUARD[0] or not (APPLY or TRACING) or not _eps_ok(eps) or not (input.dtype == residual.dtype == weight.dtype):
        y = fb(x, r, weight)
    else:
        GUARD[0] += 1
        try:
            y = _dispatch(f"fused_add_rmsnorm_h{h}", (x, r, weight), fb)
        finally:
            GUARD[0] -= 1
    # Written back after the solution ran: it read the original input and residual.
    residual.add_(input)
    input.copy_(y.reshape(input.shape))


def _hf_llama_rmsnorm():
    mod = sys.modules.get("transformers.models.llama.modeling_llama")
    return getattr(mod, "LlamaRMSNorm", None) if mod is not None else None


def patch_llama():
    """Imports transformers' Llama and registers LlamaRMSNorm (F.linear is patched for every model)."""
    from transformers.models.llama import modeling_llama  # noqa: PLC0415 - only where transformers is

    register_rmsnorm_class(modeling_llama.LlamaRMSNorm)
    return modeling_llama.LlamaRMSNorm


def install():
    """Patches every adapter target present: F.linear, F.rms_norm (torch >= 2.4), the registered
    RMSNorm classes, transformers' LlamaRMSNorm when transformers is already imported, and
    flashinfer.norm.fused_add_rmsnorm when flashinfer is."""
    patch(F, "linear", _make_linear)
    if hasattr(F, "rms_norm"):
        patch(F, "rms_norm", _make_rms_norm)
    llama = _hf_llama_rmsnorm()
    if llama is not None and llama not in _rms_classes:
        _rms_classes[llama] = ("variance_epsilon", "weight")
    for cls, (eps_attr, weight_attr) in _rms_classes.items():
        patch(cls, "forward", _make_rms_forward(eps_attr, weight_attr))
    fi_norm = sys.modules.get("flashinfer.norm")
    if fi_norm is not None and hasattr(fi_norm, "fused_add_rmsnorm"):
        patch(fi_norm, "fused_add_rmsnorm", lambda _orig: fused_add_rmsnorm)


def acquire():
    """A runtime started: install the adapters when it is the first."""
    if _refs[0] == 0:
        install()
    _refs[0] += 1


def release():
    """A runtime stopped: restore the originals when it was the last."""
    _refs[0] = max(0, _refs[0] - 1)
    if _refs[0] == 0:
        unpatch_all()
