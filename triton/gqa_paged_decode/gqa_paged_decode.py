"""tracepipe Triton GQA paged decode (head_dim 64, 128 or 256, bf16), split-KV with a merge kernel.

DPS entry point serving both definition families:
  page_size 1 : run(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale, output, lse)
  page_size N : run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale,
                    output, lse)
lse is base 2; an empty sequence gives output 0 and lse -inf (as the reference).
Each program handles (split, kv head, sequence) and all G query heads of that kv head with
tensor-core dots (the G rows are padded to 16); the head dim D is a compile-time constant, one
specialisation per definition. Parameters (tp_params.py): BLOCK_N, NUM_WARPS,
NUM_STAGES, MIN_CHUNK."""
import math
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"BLOCK_N": 64, "NUM_WARPS": 4, "NUM_STAGES": 2, "MIN_CHUNK": 256}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()
_LOG2E = 1.4426950408889634


@triton.jit
def _seq_split(INDPTR, LAST, b, page_size, max_splits, HAS_LAST: tl.constexpr,
               MIN_CHUNK: tl.constexpr):
    p0 = tl.load(INDPTR + b)
    np_ = tl.load(INDPTR + b + 1) - p0
    if HAS_LAST:
        last = tl.load(LAST + b)
    else:
        last = page_size
    ln = tl.where(np_ > 0, (np_ - 1) * page_size + last, 0)
    ln = tl.maximum(ln, 0)
    n0 = tl.minimum(tl.maximum((ln + MIN_CHUNK - 1) // MIN_CHUNK, 1), max_splits)
    chunk = tl.maximum((ln + n0 - 1) // n0, 1)
    nsplit = tl.where(ln > 0, (ln + chunk - 1) // chunk, 1)
    return p0, ln, chunk, nsplit


@triton.jit
def _decode_split_kernel(Q, K, V, INDPTR, INDICES, LAST, O, LSE, OP, LSEP, scale_log2,
                         page_size, HKV, max_splits, G: tl.constexpr, GP: tl.constexpr,
                         D: tl.constexpr, HAS_LAST: tl.constexpr, BLOCK_N: tl.constexpr,
                         MIN_CHUNK: tl.constexpr):
    split = tl.program_id(0)
    kvh = tl.program_id(1)
    b = tl.program_id(2)
    p0, ln, chunk, nsplit = _seq_split(INDPTR, LAST, b, page_size, max_splits, HAS_LAST,
                                       MIN_CHUNK)
    if split < nsplit:
        HQ = HKV * G
        t0 = split * chunk
        t1 = tl.minimum(ln, t0 + chunk)
        d = tl.arange(0, D)
        g = tl.arange(0, GP)
        gmask = g < G
        q_rows = (b * HQ + kvh * G + g).to(tl.int64)
        q = tl.load(Q + q_rows[:, None] * D + d[None, :], mask=gmask[:, None], other=0.0)
        m_i = tl.full([GP], float("-inf"), tl.float32)
        l_i = tl.zeros([GP], tl.float32)
        acc = tl.zeros([GP, D], tl.float32)
        for start in range(t0, t1, BLOCK_N):
            offs = start + tl.arange(0, BLOCK_N)
            tmask = offs < t1
            page = tl.load(INDICES + p0 + offs // page_size, mask=tmask, other=0)
            slot = offs % page_size
            row = ((page.to(tl.int64) * page_size + slot) * HKV + kvh) * D
            k = tl.load(K + row[:, None] + d[None, :], mask=tmask[:, None], other=0.0)
            v = tl.load(V + row[:, None] + d[None, :], mask=tmask[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale_log2
            s = tl.where(tmask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(tl.bfloat16), v)
            m_i = m_new
        has = l_i > 0
        o = acc / tl.where(has, l_i, 1.0)[:, None]
        ls = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
        if nsplit == 1:
            tl.store(O + q_rows[:, None] * D + d[None, :], o.to(tl.bfloat16),
                     mask=gmask[:, None])
            tl.store(LSE + q_rows, ls, mask=gmask)
        else:
            prow = ((b * max_splits + split) * HQ + kvh * G + g).to(tl.int64)
            tl.store(OP + prow[:, None] * D + d[None, :], o, mask=gmask[:, None])
            tl.store(LSEP + prow, ls, mask=gmask)


@triton.jit
def _decode_merge_kernel(INDPTR, LAST, O, LSE, OP, LSEP, page_size, HQ, max_splits,
                         D: tl.constexpr, HAS_LAST: tl.constexpr, MIN_CHUNK: tl.constexpr):
    h = tl.program_id(0)
    b = tl.program_id(1)
    p0, ln, chunk, nsplit = _seq_split(INDPTR, LAST, b, page_size, max_splits, HAS_LAST,
                                       MIN_CHUNK)
    if nsplit > 1:
        d = tl.arange(0, D)
        base = (b * max_splits * HQ + h).to(tl.int64)
        m = tl.load(LSEP + base)
        for s in range(1, nsplit):
            m = tl.maximum(m, tl.load(LSEP + base + s * HQ))
        wsum = tl.zeros([D], tl.float32)  # the weight sum, replicated over d
        o = tl.zeros([D], tl.float32)
        for s in range(0, nsplit):
            ls = tl.load(LSEP + base + s * HQ)
            w = tl.where(ls == float("-inf"), 0.0, tl.exp2(ls - m))
            wsum += w
            o += w * tl.load(OP + (base + s * HQ) * D + d)
        ok = wsum > 0
        out_row = (b * HQ + h).to(tl.int64)
        tl.store(O + out_row * D + d, (o / tl.where(ok, wsum, 1.0)).to(tl.bfloat16))
        lse_v = tl.where(ok, m + tl.log2(tl.where(ok, wsum, 1.0)), float("-inf"))
        tl.store(LSE + out_row + d * 0, lse_v, mask=d == 0)


_SMS = {}


def _num_sms(dev):
    if dev not in _SMS:
        _SMS[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    return _SMS[dev]


def _decode(q, k_cache, v_cache, kv_indptr, kv_indices, last, sm_scale, output, lse):
    assert q.dim() == 3 and k_cache.dim() == 4 and v_cache.shape == k_cache.shape
    D = q.shape[2]
    assert D in (64, 128, 256) and k_cache.shape[3] == D, f"head_dim {D}: the kernel takes 64, 128 or 256"
    assert q.dtype == k_cache.dtype == v_cache.dtype == output.dtype == torch.bfloat16
    assert lse.dtype == torch.float32 and kv_indptr.dtype == kv_indices.dtype == torch.int32
    assert output.is_contiguous() and lse.is_contiguous()
    q, k_cache, v_cache = q.contiguous(), k_cache.contiguous(), v_cache.contiguous()
    kv_indptr, kv_indices = kv_indptr.contiguous(), kv_indices.contiguous()
    bsz, hq, _ = q.shape
    page_size, hkv = k_cache.shape[1], k_cache.shape[2]
    assert hq % hkv == 0
    assert kv_indptr.numel() == bsz + 1
    if bsz == 0:
        return
    G = hq // hkv
    min_chunk = _P["MIN_CHUNK"]
    work = bsz * hkv
    max_splits = max(1, min(-(-_num_sms(q.device) * 4 // work),
                            -(-kv_indices.numel() * page_size // min_chunk), 256))
    if max_splits > 1:
        op = torch.empty(bsz * max_splits * hq * D, dtype=torch.float32, device=q.device)
        lsep = torch.empty(bsz * max_splits * hq, dtype=torch.float32, device=q.device)
    else:
        op, lsep = lse, lse  # unused
    has_last = last is not None
    last_t = last.contiguous() if has_last else kv_indptr
    scale_log2 = float(sm_scale) * _LOG2E
    _decode_split_kernel[(max_splits, hkv, bsz)](
        q, k_cache, v_cache, kv_indptr, kv_indices, last_t, output, lse, op, lsep, scale_log2,
        page_size, hkv, max_splits, G=G, GP=max(16, triton.next_power_of_2(G)), D=D,
        HAS_LAST=has_last, BLOCK_N=_P["BLOCK_N"], MIN_CHUNK=min_chunk,
        num_warps=_P["NUM_WARPS"], num_stages=_P["NUM_STAGES"])
    if max_splits > 1:
        _decode_merge_kernel[(hq, bsz)](kv_indptr, last_t, output, lse, op, lsep, page_size, hq,
                                        max_splits, D=D, HAS_LAST=has_last, MIN_CHUNK=min_chunk,
                                        num_warps=1)


def run(q, k_cache, v_cache, kv_indptr, kv_indices, *rest):
    """(…, sm_scale, output, lse) for page_size 1; (…, kv_last_page_len, sm_scale, output, lse)
    otherwise."""
    if len(rest) == 3:
        sm_scale, output, lse = rest
        last = None
    elif len(rest) == 4:
        last, sm_scale, output, lse = rest
    else:
        raise TypeError(f"gqa_paged_decode.run: expected 8 or 9 arguments, got {5 + len(rest)}")
    if isinstance(sm_scale, torch.Tensor):
        sm_scale = float(sm_scale.item())
    assert math.isfinite(float(sm_scale))
    _decode(q, k_cache, v_cache, kv_indptr, kv_indices, last, sm_scale, output, lse)
