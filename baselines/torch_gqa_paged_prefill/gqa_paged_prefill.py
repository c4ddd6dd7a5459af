"""Baseline: causal GQA paged prefill in plain PyTorch.

One host sync reads the index arrays; per sequence the pages are gathered, and per query chunk
fp32 logits (GQA-grouped batched matmul, no repeat_interleave), a bottom-right causal mask, a
base-2 logsumexp and a bf16 P @ V are computed. Serves page_size 1 (no kv_last_page_len) and
paged definitions. Value-returning: returns (output, lse). Rows that see no key: output 0, lse
-inf, as FlashInfer writes them (the reference leaves their output undefined, NaN)."""
import math

import torch

_NO_KEY_LSE = float("-inf")  # lse of a row that sees no key, as in the reference
_CHUNK_ELEMS = 1 << 27  # logits elements per chunk (512 MiB of fp32)


def _attend(q, k, v, sm_scale, out, lse):
    """Causal GQA attention of one sequence: q [nq, Hq, D] bf16, k/v [nkv, Hkv, D] bf16.
    Writes out [nq, Hq, D] and lse [nq, Hq] (views of the batch outputs)."""
    nq, hq, d = q.shape
    nkv, hkv = k.shape[0], k.shape[1]
    g = hq // hkv
    delta = nkv - nq
    kt = k.float().permute(1, 2, 0)  # [Hkv, D, nkv]
    vb = v.permute(1, 0, 2)  # [Hkv, nkv, D] bf16
    kv_pos = torch.arange(nkv, device=q.device)
    step = max(1, _CHUNK_ELEMS // max(1, hq * nkv))
    for c0 in range(0, nq, step):
        c1 = min(nq, c0 + step)
        # rows of one kv head: (token, group head) -> [Hkv, cq*G, D]
        qc = q[c0:c1].float().view(c1 - c0, hkv, g, d).permute(1, 0, 2, 3).reshape(hkv, -1, d)
        s = torch.matmul(qc, kt).mul_(float(sm_scale)).view(hkv, c1 - c0, g, nkv)  # fp32 logits
        q_pos = torch.arange(c0, c1, device=q.device)
        masked = kv_pos[None, :] > (q_pos[:, None] + delta)  # [cq, nkv]
        s.masked_fill_(masked[None, :, None, :], float("-inf"))
        l_nat = torch.logsumexp(s, dim=-1)  # [Hkv, cq, G]
        p = torch.exp(s - l_nat[..., None]).nan_to_num_(0.0)
        o = torch.matmul(p.view(hkv, -1, nkv).to(v.dtype), vb)  # [Hkv, cq*G, D]
        out[c0:c1] = o.view(hkv, c1 - c0, g, d).permute(1, 0, 2, 3).reshape(c1 - c0, hq, d)
        ls = (l_nat / math.log(2.0)).permute(1, 0, 2).reshape(c1 - c0, hq)
        lse[c0:c1] = torch.where(torch.isfinite(ls), ls, torch.full_like(ls, _NO_KEY_LSE))


def run(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, *rest):
    if len(rest) == 1:
        (sm_scale,) = rest
        last = None
    elif len(rest) == 2:
        last, sm_scale = rest
    else:
        raise TypeError("expected 7 or 8 inputs")
    total_q, hq, d = q.shape
    page_size, hkv = k_cache.shape[1], k_cache.shape[2]
    out = torch.zeros((total_q, hq, d), dtype=q.dtype, device=q.device)
    lse = torch.full((total_q, hq), _NO_KEY_LSE, dtype=torch.float32, device=q.device)
    qo = qo_indptr.tolist()
    kvp = kv_indptr.tolist()
    lasts = last.tolist() if last is not None else None
    kf = k_cache.reshape(-1, hkv, d)
    vf = v_cache.reshape(-1, hkv, d)
    idx = kv_indices.long()
    for b in range(len(qo) - 1):
        q0, q1, p0, p1 = qo[b], qo[b + 1], kvp[b], kvp[b + 1]
        if q1 <= q0 or p1 <= p0:
            continue
        nkv = (p1 - p0 - 1) * page_size + (lasts[b] if lasts is not None else page_size)
        if nkv <= 0:
            continue
        t = torch.arange(nkv, device=q.device)
        pages = idx[p0:p1][t // page_size]
        if kf.shape[0] == 0:
            continue  # no cache at all (malformed workload): nothing to attend to
        pages = pages.clamp(0, k_cache.shape[0] - 1)  # keep malformed page ids in bounds
        slots = pages * page_size + t % page_size
        _attend(q[q0:q1], kf[slots], vf[slots], sm_scale, out[q0:q1], lse[q0:q1])
    return out, lse
