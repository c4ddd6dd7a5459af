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

Small batches (SPLIT 1, when batch x ceil(V / CHUNK) programs fit on the GPU at once, CHUNK a power
of two from 1024 to 4096): the same search with every row cut into CHUNK-element pieces, one
program each, holding its piece in registers for the whole call (the row is read from memory
once). Each pass's per-piece counts and masses are written to a workspace and the pieces of a row
meet at a grid barrier (an atomic arrival counter per row and pass) before every program sums them
in the same order, so all of a row's programs narrow the bracket identically. The sampling pass
takes each piece's offset from the pieces before it. A barrier that waits too long gives up
instead of hanging (the result is then wrong and verification says so). One program per row
leaves all but B SMs idle at batch 1; this uses ceil(V / CHUNK) of them.
Parameters (tp_params.py): BLOCK, NT, NUM_WARPS, SPLIT."""
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"BLOCK": 1024, "NT": 16, "NUM_WARPS": 8, "SPLIT": 1}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()


@triton.jit
def _keys(v):
    """The float-bit keys of probabilities v (0 where v is not a positive finite number) and
    where they are usable."""
    key = v.to(tl.int32, bitcast=True)
    ok = (v > 0.0) & (key < 0x7F800000)
    return tl.where(ok, key, 0).to(tl.int64), ok


@triton.jit
def _weights(key, v, ok, Tk, tie_w):
    """Each element's weight once the boundary is Tk: its value above it, tie_w on it, else 0."""
    w = tl.where(key > Tk, v, tl.where(key == Tk, tie_w, 0.0))
    return tl.where(ok, w, 0.0)


@triton.jit
def _keys_weights(row, offs, V, Tk, tie_w):
    v = tl.load(row + offs, mask=offs < V, other=0.0)
    key, ok = _keys(v)
    return key, _weights(key, v, ok, Tk, tie_w)


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


@triton.jit
def _row_k_p(TOPK, TOPP, pid, HAS_K: tl.constexpr, HAS_P: tl.constexpr):
    """The row's k (0: no top-k) and p (1: no top-p)."""
    if HAS_K:
        k = tl.load(TOPK + pid)
    else:
        k = pid * 0
    if HAS_P:
        p = tl.load(TOPP + pid)
    else:
        p = pid.to(tl.float32) * 0.0 + 1.0
    return k, p


@triton.jit
def _no_boundary(npos, tot, k, V):
    """The state before any search: boundary key T (keys > T keep their value), the weight of each
    element with key == T, the kept mass, the top-k boundary and its kept ties, the count of keys
    >= the top-k boundary, and whether top-k applies to the row."""
    zero64 = (npos * 0).to(tl.int64)
    have_k = (k > 0) & (k < V) & (k < npos)
    return zero64, tot * 0.0, tot, zero64, npos * 0, npos, have_k


@triton.jit
def _narrow(ii, thr, cnt, mass, ntrue, lo, hi, clo, chi, mhi):
    """One step of the NT-ary search: thresholds 0..ntrue-1 satisfy the search's condition, so the
    bracket becomes [thr[ntrue - 1], thr[ntrue]) (the old ends where ntrue is 0 or NT), with the
    counts and mass at its ends."""
    sel_lo = ii == (ntrue - 1).to(tl.int64)
    sel_hi = ii == ntrue.to(tl.int64)
    return (_pick(thr, sel_lo, lo), _pick(thr, sel_hi, hi), _pick(cnt, sel_lo, clo),
            _pick(cnt, sel_hi, chi), _pick(mass, sel_hi, mhi))


@triton.jit
def _k_boundary(Tk, clo, chi, mhi, k):
    """After the top-k search ended on key Tk: how many of its clo - chi ties are kept (rk), the
    weight each tie gets (the reference marginalised over their order) and the kept mass."""
    Tv = Tk.to(tl.int32).to(tl.float32, bitcast=True)
    rk = k - chi
    tie_w = Tv * rk.to(tl.float32) / tl.maximum(clo - chi, 1).to(tl.float32)
    return rk, tie_w, mhi + rk.to(tl.float32) * Tv


@triton.jit
def _p_boundary(lo, clo, chi, mhi, P, have_k, Tk, rk):
    """After the top-p search ended on key lo: the weight of each of its ties (r of them kept, r at
    most what top-k left of them) and the kept mass."""
    Tv = lo.to(tl.int32).to(tl.float32, bitcast=True)
    c = clo - chi
    mult = tl.where(have_k & (lo == Tk), rk, c)
    r = tl.floor((P - mhi) / Tv) + 1.0
    r = tl.minimum(tl.maximum(r, 1.0), tl.maximum(mult, 1).to(tl.float32))
    return Tv * r / tl.maximum(c, 1).to(tl.float32), mhi + r * Tv


