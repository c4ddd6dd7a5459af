"""tracepipe Triton causal GQA prefill over ragged K/V (head_dim 128, bf16).

DPS entry point: run(q, k, v, qo_indptr, kv_indptr, sm_scale, output, lse)

Triton FlashAttention-2 style kernel: a program owns BLOCK_M packed query rows (token i, head g of
the kv head's group; row = i*G + g) of one sequence and one kv head, so the G query heads share
each K/V tile; it streams BLOCK_N-token K/V tiles with tl.dot (tensor cores) and an online base-2
softmax. Causal: query i of a sequence with qlen queries and kvlen keys sees keys j <= i + kvlen - qlen;
tiles past the program's last visible key are skipped and only tiles crossing the diagonal are
masked. The (sequence, tile) of a program is found on the device (no host sync). Rows that see no
key get output 0 and lse -inf (the reference's lse; its output there is NaN, undefined). lse is base 2.
Parameters (tp_params.py): BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES."""
import math
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"BLOCK_M": 64, "BLOCK_N": 64, "NUM_WARPS": 4, "NUM_STAGES": 2}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()
_LOG2E = 1.4426950408889634


@triton.jit
def _kv_rows(KVP, IDX, b, offs, num_pages, PAGE: tl.constexpr, PAGED: tl.constexpr):
    """Row numbers (token slots) in the K/V tensor of the sequence's kv tokens `offs`, and
    whether each is readable (a page id outside the cache reads nothing: zero K/V)."""
    kv0 = tl.load(KVP + b)
    if PAGED:
        page = tl.load(IDX + kv0 + offs // PAGE)
        good = (page >= 0) & (page < num_pages)
        rows = tl.where(good, page, 0).to(tl.int64) * PAGE + offs % PAGE
    else:
        rows = (kv0 + offs).to(tl.int64)
        good = offs >= 0
    return rows, good


@triton.jit
def _prefill_kernel(Q, K, V, QO, KVP, IDX, LAST, O, LSE, scale_log2, B, HKV, num_pages,
                    G: tl.constexpr, PAGE: tl.constexpr, PAGED: tl.constexpr,
                    HAS_LAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    kvh = tl.program_id(0)
    pid = tl.program_id(1)
    # (sequence, query tile) of this program: scan the per-sequence tile counts
    cum = 0
    sel_b = -1
    sel_t = 0
    for bb in range(0, B):
        ql_b = tl.load(QO + bb + 1) - tl.load(QO + bb)
        nt = (ql_b * G + BLOCK_M - 1) // BLOCK_M
        hit = (pid >= cum) & (pid < cum + nt)
        sel_b = tl.where(hit, bb, sel_b)
        sel_t = tl.where(hit, cum + nt - 1 - pid, sel_t)  # heaviest (last) tile first
        cum += nt
    if sel_b >= 0:
        b = sel_b
        HQ = HKV * G
        q0 = tl.load(QO + b)
        qlen = tl.load(QO + b + 1) - q0
        if PAGED:
            np_ = tl.load(KVP + b + 1) - tl.load(KVP + b)
            if HAS_LAST:
                last = tl.load(LAST + b)
            else:
                last = PAGE
            kvlen = tl.where(np_ > 0, (np_ - 1) * PAGE + last, 0)
        else:
            kvlen = tl.load(KVP + b + 1) - tl.load(KVP + b)
        kvlen = tl.maximum(kvlen, 0)
        delta = kvlen - qlen
        m0 = sel_t * BLOCK_M
        tok_min = m0 // G
        tok_max = tl.minimum((m0 + BLOCK_M - 1) // G, qlen - 1)
        kv_end = tl.maximum(tl.minimum(kvlen, tok_max + delta + 1), 0)
        kv_full = tl.maximum(tl.minimum(kvlen, tok_min + delta + 1), 0)
        full_end = (kv_full // BLOCK_N) * BLOCK_N  # tiles before this need no mask

        r = m0 + tl.arange(0, BLOCK_M)
        tok = r // G
        g = r % G
        rvalid = tok < qlen
        d = tl.arange(0, 128)
        qrow = ((q0 + tok).to(tl.int64) * HQ + kvh * G + g) * 128
        q = tl.load(Q + qrow[:, None] + d[None, :], mask=rvalid[:, None], other=0.0)

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, 128], tl.float32)
        kvh_off = kvh * 128
        for start in range(0, full_end, BLOCK_N):
            offs = start + tl.arange(0, BLOCK_N)
            rows, good = _kv_rows(KVP, IDX, b, offs, num_pages, PAGE, PAGED)
            ptr = (rows * HKV * 128 + kvh_off)[:, None] + d[None, :]
            k = tl.load(K + ptr, mask=good[:, None], other=0.0)
            v = tl.load(V + ptr, mask=good[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale_log2
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(tl.bfloat16), v)
            m_i = m_new
        for start in range(full_end, kv_end, BLOCK_N):
            offs = start + tl.arange(0, BLOCK_N)
            kmask = offs < kv_end
            rows, good = _kv_rows(KVP, IDX, b, tl.where(kmask, offs, 0), num_pages, PAGE, PAGED)
            ptr = (rows * HKV * 128 + kvh_off)[:, None] + d[None, :]
            ld = kmask & good
            k = tl.load(K + ptr, mask=ld[:, None], other=0.0)
            v = tl.load(V + ptr, mask=ld[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale_log2
            ok = (offs[None, :] <= tok[:, None] + delta) & kmask[None, :]
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_use)
            p = tl.exp2(s - m_use[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(tl.bfloat16), v)
            m_i = m_new
        has = l_i > 0
        l_safe = tl.where(has, l_i, 1.0)
        o = acc / l_safe[:, None]
        lse = tl.where(has, m_i + tl.log2(l_safe), float("-inf"))
        orow = (q0 + tok).to(tl.int64) * HQ + kvh * G + g
        tl.store(O + orow[:, None] * 128 + d[None, :], o.to(tl.bfloat16), mask=rvalid[:, None])
        tl.store(LSE + orow, lse, mask=rvalid)


def _prefill(q, k, v, qo_indptr, kv_indptr, kv_indices, last, sm_scale, output, lse, paged):
    assert q.dim() == 3 and q.shape[2] == 128 and k.shape[-1] == 128 and v.shape == k.shape
    assert q.dtype == k.dtype == v.dtype == output.dtype == torch.bfloat16
    assert lse.dtype == torch.float32 and qo_indptr.dtype == kv_indptr.dtype == torch.int32
    assert output.is_contiguous() and lse.is_contiguous()
    assert qo_indptr.numel() == kv_indptr.numel() >= 1
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    qo_indptr, kv_indptr = qo_indptr.contiguous(), kv_indptr.contiguous()
    total_q, hq, _ = q.shape
    if paged:
        page, hkv, num_pages = k.shape[1], k.shape[2], k.shape[0]
        kv_indices = kv_indices.contiguous()
    else:
        page, hkv, num_pages = 1, k.shape[1], 0
        kv_indices = kv_indptr  # unused
    assert hq % hkv == 0 and hq >= hkv
    bsz = qo_indptr.numel() - 1
    if total_q == 0 or bsz == 0:
        return
    if k.numel() == 0:  # empty cache (no readable page): every K/V load is masked off
        k = v = q
    if kv_indices.numel() == 0:  # no page at all: never read, but keep a non-null pointer
        kv_indices = kv_indptr
    G = hq // hkv
    bm = _P["BLOCK_M"]
    tiles = -(-total_q * G // bm) + bsz  # upper bound of sum over sequences of ceil(qlen*G/bm)
    has_last = last is not None
    last_t = last.contiguous() if has_last else qo_indptr
    if isinstance(sm_scale, torch.Tensor):
        sm_scale = float(sm_scale.item())
    assert math.isfinite(float(sm_scale))
    _prefill_kernel[(hkv, tiles)](
        q, k, v, qo_indptr, kv_indptr, kv_indices, last_t, output, lse,
        float(sm_scale) * _LOG2E, bsz, hkv, num_pages,
        G=G, PAGE=page, PAGED=paged, HAS_LAST=has_last, BLOCK_M=bm, BLOCK_N=_P["BLOCK_N"],
        num_warps=_P["NUM_WARPS"], num_stages=_P["NUM_STAGES"])


def run(q, k, v, qo_indptr, kv_indptr, sm_scale, output, lse):
    assert k.dim() == 3
    _prefill(q, k, v, qo_indptr, kv_indptr, None, None, sm_scale, output, lse, False)
