"""Baseline: MLA paged decode (ckv 512 + kpe 64) in plain PyTorch, vectorised over the batch.

Tokens are gathered into a padded [batch, max_len] layout (one host sync reads the lengths), the
[ckv | kpe] rows are concatenated so that the logits are one batched fp32 matmul against
[q_nope | q_pe], then a masked base-2 log-sum-exp and the softmax-weighted sum of ckv follow in
fp32. Serves page_size 1 (no kv_last_page_len) and paged definitions. Value-returning:
returns (output, lse)."""
import math

import torch


def run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, *rest):
    if len(rest) == 1:
        (sm_scale,) = rest
        last = None
    elif len(rest) == 2:
        last, sm_scale = rest
    else:
        raise TypeError("expected 7 or 8 inputs")
    bsz, h, dc = q_nope.shape
    page_size = ckv_cache.shape[1]
    dev = q_nope.device
    out = torch.zeros((bsz, h, dc), dtype=q_nope.dtype, device=dev)
    lse = torch.full((bsz, h), float("-inf"), dtype=torch.float32, device=dev)
    if bsz == 0:
        return out, lse
    npages = (kv_indptr[1:] - kv_indptr[:-1]).long()
    if last is None:
        last_l = torch.full_like(npages, page_size)
    else:
        last_l = last.long().clamp(0, page_size)
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
    kc = ckv_cache.reshape(-1, dc)[slots].float()  # [B, L, 512]
    kp = kpe_cache.reshape(-1, kpe_cache.shape[-1])[slots].float()  # [B, L, 64]
    k = torch.cat([kc, kp], dim=-1)  # [B, L, 576]
    q = torch.cat([q_nope, q_pe], dim=-1).float()  # [B, H, 576]
    s = torch.matmul(q, k.transpose(1, 2)) * float(sm_scale)  # [B, H, L]
    s = s.masked_fill(~valid[:, None, :], float("-inf"))
    l_nat = torch.logsumexp(s, dim=-1)  # [B, H]
    p = torch.exp(s - l_nat[..., None]).nan_to_num(0.0)
    o = torch.matmul(p, kc)  # [B, H, 512]
    out = o.to(q_nope.dtype)
    lse = l_nat / math.log(2.0)
    return out, lse