@triton.jit(do_not_specialize=["seed"])
def _sampling_kernel(PROBS, TOPK, TOPP, OUT, V, seed, HAS_K: tl.constexpr, HAS_P: tl.constexpr,
                     BLOCK: tl.constexpr, NT: tl.constexpr):
    pid = tl.program_id(0)
    row = PROBS + pid.to(tl.int64) * V
    k, p = _row_k_p(TOPK, TOPP, pid, HAS_K, HAS_P)
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
        T, tie_w, M, Tk, rk, clo_k, have_k = _no_boundary(npos, tot, k, V)
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
                lo, hi, clo, chi, mhi = _narrow(ii, thr, cnt, mass, ntrue, lo, hi, clo, chi, mhi)
            Tk = lo
            rk, tie_w, M = _k_boundary(Tk, clo, chi, mhi, k)
            T = Tk
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
                lo, hi, clo, chi, mhi = _narrow(ii, thr, cnt, mass, ntrue, lo, hi, clo, chi, mhi)
            tie_w, M = _p_boundary(lo, clo, chi, mhi, P, have_k, Tk, rk)
            T = lo
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


# ---- small batches: a row's pieces on many programs, meeting at grid barriers ----------------------

_MAX_BARRIERS = 64  # per row; a call uses at most 1 + 2 x (passes of a search, <= 9 at NT 16) + 2
_MAX_SPINS = tl.constexpr(1 << 22)  # about a second of polling before a barrier gives up


@triton.jit
def _grid_sync(BAR, C):
    """All C programs of a row arrive at the barrier counter BAR before any of them leaves."""
    tl.debug_barrier()
    arrived = tl.atomic_add(BAR, 1, sem="acq_rel") + 1
    spins = arrived * 0
    while (arrived < C) & (spins < _MAX_SPINS):
        arrived = tl.atomic_add(BAR, 0, sem="acq_rel")
        spins += 1
    tl.debug_barrier()


@triton.jit
def _publish(WS_I, WS_F, slot, cid, ivec, fvec, NT: tl.constexpr, CP: tl.constexpr):
    """Writes this piece's NT counts (int32) and masses (float32) into column cid of a slot."""
    o = slot + tl.arange(0, NT) * CP + cid
    tl.store(WS_I + o, ivec)
    tl.store(WS_F + o, fvec)


@triton.jit
def _gather(WS_I, WS_F, slot, C, NT: tl.constexpr, CP: tl.constexpr):
    """The slot's [NT, CP] counts and masses of every piece (columns >= C zero) and the mask."""
    r = tl.arange(0, NT)[:, None]
    c = tl.arange(0, CP)[None, :]
    m = (c < C) & (r >= 0)
    iv = tl.load(WS_I + slot + r * CP + c, mask=m, other=0, volatile=True)
    fv = tl.load(WS_F + slot + r * CP + c, mask=m, other=0.0, volatile=True)
    return iv, fv, m


@triton.jit
def _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C, ivec, fvec, NT: tl.constexpr,
          CP: tl.constexpr):
    """Publishes this piece's vectors for barrier n, waits for the row, and returns everyone's."""
    slot = row_ws + (n % 2) * NT * CP  # two slots: a fast program can be at most one pass ahead
    _publish(WS_I, WS_F, slot, cid, ivec, fvec, NT, CP)
    _grid_sync(BAR + row_bar + n, C)
    return _gather(WS_I, WS_F, slot, C, NT, CP)


