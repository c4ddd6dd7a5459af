"""GPU self-test of the sampling kernels outside the harness (cheap: no 500k-samples-per-row TVD run).

    python3 cuda/sampling/selftest.py [--clusters 1,2,4,8] [--threads 512] [--no-triton]

Builds the CUDA kernel (torch.utils.cpp_extension, one build per CLUSTER/THREADS point, in parallel),
imports the Triton kernel and the torch baseline, then
  1. correctness: edge cases (k <= 0, k >= V, k = 1, ties at the boundary, p <= 0, p >= 1, top-k then
     top-p) on V = 128256 rows; every sample must have a value >= the smallest value the reference
     keeps, and the empirical distribution over many tiled rows is compared with the reference's
     (TVD, next to the TVD a perfect sampler would show);
  2. timing: CUDA events, median of repeated calls, per batch size, for every implementation.
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def build_cuda(cluster, threads):
    from torch.utils.cpp_extension import load
    d = os.path.join(tempfile.gettempdir(), f"tp_samp_c{cluster}_t{threads}")
    os.makedirs(d, exist_ok=True)
    txt = f"#define CLUSTER {cluster}\n#define THREADS {threads}\n#define UNROLL 4\n"
    hp = os.path.join(d, "tp_params.h")
    if not os.path.exists(hp) or open(hp).read() != txt:  # keep ninja's build when unchanged
        with open(hp, "w") as f:
            f.write(txt)
    return load(name=f"tp_samp_c{cluster}_t{threads}", sources=[os.path.join(HERE, "sampling.cu")],
                extra_include_paths=[d], build_directory=d, verbose=False,
                extra_cuda_cflags=["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a"])


def load_py(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def ref_dist(row, k, p, has_k, has_p):
    """The definitions' reference filter, in float64, as a distribution over the row."""
    V = row.numel()
    w = row.double().clone()
    if has_k and 0 < k < V:
        idx = torch.argsort(row, descending=True)[:k]
        f = torch.zeros_like(w)
        f[idx] = w[idx]
        w = f / f.sum()
    if has_p:
        if p <= 0:
            d = torch.zeros_like(w)
            d[torch.argmax(w)] = 1
            return d
        if p < 1:
            vals, idx = torch.sort(w, descending=True)
            cdf = torch.cumsum(vals, 0)
            rm = cdf > p
            rm[1:] = rm[:-1].clone()
            rm[0] = False
            f = torch.zeros_like(w)
            keep = idx[~rm]
            f[keep] = w[keep]
            w = f
    return w / w.sum()


def make_cases(V, dev):
    g = torch.Generator(device=dev)
    g.manual_seed(1234)
    rows, ks, ps = [], [], []

    def add(scale, k, p, tie_at=None, ntie=12):
        r = torch.softmax(torch.randn(V, generator=g, device=dev) * scale, -1)
        if tie_at is not None:
            r[100:100 + ntie] = r.sort(descending=True).values[tie_at]
            r = r / r.sum()
        rows.append(r)
        ks.append(k)
        ps.append(p)

    add(1.0, 50, 0.9)
    add(1.0, 1, 0.9)
    add(3.0, 0, 0.9)
    add(1.0, V, 0.5)
    add(2.0, 1000, 0.95)
    add(1.0, 50, 0.0)
    add(1.0, 50, 1.0)
    add(2.0, 20, 0.9, tie_at=15)  # ties straddle the k-th value
    add(4.0, 0, 0.5, tie_at=3)    # ties at the top-p boundary (probably)
    add(1.0, V - 1, 0.999)
    return torch.stack(rows), torch.tensor(ks, dtype=torch.int32, device=dev), \
        torch.tensor(ps, dtype=torch.float32, device=dev)


def sample_rows_one_by_one(fn, probs, args, reps):
    """reps calls per row at batch 1 (the small-batch paths), as one [B * reps] tensor laid out like
    a call on the tiled rows."""
    B = probs.shape[0]
    out = torch.full((reps, B), -7, dtype=torch.int64, device=probs.device)
    for i in range(B):
        row = [probs[i:i + 1]] + [a[i:i + 1] for a in args]
        for j in range(reps):
            fn(*row, out[j, i:i + 1])
    return out.reshape(-1)


# Probabilities one tiled call may hold: 2**27 fp32 values (512 MiB). The torch baseline sorts its
# input, which takes several times that; one call over every repetition of a 128256-wide vocabulary
# ran an 80 GB H100 out of memory (BENCHMARKS-kernels-sampling.md, twelfth session).
_TILED_VALUES = 1 << 27


