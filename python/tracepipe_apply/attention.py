"""The paged attention API of the decoder: each call names its GQA definition from the shapes
(`gqa_paged_decode_h{q}_kv{kv}_d{d}_ps{p}`, `gqa_paged_prefill_causal_h{q}_kv{kv}_d{d}_ps{p}`) and goes
through apply, with the plain-torch kernels as the fallback. The argument lists are the official
definitions' (kv_last_page_len only when the page size is above 1).

A caller may pass `out=` and `lse=` buffers: the call is then made destination-passing, so a DPS
solution writes straight into them, and a value-returning one (or the fallback) is copied in.
"""

import torch

from . import torch_kernels as K
from .core import NO_KWARGS, dispatch_named


def decode_name(q, k_cache):
    return f"gqa_paged_decode_h{q.shape[1]}_kv{k_cache.shape[2]}_d{q.shape[2]}_ps{k_cache.shape[1]}"


def prefill_name(q, k_cache):
    return f"gqa_paged_prefill_causal_h{q.shape[1]}_kv{k_cache.shape[2]}_d{q.shape[2]}_ps{k_cache.shape[1]}"


def _dps(fn, n_out):
    """A destination-passing form of a value-returning function (for the fallback)."""
    def run(*args):
        res = fn(*args[:-n_out])
        for dst, src in zip(args[-n_out:], res):
            dst.copy_(src)
    return run


def _call(name, args, fb, q, out, lse):
    if out is None and lse is None:
        return dispatch_named(name, args, NO_KWARGS, fb)
    if out is None:
        out = torch.empty_like(q)
    if lse is None:
        lse = torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
    dispatch_named(name, args + (out, lse), NO_KWARGS, _dps(fb, 2))
    return out, lse


def paged_decode(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale, out=None, lse=None):
    """One query token per sequence against its paged KV: (output [B, Hq, D], lse [B, Hq], base 2)."""
    if k_cache.shape[1] == 1:
        args = (q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale)
        fb = K.gqa_paged_decode_ps1
    else:
        args = (q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale)
        fb = K.gqa_paged_decode
    return _call(decode_name(q, k_cache), args, fb, q, out, lse)


def paged_prefill(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last_page_len, sm_scale,
                  out=None, lse=None):
    """Causal ragged queries (qo_indptr) against their paged KV, the queries being the last tokens."""
    if k_cache.shape[1] == 1:
        args = (q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, sm_scale)
        fb = K.gqa_paged_prefill_ps1
    else:
        args = (q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last_page_len, sm_scale)
        fb = K.gqa_paged_prefill
    return _call(prefill_name(q, k_cache), args, fb, q, out, lse)