@triton.jit
def _split_search(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C, key, w, target, lo, hi, clo,
                  BY_MASS: tl.constexpr, NT: tl.constexpr, CP: tl.constexpr):
    """The NT-ary search of _sampling_kernel with each pass summed over the row's pieces: the
    smallest bracket [lo, hi) with count(key >= hi) < target <= count(key >= lo) (BY_MASS 0), or
    mass(key >= hi) <= target < mass(key >= lo) (BY_MASS 1). Returns the bracket, the counts and
    masses at its ends and the next barrier number."""
    ii = tl.arange(0, NT).to(tl.int64)
    chi = clo * 0
    mhi = tl.sum(w, axis=0) * 0.0
    while hi - lo > 1:
        thr = lo + ((ii + 1) * (hi - lo)) // (NT + 1)
        inb = (key >= lo) & (key < hi)
        cnt_l = tl.zeros([NT], dtype=tl.int32)
        mass_l = tl.zeros([NT], dtype=tl.float32)
        if tl.max(inb.to(tl.int32), axis=0) > 0:
            ge = inb[None, :] & (key[None, :] >= thr[:, None])
            cnt_l = tl.sum(ge.to(tl.int32), axis=1)
            mass_l = tl.sum(tl.where(ge, w[None, :], 0.0), axis=1)
        iv, fv, m = _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C, cnt_l, mass_l, NT, CP)
        n += 1
        cnt = tl.sum(iv, axis=1) + chi
        mass = tl.sum(fv, axis=1) + mhi
        if BY_MASS:
            ntrue = tl.sum((mass > target).to(tl.int32), axis=0)
        else:
            ntrue = tl.sum((cnt >= target).to(tl.int32), axis=0)
        lo, hi, clo, chi, mhi = _narrow(ii, thr, cnt, mass, ntrue, lo, hi, clo, chi, mhi)
    return lo, hi, clo, chi, mhi, n


@triton.jit(do_not_specialize=["seed"])
def _sampling_split_kernel(PROBS, TOPK, TOPP, OUT, V, seed, WS_I, WS_F, BAR, C,
                           HAS_K: tl.constexpr, HAS_P: tl.constexpr, CHUNK: tl.constexpr,
                           NT: tl.constexpr, CP: tl.constexpr, MAXB: tl.constexpr):
    cid = tl.program_id(0)  # the piece of the row
    pid = tl.program_id(1)  # the row
    row = PROBS + pid.to(tl.int64) * V
    row_ws = pid.to(tl.int64) * 2 * NT * CP
    row_bar = pid * MAXB
    offs = cid * CHUNK + tl.arange(0, CHUNK)
    v = tl.load(row + offs, mask=offs < V, other=0.0)
    k, p = _row_k_p(TOPK, TOPP, pid, HAS_K, HAS_P)
    i_nt = tl.arange(0, NT)
    n = pid * 0  # the row's next barrier
    if p <= 0.0:
        # argmax, first index of the maximum: each piece's (max, first index), then the row's
        a = tl.where((v == v) & (offs < V), v, -1.0)
        cm = tl.max(a, axis=0)
        ci = cid * CHUNK + tl.argmax(a, axis=0, tie_break_left=True)
        iv, fv, m = _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C,
                          tl.where(i_nt == 0, ci, 0), tl.where(i_nt == 0, cm, 0.0), NT, CP)
        first = (i_nt[:, None] == 0) & m
        pmax = tl.max(tl.max(tl.where(first, fv, -2.0), axis=1), axis=0)
        cand = tl.where(first & (fv == pmax), iv, 2147483647)
        best = tl.min(tl.min(cand, axis=1), axis=0)
        if cid == 0:
            tl.store(OUT + pid, best.to(tl.int64))
    else:
        key, ok = _keys(v)
        val = tl.where(ok, v, 0.0)
        # totals: usable count, mass, smallest and largest key of the row
        npos_l = tl.sum((key > 0).to(tl.int32), axis=0)
        kmin_l = tl.min(tl.where(key > 0, key, 0x7F800000), axis=0).to(tl.int32)
        kmax_l = tl.max(key, axis=0).to(tl.int32)
        ivec = tl.where(i_nt == 0, npos_l, tl.where(i_nt == 1, kmin_l, tl.where(i_nt == 2, kmax_l, 0)))
        fvec = tl.where(i_nt == 0, tl.sum(val, axis=0), 0.0)
        iv, fv, m = _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C, ivec, fvec, NT, CP)
        n += 1
        sel0 = (i_nt[:, None] == 0) & m
        npos = tl.sum(tl.sum(tl.where(sel0, iv, 0), axis=1), axis=0)
        tot = tl.sum(tl.sum(tl.where(sel0, fv, 0.0), axis=1), axis=0)
        kmin = tl.min(tl.min(tl.where((i_nt[:, None] == 1) & m, iv, 0x7F800000), axis=1),
                      axis=0).to(tl.int64)
        kmax = tl.max(tl.max(tl.where((i_nt[:, None] == 2) & m, iv, 0), axis=1), axis=0).to(tl.int64)
        T, tie_w, M, Tk, rk, clo_k, have_k = _no_boundary(npos, tot, k, V)
        if have_k:
            lo, hi, clo, chi, mhi, n = _split_search(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C,
                                                     key, val, k, kmin, kmax + 1, npos, False, NT,
                                                     CP)
            Tk = lo
            rk, tie_w, M = _k_boundary(Tk, clo, chi, mhi, k)
            T = Tk
            clo_k = clo
        P = tl.where(have_k, p * M, p)
        if (p < 1.0) & (P < M):
            w = _weights(key, v, ok, T, tie_w)
            lo, hi, clo, chi, mhi, n = _split_search(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C,
                                                     key, w, P, tl.where(have_k, Tk, kmin),
                                                     kmax + 1, clo_k, True, NT, CP)
            tie_w, M = _p_boundary(lo, clo, chi, mhi, P, have_k, Tk, rk)
            T = lo
        # u ~ U(0, M) (the same draw on every piece of the row), this piece's offset from the
        # pieces before it, then the first index whose inclusive cumulative weight exceeds u
        u = tl.sum(tl.rand(seed, pid + tl.zeros([2], dtype=tl.int32)), axis=0) * 0.5 * M
        w = _weights(key, v, ok, T, tie_w)
        iv, fv, m = _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C, tl.zeros([NT], tl.int32),
                          tl.where(i_nt == 0, tl.sum(w, axis=0), 0.0), NT, CP)
        n += 1
        before = (i_nt[:, None] == 0) & m & (tl.arange(0, CP)[None, :] < cid)
        base = tl.sum(tl.sum(tl.where(before, fv, 0.0), axis=1), axis=0)
        cs = tl.cumsum(w, axis=0)
        hit = (base + cs > u) & (w > 0.0)
        found_l = tl.min(tl.where(hit, offs, 2147483647), axis=0)
        last_l = tl.max(tl.where(w > 0.0, offs, -1), axis=0)
        iv, fv, m = _meet(WS_I, WS_F, BAR, row_ws, row_bar, n, cid, C,
                          tl.where(i_nt == 0, found_l, tl.where(i_nt == 1, last_l, 0)),
                          tl.zeros([NT], tl.float32), NT, CP)
        if cid == 0:
            found = tl.min(tl.min(tl.where((i_nt[:, None] == 0) & m, iv, 2147483647), axis=1),
                           axis=0)
            last = tl.max(tl.max(tl.where((i_nt[:, None] == 1) & m, iv, -1), axis=1), axis=0)
            res = tl.where(found < 2147483647, found, last)
            res = tl.maximum(res, 0)
            tl.store(OUT + pid, res.to(tl.int64))


