"""FlashInfer wrapper: BatchDecodeWithPagedKVCacheWrapper (NHD layout), planned on every call
(the plan depends on kv_indptr's values, which may change between calls). Returns (output, lse);
FlashInfer's lse is base 2 like the definition's. Raises ImportError when flashinfer is not
importable. Value-returning."""
import torch

try:
    import flashinfer
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(f"flashinfer unavailable: {e}") from e

_WS = {}


def run(q, k_cache, v_cache, kv_indptr, kv_indices, *rest):
    if len(rest) == 1:
        (sm_scale,) = rest
        last = None
    elif len(rest) == 2:
        last, sm_scale = rest
    else:
        raise TypeError("expected 6 or 7 inputs")
    bsz, hq, d = q.shape
    page_size, hkv = k_cache.shape[1], k_cache.shape[2]
    if last is None:
        last = torch.full((bsz,), page_size, dtype=torch.int32, device=q.device)
    ws = _WS.get(q.device)
    if ws is None:
        ws = torch.empty(128 * 1024 * 1024, dtype=torch.uint8, device=q.device)
        _WS[q.device] = ws
    w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
    w.plan(kv_indptr, kv_indices, last, hq, hkv, d, page_size, sm_scale=float(sm_scale),
           q_data_type=q.dtype, kv_data_type=k_cache.dtype)
    out, lse = w.run(q, (k_cache, v_cache), return_lse=True)
    return out, lse
