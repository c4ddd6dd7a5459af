"""tracepipe Triton top-k / top-p / top-k-top-p sampling from probabilities (float32 [B, V]).

DPS entry point serving the three definition families:
  run(probs, top_k:int32[B], samples) | run(probs, top_p:float32[B], samples) (by dtype)
  run(probs, top_k, top_p, samples)
Semantics of the references: k only when 0 < k < V (row renormalised), p <= 0 -> argmax (first
index), p >= 1 -> no top-p, top-p keeps the sorted prefix whose exclusive cumulative mass <= p
(of the top-k-renormalised row).

One program per row. Keys are the float bits of the positive probabilities (they order like the
values). The top-k boundary Tk (k-th largest key) and the top-p boundary (smallest key t with
mass(key > t) <= p) are found by an NT-ary search over the key range: each pass over the row
evaluates NT thresholds at once ([NT, BLOCK] compares), giving count(key >= t) and
mass(key >= t), and narrows the bracket by a factor NT + 1 (the first bracket is [min key, max key];
keys outside the bracket only add known totals, so chunks without keys inside it skip the compares). Ties at a boundary keep r of the c
tied elements in the reference (r from the count/mass above); here each tied element gets weight
T*r/c (the reference marginalised over the order of ties). Then u ~ U(0, M) (tl.rand, seed drawn
per call from torch's CPU generator) and a cumulative-sum pass in index order finds the token.
Parameters (tp_params.py): BLOCK, NT, NUM_WARPS."""
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"BLOCK": 1024, "NT": 16, "NUM_WARPS": 8}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()
_KEY_INF = 0x7F800000


@triton.jit
def _keys_weights(row, offs, V, Tk, tie_w):
    v = tl.load(row + offs, mask=offs < V, other=0.0)
    key = v.to(tl.int32, bitcast=True)
    ok = (v > 0.0) & (key < 0x7F800000)
    key = tl.where(ok, key, 0).to(tl.int64)
    w = tl.where(key > Tk, v, tl.where(key == Tk, tie_w, 0.0))
    w = tl.where(ok, w, 0.0)
    return key, w


