"""tracepipe Triton MLA paged decode (DeepSeek-V3 shape: ckv 512 + kpe 64, bf16, 8 or 16 heads).

DPS entry point serving both definition families:
  page_size 1 : run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, sm_scale,
                    output, lse)
  page_size N : run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, kv_last_page_len,
                    sm_scale, output, lse)
lse is base 2; an empty sequence gives output 0 and lse -inf (as the reference).

BALANCED 0 (default): per-sequence chunks of about total / (num_sms * ITEMS_PER_SM) tokens, one
program per (sequence, chunk). BALANCED 1: the concatenated KV of the whole batch is cut into
num_sms * BAL_PROGS equal pieces (>= MIN_CHUNK tokens); one program per piece, which may span
several sequences. Either way the work is found with a vectorised scan of the lengths on the
device (no host sync). A program loads
each KV token once and computes all heads with tensor-core dots (S = q_nope ckv^T + q_pe kpe^T,
online softmax, O += P ckv); split sequences are combined by a merge kernel. Parameters
(tp_params.py): BLOCK_N, NUM_WARPS, NUM_STAGES, MIN_CHUNK, BALANCED, BAL_PROGS, ITEMS_PER_SM."""
import math
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"BLOCK_N": 64, "NUM_WARPS": 4, "NUM_STAGES": 2, "MIN_CHUNK": 256, "ITEMS_PER_SM": 2,
          "BALANCED": 0, "BAL_PROGS": 2}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()
_LOG2E = 1.4426950408889634


