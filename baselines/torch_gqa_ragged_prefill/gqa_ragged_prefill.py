"""Baseline: causal GQA ragged prefill in plain PyTorch.

One host sync reads the indptr arrays; per sequence and query chunk: fp32 logits (GQA-grouped
batched matmul, no repeat_interleave), a bottom-right causal mask, a base-2 logsumexp and a bf16
P @ V. Value-returning: returns (output, lse). Rows that see no key: output 0, lse -inf."""
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


def run(q, k, v, qo_indptr, kv_indptr, sm_scale):
    total_q, hq, d = q.shape
    out = torch.zeros((total_q, hq, d), dtype=q.dtype, device=q.device)
    lse = torch.full((total_q, hq), _NO_KEY_LSE, dtype=torch.float32, device=q.device)
    qo = qo_indptr.tolist()
    kvp = kv_indptr.tolist()
    for b in range(len(qo) - 1):
        q0, q1, k0, k1 = qo[b], qo[b + 1], kvp[b], kvp[b + 1]
        if q1 <= q0 or k1 <= k0:
            continue
        _attend(q[q0:q1], k[k0:k1], v[k0:k1], sm_scale, out[q0:q1], lse[q0:q1])
    return out, lse