@triton.jit
def _ge_stats(row, V, thr, Tk, tie_w, lo, hi, chi, mhi, BLOCK: tl.constexpr, NT: tl.constexpr):
    """count(key >= thr[i]) and weighted mass(key >= thr[i]) for NT thresholds in [lo, hi), given
    chi / mhi = count / mass of the keys >= hi. Only keys inside the bracket [lo, hi) are compared
    against the thresholds; chunks without such keys cost one load and two compares per element."""
    cnt = tl.zeros([NT], dtype=tl.int32)
    mass = tl.zeros([NT], dtype=tl.float32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        key, w = _keys_weights(row, offs, V, Tk, tie_w)
        inb = (key >= lo) & (key < hi)
        if tl.max(inb.to(tl.int32), axis=0) > 0:
            ge = inb[None, :] & (key[None, :] >= thr[:, None])
            cnt += tl.sum(ge.to(tl.int32), axis=1)
            mass += tl.sum(tl.where(ge, w[None, :], 0.0), axis=1)
    return cnt + chi, mass + mhi


@triton.jit
def _pick(vec, sel, default):
    """vec[i] for the one i where sel is true, else default (sel all false)."""
    has = tl.sum(sel.to(tl.int32), axis=0) > 0
    return tl.where(has, tl.sum(tl.where(sel, vec, 0), axis=0), default)


@triton.jit(do_not_specialize=["seed"])
def _sampling_kernel(PROBS, TOPK, TOPP, OUT, V, seed, HAS_K: tl.constexpr, HAS_P: tl.constexpr,
                     BLOCK: tl.constexpr, NT: tl.constexpr):
    pid = tl.program_id(0)
    row = PROBS + pid.to(tl.int64) * V
    if HAS_K:
        k = tl.load(TOPK + pid)
    else:
        k = pid * 0
    if HAS_P:
        p = tl.load(TOPP + pid)
    else:
        p = pid.to(tl.float32) * 0.0 + 1.0
    zero64 = (pid * 0).to(tl.int64)
    if p <= 0.0:
        # argmax, first index of the maximum
        best_v = pid.to(tl.float32) * 0.0 - 1.0
        best_i = pid * 0
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            v = tl.load(row + offs, mask=offs < V, other=-1.0)
            v = tl.where(v == v, v, -1.0)
            cm = tl.max(v, axis=0)
            ci = tl.argmax(v, axis=0, tie_break_left=True)
            upd = cm > best_v
            best_i = tl.where(upd, start + ci, best_i)
            best_v = tl.where(upd, cm, best_v)
        tl.store(OUT + pid, best_i.to(tl.int64))
    else:
        # totals: usable count and mass
        npos = pid * 0
        tot = pid.to(tl.float32) * 0.0
        kmin = zero64 + 0x7F800000
        kmax = zero64
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            key, w = _keys_weights(row, offs, V, zero64, 0.0)
            npos += tl.sum((key > 0).to(tl.int32), axis=0)
            tot += tl.sum(w, axis=0)
            kmin = tl.minimum(kmin, tl.min(tl.where(key > 0, key, 0x7F800000), axis=0))
            kmax = tl.maximum(kmax, tl.max(key, axis=0))
        ii = tl.arange(0, NT).to(tl.int64)
        T = zero64            # boundary key: keys > T keep their value
        tie_w = tot * 0.0     # weight of each element with key == T
        M = tot               # kept mass
        Tk = zero64
        rk = npos * 0
        clo_k = npos
        have_k = (k > 0) & (k < V) & (k < npos)
        if have_k:
            lo = kmin
            hi = kmax + 1
            clo = npos
            chi = npos * 0
            mhi = tot * 0.0
            while hi - lo > 1:
                thr = lo + ((ii + 1) * (hi - lo)) // (NT + 1)
                cnt, mass = _ge_stats(row, V, thr, zero64, 0.0, lo, hi, chi, mhi, BLOCK, NT)
                ntrue = tl.sum((cnt >= k).to(tl.int32), axis=0)
                sel_lo = ii == (ntrue - 1).to(tl.int64)
                sel_hi = ii == ntrue.to(tl.int64)
                lo_n = _pick(thr, sel_lo, lo)
                clo = _pick(cnt, sel_lo, clo)
                hi_n = _pick(thr, sel_hi, hi)
                chi = _pick(cnt, sel_hi, chi)
                mhi = _pick(mass, sel_hi, mhi)
                lo = lo_n
                hi = hi_n
            Tk = lo
            Tv = Tk.to(tl.int32).to(tl.float32, bitcast=True)
            rk = k - chi
            ck = clo - chi
            tie_w = Tv * rk.to(tl.float32) / tl.maximum(ck, 1).to(tl.float32)
            T = Tk
            M = mhi + rk.to(tl.float32) * Tv
            clo_k = clo
        P = tl.where(have_k, p * M, p)
        if (p < 1.0) & (P < M):
            lo = tl.where(have_k, Tk, kmin)
            hi = kmax + 1
            clo = clo_k
            chi = npos * 0
            mhi = tot * 0.0
            while hi - lo > 1:
                thr = lo + ((ii + 1) * (hi - lo)) // (NT + 1)
                cnt, mass = _ge_stats(row, V, thr, T, tie_w, lo, hi, chi, mhi, BLOCK, NT)
                ntrue = tl.sum((mass > P).to(tl.int32), axis=0)
                sel_lo = ii == (ntrue - 1).to(tl.int64)
                sel_hi = ii == ntrue.to(tl.int64)
                lo_n = _pick(thr, sel_lo, lo)
                clo = _pick(cnt, sel_lo, clo)
                hi_n = _pick(thr, sel_hi, hi)
                chi = _pick(cnt, sel_hi, chi)
                mhi = _pick(mass, sel_hi, mhi)
                lo = lo_n
                hi = hi_n
            Tv = lo.to(tl.int32).to(tl.float32, bitcast=True)
            c = clo - chi
            mult = tl.where(have_k & (lo == Tk), rk, c)
            r = tl.floor((P - mhi) / Tv) + 1.0
            r = tl.minimum(tl.maximum(r, 1.0), tl.maximum(mult, 1).to(tl.float32))
            tie_w = Tv * r / tl.maximum(c, 1).to(tl.float32)
            T = lo
            M = mhi + r * Tv
        # u ~ U(0, M), then the first index whose inclusive cumulative weight exceeds u
        u = tl.sum(tl.rand(seed, pid + tl.zeros([2], dtype=tl.int32)), axis=0) * 0.5 * M
        base = tot * 0.0
        found = npos * 0 + 2147483647
        last = npos * 0 - 1
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            key, w = _keys_weights(row, offs, V, T, tie_w)
            cs = tl.cumsum(w, axis=0)
            hit = (base + cs > u) & (w > 0.0)
            found = tl.minimum(found, tl.min(tl.where(hit, offs, 2147483647), axis=0))
            last = tl.maximum(last, tl.max(tl.where(w > 0.0, offs, -1), axis=0))
            base += tl.sum(w, axis=0)
        res = tl.where(found < 2147483647, found, last)
        res = tl.maximum(res, 0)
        tl.store(OUT + pid, res.to(tl.int64))


def run(probs, *rest):
    if len(rest) == 2:
        x, samples = rest
        if x.dtype.is_floating_point:
            top_k, top_p = None, x
        else:
            top_k, top_p = x, None
    elif len(rest) == 3:
        top_k, top_p, samples = rest
    else:
        raise TypeError("expected (probs, top_k|top_p, samples) or (probs, top_k, top_p, samples)")
    assert probs.dtype == torch.float32 and probs.dim() == 2
    probs = probs.contiguous()
    bsz, vocab = probs.shape
    if bsz == 0:
        return samples
    tk = top_k.to(torch.int32).contiguous() if top_k is not None else probs
    tp = top_p.to(torch.float32).contiguous() if top_p is not None else probs
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    _sampling_kernel[(bsz,)](probs, tk, tp, samples, vocab, seed, HAS_K=top_k is not None,
                             HAS_P=top_p is not None, BLOCK=_P["BLOCK"], NT=_P["NT"],
                             num_warps=_P["NUM_WARPS"])
    return samples