def sample_tiled(fn, dps, probs, args, reps):
    """reps samples per row from calls on the rows tiled, as few repetitions to a call as fit
    _TILED_VALUES: one [B * reps] tensor, repetition-major. Every call draws a fresh seed, so chunks
    are independent."""
    B, V = probs.shape
    per = max(1, min(reps, _TILED_VALUES // (B * V)))
    outs = []
    for start in range(0, reps, per):
        n = min(per, reps - start)
        tiled = [probs.repeat(n, 1)] + [a.repeat(n) for a in args]
        if dps:
            out = torch.full((B * n,), -7, dtype=torch.int64, device=probs.device)
            fn(*tiled, out)
        else:
            out = fn(*tiled)
        outs.append(out.reshape(-1))
    return torch.cat(outs)


def check(name, fn, dps, probs, ks, ps, mode, reps, one_by_one=False):
    B, V = probs.shape
    args = {"k": (ks,), "p": (ps,), "kp": (ks, ps)}[mode]
    if one_by_one:
        out = sample_rows_one_by_one(fn, probs, args, reps)
    else:
        out = sample_tiled(fn, dps, probs, args, reps)
    if probs.is_cuda:
        torch.cuda.synchronize()
    s = out.reshape(reps, B)
    worst = 0.0
    bad = []
    for i in range(B):
        d = ref_dist(probs[i], int(ks[i]), float(ps[i]), mode != "p", mode != "k")
        col = s[:, i]
        if (col < 0).any() or (col >= V).any():
            bad.append(f"row {i}: out of range")
            continue
        kept_min = probs[i][d > 0].min()
        if (probs[i][col] < kept_min).any():
            bad.append(f"row {i}: {(probs[i][col] < kept_min).sum().item()} samples outside the kept set")
        freq = torch.bincount(col, minlength=V).double() / reps
        # marginalise over equal values (ties): the reference's own choice among ties is arbitrary
        _, inv = torch.unique(probs[i], return_inverse=True)
        fg = torch.zeros(int(inv.max()) + 1, dtype=torch.float64, device=probs.device).index_add_(0, inv, freq)
        dg = torch.zeros_like(fg).index_add_(0, inv, d)
        tvd = 0.5 * (fg - dg).abs().sum().item()
        noise = 0.5 * (2 / 3.14159 / reps) ** 0.5 * d.sqrt().sum().item()
        worst = max(worst, tvd - 2 * noise)
        if tvd > 2 * noise + 0.01:
            bad.append(f"row {i} (k={int(ks[i])}, p={float(ps[i]):.3f}): TVD {tvd:.4f} vs noise {noise:.4f}")
    status = "OK" if not bad else "FAIL"
    print(f"[check] {name} {mode}: {status} (worst TVD excess {worst:+.4f}) " + "; ".join(bad[:4]), flush=True)
    return not bad


def timeit(fn, dps, args, B, iters=50):
    out = torch.empty(B, dtype=torch.int64, device="cuda")
    call = (lambda: fn(*args, out)) if dps else (lambda: fn(*args))
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        call()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", default="1,2,4,8")
    ap.add_argument("--threads", default="512")
    ap.add_argument("--no-triton", action="store_true")
    ap.add_argument("--reps", type=int, default=100000)
    ap.add_argument("--batches", default="1,8,29,48")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--split-reps", type=int, default=20000,
                    help="calls per row at batch 1 for the Triton kernel's SPLIT path (0: skip it)")
    a = ap.parse_args()
    t0 = time.time()
    pts = [(int(c), int(t)) for c in a.clusters.split(",") for t in a.threads.split(",")]
    with ThreadPoolExecutor(len(pts)) as ex:
        mods = dict(zip(pts, ex.map(lambda pt: build_cuda(*pt), pts)))
    print(f"[build] {len(pts)} CUDA points in {time.time() - t0:.0f} s", flush=True)
    if a.build_only:
        return 0
    impls = [(f"cuda_c{c}_t{t}", m.run, True) for (c, t), m in mods.items()]
    split = None
    if not a.no_triton:
        tri = load_py(os.path.join(ROOT, "triton", "sampling", "sampling.py"), "tp_tri_samp")
        tri._P["SPLIT"] = 0
        impls.append(("triton", tri.run, True))
        if a.split_reps:
            split = load_py(os.path.join(ROOT, "triton", "sampling", "sampling.py"), "tp_tri_split")
            split._P["SPLIT"] = 1  # used where batch x pieces fit on the GPU, else the row kernel
    base = load_py(os.path.join(ROOT, "baselines", "torch_sampling", "sampling.py"), "tp_base_samp")
    impls.append(("torch_baseline", base.run, False))

    probs, ks, ps = make_cases(128256, "cuda")
    ok = True
    first = impls[:1] + impls[-2:] if not a.no_triton else impls[:1] + impls[-1:]
    for name, fn, dps in (impls if len(impls) <= 3 else first):
        for mode in ("k", "p", "kp"):
            ok &= check(name, fn, dps, probs, ks, ps, mode, a.reps)
    for name, fn, dps in impls[1:len(mods)]:  # the other CUDA points: one quick pass each
        ok &= check(name, fn, dps, probs, ks, ps, "kp", a.reps // 4)
    if split is not None:
        for mode in ("k", "p", "kp"):
            ok &= check("triton_split", split.run, True, probs, ks, ps, mode, a.split_reps, True)
        impls.insert(len(impls) - 1, ("triton_split", split.run, True))
    print(f"[check] done in {time.time() - t0:.0f} s: {'ALL OK' if ok else 'FAILURES'}", flush=True)

    for V in (128256, 151936):
        for B in [int(x) for x in a.batches.split(",")]:
            g = torch.Generator(device="cuda")
            g.manual_seed(B)
            pr = torch.softmax(torch.randn(B, V, generator=g, device="cuda"), -1)
            k = torch.full((B,), 50, dtype=torch.int32, device="cuda")
            p = torch.full((B,), 0.9, dtype=torch.float32, device="cuda")
            for mode, args in (("k", (pr, k)), ("p", (pr, p)), ("kp", (pr, k, p))):
                line = []
                for name, fn, dps in impls:
                    try:
                        line.append(f"{name}={timeit(fn, dps, args, B) * 1000:.1f}us")
                    except Exception as e:  # noqa: BLE001
                        line.append(f"{name}=ERR({type(e).__name__})")
                print(f"[time] V={V} B={B} {mode}: " + " ".join(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