_SMS = {}


def _split_plan(probs):
    """(CHUNK, pieces per row) when every piece of every row can run at once, else None."""
    if not _P["SPLIT"] or not probs.is_cuda:
        return None
    dev = probs.device.index if probs.device.index is not None else torch.cuda.current_device()
    if dev not in _SMS:
        _SMS[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    bsz, vocab = probs.shape
    for chunk in (1024, 2048, 4096):
        pieces = triton.cdiv(vocab, chunk)
        if bsz * pieces <= _SMS[dev] and pieces <= 256:
            return chunk, pieces
    return None


def _run_split(probs, tk, tp, samples, top_k, top_p, seed, chunk, pieces):
    bsz = probs.shape[0]
    nt = 16
    cp = triton.next_power_of_2(pieces)
    ws_i = torch.empty(bsz * 2 * nt * cp, dtype=torch.int32, device=probs.device)
    ws_f = torch.empty(bsz * 2 * nt * cp, dtype=torch.float32, device=probs.device)
    bar = torch.zeros(bsz * _MAX_BARRIERS, dtype=torch.int32, device=probs.device)
    _sampling_split_kernel[(pieces, bsz)](probs, tk, tp, samples, probs.shape[1], seed, ws_i, ws_f,
                                          bar, pieces, HAS_K=top_k is not None,
                                          HAS_P=top_p is not None, CHUNK=chunk, NT=nt, CP=cp,
                                          MAXB=_MAX_BARRIERS, num_warps=8)
    return samples


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
    plan = _split_plan(probs)
    if plan is not None:
        return _run_split(probs, tk, tp, samples, top_k, top_p, seed, *plan)
    _sampling_kernel[(bsz,)](probs, tk, tp, samples, vocab, seed, HAS_K=top_k is not None,
                             HAS_P=top_p is not None, BLOCK=_P["BLOCK"], NT=_P["NT"],
                             num_warps=_P["NUM_WARPS"])
    return samples