@triton.jit
def _scan(INDPTR, LAST, B, page_size, chunk, HAS_LAST: tl.constexpr, BLOCK_B: tl.constexpr):
    """Per sequence: first page, length, number of chunks (>= 1) and inclusive prefix of chunks."""
    offs = tl.arange(0, BLOCK_B)
    bm = offs < B
    ip0 = tl.load(INDPTR + offs, mask=bm, other=0)
    ip1 = tl.load(INDPTR + offs + 1, mask=bm, other=0)
    np_ = ip1 - ip0
    if HAS_LAST:
        last = tl.load(LAST + offs, mask=bm, other=0)
        last = tl.minimum(tl.maximum(last, 0), page_size)
    else:
        last = tl.zeros([BLOCK_B], tl.int32) + page_size
    ln = tl.where(np_ > 0, (np_ - 1) * page_size + last, 0)
    ln = tl.maximum(ln, 0)
    ns = tl.where(bm, tl.maximum((ln + chunk - 1) // chunk, 1), 0)
    incl = tl.cumsum(ns, 0)
    return offs, ip0, ln, ns, incl


@triton.jit(do_not_specialize=["B"])
def _mla_split_kernel(QN, QP, CKV, KPE, INDPTR, INDICES, LAST, O, LSE, OP, LSEP, scale_log2,
                      B, H, page_size, chunk, HAS_LAST: tl.constexpr, BLOCK_B: tl.constexpr,
                      HP: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs_b, ip0, ln_v, ns_v, incl = _scan(INDPTR, LAST, B, page_size, chunk, HAS_LAST, BLOCK_B)
    total = tl.sum(ns_v, 0)
    if pid < total:
        b = tl.sum((incl <= pid).to(tl.int32), 0)
        sel = offs_b == b
        start = tl.sum(tl.where(sel, incl - ns_v, 0), 0)
        nsplit = tl.sum(tl.where(sel, ns_v, 0), 0)
        p0 = tl.sum(tl.where(sel, ip0, 0), 0)
        ln = tl.sum(tl.where(sel, ln_v, 0), 0)
        split = pid - start
        t0 = split * chunk
        t1 = tl.minimum(ln, t0 + chunk)

        _segment(QN, QP, CKV, KPE, INDICES, O, LSE, OP, LSEP, scale_log2, H, page_size, b, p0,
                 t0, t1, nsplit, pid, HP, BLOCK_N)


@triton.jit
def _segment(QN, QP, CKV, KPE, INDICES, O, LSE, OP, LSEP, scale_log2, H, page_size, b, p0, t0, t1,
             nsplit, slot, HP: tl.constexpr, BLOCK_N: tl.constexpr):
    """Tokens [t0, t1) of sequence b (pages from INDICES[p0:]): all heads, online softmax; writes
    output + lse (nsplit == 1) or the fp32 partial of slot `slot`."""
    h = tl.arange(0, HP)
    hm = h < H
    dc = tl.arange(0, 512)
    dp = tl.arange(0, 64)
    qrow = (b * H + h).to(tl.int64)
    qn = tl.load(QN + qrow[:, None] * 512 + dc[None, :], mask=hm[:, None], other=0.0)
    qp = tl.load(QP + qrow[:, None] * 64 + dp[None, :], mask=hm[:, None], other=0.0)
    m_i = tl.full([HP], float("-inf"), tl.float32)
    l_i = tl.zeros([HP], tl.float32)
    acc = tl.zeros([HP, 512], tl.float32)
    for s0 in range(t0, t1, BLOCK_N):
        offs = s0 + tl.arange(0, BLOCK_N)
        tmask = offs < t1
        page = tl.load(INDICES + p0 + offs // page_size, mask=tmask, other=0)
        row = page.to(tl.int64) * page_size + offs % page_size
        kc = tl.load(CKV + row[:, None] * 512 + dc[None, :], mask=tmask[:, None], other=0.0)
        kp = tl.load(KPE + row[:, None] * 64 + dp[None, :], mask=tmask[:, None], other=0.0)
        s = tl.dot(qn, tl.trans(kc))
        s = tl.dot(qp, tl.trans(kp), s)
        s = s * scale_log2
        s = tl.where(tmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p.to(tl.bfloat16), kc, acc * alpha[:, None])
        m_i = m_new
    has = l_i > 0
    o = acc / tl.where(has, l_i, 1.0)[:, None]
    ls = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    if nsplit == 1:
        tl.store(O + qrow[:, None] * 512 + dc[None, :], o.to(tl.bfloat16), mask=hm[:, None])
        tl.store(LSE + qrow, ls, mask=hm)
    else:
        prow = (slot * H + h).to(tl.int64)
        tl.store(OP + prow[:, None] * 512 + dc[None, :], o, mask=hm[:, None])
        tl.store(LSEP + prow, ls, mask=hm)


@triton.jit
def _pieces(ln_v, G, MIN_CHUNK: tl.constexpr, BLOCK_N: tl.constexpr):
    """BALANCED: exclusive starts of the sequences in the concatenated KV, the piece length C
    (>= MIN_CHUNK, a multiple of BLOCK_N) and the number of non-empty pieces."""
    incl = tl.cumsum(ln_v, 0)
    st_v = incl - ln_v
    total = tl.sum(ln_v, 0)
    c = tl.maximum((total + G - 1) // G, MIN_CHUNK)
    c = (c + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    geff = tl.where(total > 0, (total + c - 1) // c, 1)
    return st_v, incl, total, c, geff


@triton.jit(do_not_specialize=["B"])
def _mla_bal_kernel(QN, QP, CKV, KPE, INDPTR, INDICES, LAST, O, LSE, OP, LSEP, scale_log2,
                    B, H, page_size, G, HAS_LAST: tl.constexpr, BLOCK_B: tl.constexpr,
                    HP: tl.constexpr, BLOCK_N: tl.constexpr, MIN_CHUNK: tl.constexpr):
    """One program per equal piece [g*C, (g+1)*C) of the concatenated KV of the batch; the piece
    covers the contiguous sequences [b_lo, b_hi]; partial slot of (g, b) = g + b."""
    g = tl.program_id(0)
    offs_b, ip0, ln_v, ns_v, incl0 = _scan(INDPTR, LAST, B, page_size, 1, HAS_LAST, BLOCK_B)
    st_v, en_v, total, C, geff = _pieces(ln_v, G, MIN_CHUNK, BLOCK_N)
    if g < geff:
        lo = g * C
        hi = tl.minimum(lo + C, total)
        bm = offs_b < B
        own = tl.minimum(st_v // C, geff - 1)
        mem = tl.where(en_v > st_v, (st_v < hi) & (en_v > lo), own == g) & bm
        b_lo = tl.min(tl.where(mem, offs_b, BLOCK_B), 0)
        b_hi = tl.max(tl.where(mem, offs_b, -1), 0)
        for b in range(b_lo, b_hi + 1):
            sel = offs_b == b
            st = tl.sum(tl.where(sel, st_v, 0), 0)
            en = tl.sum(tl.where(sel, en_v, 0), 0)
            p0 = tl.sum(tl.where(sel, ip0, 0), 0)
            nonempty = en > st
            t0 = tl.where(nonempty, tl.maximum(lo, st) - st, 0)
            t1 = tl.where(nonempty, tl.minimum(hi, en) - st, 0)
            gfirst = st // C
            nsplit = tl.where(nonempty, (en - 1) // C - gfirst + 1, 1)
            _segment(QN, QP, CKV, KPE, INDICES, O, LSE, OP, LSEP, scale_log2, H, page_size, b, p0,
                     t0, t1, nsplit, g + b, HP, BLOCK_N)


@triton.jit(do_not_specialize=["B"])
def _mla_bal_merge_kernel(INDPTR, LAST, O, LSE, OP, LSEP, B, H, page_size, G,
                          HAS_LAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
                          MIN_CHUNK: tl.constexpr):
    h = tl.program_id(0)
    b = tl.program_id(1)
    offs_b, ip0, ln_v, ns_v, incl0 = _scan(INDPTR, LAST, B, page_size, 1, HAS_LAST, BLOCK_B)
    st_v, en_v, total, C, geff = _pieces(ln_v, G, MIN_CHUNK, BLOCK_N)
    sel = offs_b == b
    st = tl.sum(tl.where(sel, st_v, 0), 0)
    en = tl.sum(tl.where(sel, en_v, 0), 0)
    ns = tl.where(en > st, (en - 1) // C - st // C + 1, 1)
    _merge_one(O, LSE, OP, LSEP, H, h, b, st // C + b, ns)


@triton.jit
def _merge_one(O, LSE, OP, LSEP, H, h, b, start, ns):
    """Combine the ns partials (slots start .. start+ns-1) of head h of sequence b."""
    if ns > 1:
        d = tl.arange(0, 512)
        base = (start * H + h).to(tl.int64)
        m = tl.load(LSEP + base)
        for s in range(1, ns):
            m = tl.maximum(m, tl.load(LSEP + base + s * H))
        wsum = tl.zeros([512], tl.float32)  # the weight sum, replicated over d
        o = tl.zeros([512], tl.float32)
        for s in range(0, ns):
            ls = tl.load(LSEP + base + s * H)
            w = tl.where(ls == float("-inf"), 0.0, tl.exp2(ls - m))
            wsum += w
            o += w * tl.load(OP + (base + s * H) * 512 + d)
        ok = wsum > 0
        out_row = (b * H + h).to(tl.int64)
        tl.store(O + out_row * 512 + d, (o / tl.where(ok, wsum, 1.0)).to(tl.bfloat16))
        lse_v = tl.where(ok, m + tl.log2(tl.where(ok, wsum, 1.0)), float("-inf"))
        tl.store(LSE + out_row + d * 0, lse_v, mask=d == 0)


@triton.jit(do_not_specialize=["B"])
def _mla_merge_kernel(INDPTR, LAST, O, LSE, OP, LSEP, B, H, page_size, chunk,
                      HAS_LAST: tl.constexpr, BLOCK_B: tl.constexpr):
    h = tl.program_id(0)
    b = tl.program_id(1)
    offs_b, ip0, ln_v, ns_v, incl = _scan(INDPTR, LAST, B, page_size, chunk, HAS_LAST, BLOCK_B)
    sel = offs_b == b
    ns = tl.sum(tl.where(sel, ns_v, 0), 0)
    start = tl.sum(tl.where(sel, incl - ns_v, 0), 0)
    _merge_one(O, LSE, OP, LSEP, H, h, b, start, ns)


_SMS = {}
_SCRATCH = {}


def _num_sms(dev):
    if dev not in _SMS:
        _SMS[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    return _SMS[dev]


def _scratch(dev, n_o, n_l):
    """fp32 partial buffers, kept between calls (grow-only) to save two allocations per call."""
    b = _SCRATCH.get(dev)
    if b is None or b[0].numel() < n_o or b[1].numel() < n_l:
        b = (torch.empty(max(n_o, 1), dtype=torch.float32, device=dev),
             torch.empty(max(n_l, 1), dtype=torch.float32, device=dev))
        _SCRATCH[dev] = b
    return b


def _mla(q_nope, q_pe, ckv, kpe, kv_indptr, kv_indices, last, sm_scale, output, lse):
    assert q_nope.dim() == 3 and q_nope.shape[2] == 512 and q_pe.shape[2] == 64
    assert ckv.dim() == 3 and ckv.shape[2] == 512 and kpe.shape[2] == 64
    assert q_nope.dtype == q_pe.dtype == ckv.dtype == kpe.dtype == output.dtype == torch.bfloat16
    assert lse.dtype == torch.float32 and kv_indptr.dtype == kv_indices.dtype == torch.int32
    assert output.is_contiguous() and lse.is_contiguous()
    q_nope, q_pe, ckv, kpe = q_nope.contiguous(), q_pe.contiguous(), ckv.contiguous(), kpe.contiguous()
    kv_indptr, kv_indices = kv_indptr.contiguous(), kv_indices.contiguous()
    bsz, H, _ = q_nope.shape
    assert 1 <= H <= 16 and kv_indptr.numel() == bsz + 1
    if bsz == 0:
        return
    dev = q_nope.device
    page_size = ckv.shape[1]
    block_n = _P["BLOCK_N"]
    min_chunk = _P["MIN_CHUNK"]
    total = kv_indices.numel() * page_size  # >= the sum of the sequence lengths
    has_last = last is not None
    last_t = last.contiguous() if has_last else kv_indptr
    block_b = max(128, triton.next_power_of_2(bsz))  # few specialisations
    scale_log2 = float(sm_scale) * _LOG2E
    if _P["BALANCED"]:
        grid = _num_sms(dev) * _P["BAL_PROGS"]
        cap = grid + bsz
        need_merge = total > min_chunk
        op, lsep = _scratch(dev, cap * H * 512, cap * H) if need_merge else (lse, lse)
        _mla_bal_kernel[(grid,)](
            q_nope, q_pe, ckv, kpe, kv_indptr, kv_indices, last_t, output, lse, op, lsep,
            scale_log2, bsz, H, page_size, grid, HAS_LAST=has_last, BLOCK_B=block_b, HP=16,
            BLOCK_N=block_n, MIN_CHUNK=min_chunk, num_warps=_P["NUM_WARPS"],
            num_stages=_P["NUM_STAGES"])
        if need_merge:
            _mla_bal_merge_kernel[(H, bsz)](kv_indptr, last_t, output, lse, op, lsep, bsz, H,
                                            page_size, grid, HAS_LAST=has_last, BLOCK_B=block_b,
                                            BLOCK_N=block_n, MIN_CHUNK=min_chunk, num_warps=4)
        return
    target = _num_sms(dev) * _P["ITEMS_PER_SM"]
    chunk = max(min_chunk, -(-total // target))
    chunk = -(-chunk // block_n) * block_n
    cap = -(-total // chunk) + bsz
    need_merge = total > chunk
    op, lsep = _scratch(dev, cap * H * 512, cap * H) if need_merge else (lse, lse)
    _mla_split_kernel[(cap,)](
        q_nope, q_pe, ckv, kpe, kv_indptr, kv_indices, last_t, output, lse, op, lsep, scale_log2,
        bsz, H, page_size, chunk, HAS_LAST=has_last, BLOCK_B=block_b, HP=16, BLOCK_N=block_n,
        num_warps=_P["NUM_WARPS"], num_stages=_P["NUM_STAGES"])
    if need_merge:
        _mla_merge_kernel[(H, bsz)](kv_indptr, last_t, output, lse, op, lsep, bsz, H, page_size,
                                    chunk, HAS_LAST=has_last, BLOCK_B=block_b, num_warps=4)


def run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, *rest):
    """(…, sm_scale, output, lse) for page_size 1; (…, kv_last_page_len, sm_scale, output, lse)
    otherwise."""
    if len(rest) == 3:
        sm_scale, output, lse = rest
        last = None
    elif len(rest) == 4:
        last, sm_scale, output, lse = rest
    else:
        raise TypeError(f"mla_paged_decode.run: expected 9 or 10 arguments, got {6 + len(rest)}")
    if isinstance(sm_scale, torch.Tensor):
        sm_scale = float(sm_scale.item())
    assert math.isfinite(float(sm_scale))
    _mla(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, last, sm_scale, output, lse)
