"""Baseline: GQA paged decode in plain PyTorch, vectorised over the batch.

Tokens are gathered into a padded [batch, max_len] layout (one host sync reads the lengths),
then scores, a masked base-2 log-sum-exp and the softmax-weighted sum of V are computed in fp32
with batched matmuls. Serves page_size 1 (no kv_last_page_len) and paged definitions.
Value-returning: returns (output, lse)."""
import math

import torch


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
    g = hq // hkv
    dev = q.device
    out = torch.zeros((bsz, hq, d), dtype=q.dtype, device=dev)
    lse = torch.full((bsz, hq), float("-inf"), dtype=torch.float32, device=dev)
    if bsz == 0:
        return out, lse
    npages = (kv_indptr[1:] - kv_indptr[:-1]).long()
    if last is None:
        last_l = torch.full_like(npages, page_size)
    else:
        last_l = last.long()
    lens = torch.where(npages > 0, (npages - 1) * page_size + last_l, torch.zeros_like(npages))
    lens = lens.clamp(min=0)
    max_len = int(lens.max().item())
    if max_len == 0:
        return out, lse
    t = torch.arange(max_len, device=dev)
    valid = t[None, :] < lens[:, None]  # [B, L]
    page_pos = kv_indptr[:-1].long()[:, None] + t[None, :] // page_size
    page_pos = torch.where(valid, page_pos, torch.zeros_like(page_pos))
    pages = kv_indices.long()[page_pos.clamp(max=max(kv_indices.numel() - 1, 0))]
    slots = pages * page_size + t[None, :] % page_size  # [B, L]
    kf = k_cache.reshape(-1, hkv, d)[slots]  # [B, L, Hkv, D]
    vf = v_cache.reshape(-1, hkv, d)[slots]
    qf = q.float().view(bsz, hkv, g, d)
    s = torch.matmul(qf, kf.float().permute(0, 2, 3, 1)) * float(sm_scale)  # [B, Hkv, G, L]
    s = s.masked_fill(~valid[:, None, None, :], float("-inf"))
    l_nat = torch.logsumexp(s, dim=-1)  # [B, Hkv, G]
    p = torch.exp(s - l_nat[..., None]).nan_to_num(0.0)
    o = torch.matmul(p, vf.float().permute(0, 2, 1, 3))  # [B, Hkv, G, D]
    out = o.reshape(bsz, hq, d).to(q.dtype)
    lse = (l_nat / math.log(2.0)).reshape(bsz, hq)
    return out, lse
