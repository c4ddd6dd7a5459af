"""MLA decode at the sizes where bandwidth decides (issue 21's goal: >= 75 % of copy bandwidth on the
largest workloads), self-contained: synthetic paged caches, no dataset needed. From the repository root on
a GPU machine:

    python3 cuda/mla_paged_decode/bench_bw.py [--budget SECONDS] [--quick]

Builds every CUDA sweep point of cuda/mla_paged_decode (PIPE 0/2/3 x BALANCED 0/1, in parallel) and loads
the Triton kernel at its sweep points (BLOCK_N 32/64 x BALANCED 0/1). On a grid of batch x tokens per
sequence x page size, each point is checked against the fp32 torch baseline (outputs poisoned with NaN; the
reference is computed a few sequences at a time, so the largest points fit) and timed with
triton.testing.do_bench (L2 flushed, median). The roofline is this process's own copy bandwidth (torch copy
of 1 GiB, read + write); bytes are the touched KV (tokens x 1152 B) plus q, output, lse and the indices.
Prints a table (% of copy bandwidth per kernel) and writes $OUT/mla_bw.json after every point.
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

CUDA_POINTS = [{"PIPE": p, "BALANCED": b} for b in (0, 1) for p in (0, 2, 3)]
TRITON_POINTS = [{"BLOCK_N": n, "BALANCED": b} for b in (0, 1) for n in (32, 64)]
# batch x KV tokens per sequence, at page sizes 1 and 64: the largest put 4.8 GB of latent KV in play
GRID = [(b, t) for b in (16, 32, 64, 128) for t in (4096, 16384, 32768)]
QUICK_GRID = [(16, 4096), (64, 32768)]
H = 16
KV_BYTES_PER_TOKEN = 576 * 2  # ckv 512 + kpe 64, bf16
RES = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "builds": {}, "points": [], "notes": []}


def point_name(p):
    return "_".join(f"{k}{v}" for k, v in p.items())


def case(batch, tokens, ps, H=H):
    """Index tensors of `batch` sequences of `tokens` KV tokens each on pages of `ps`, the pages shuffled
    over a pool a little larger than needed (as a serving cache is): indptr, indices, last_page_len (None
    at page size 1), num_pages, and the bytes the kernel must move at least."""
    per = -(-tokens // ps)
    used = batch * per
    num_pages = used + used // 8 + 1
    indices = torch.randperm(num_pages, dtype=torch.int64)[:used].to(torch.int32)
    indptr = torch.arange(0, used + 1, per, dtype=torch.int32)
    last = torch.full((batch,), (tokens - 1) % ps + 1, dtype=torch.int32) if ps > 1 else None
    moved = (batch * tokens * KV_BYTES_PER_TOKEN + batch * H * 576 * 2 + batch * H * (512 * 2 + 4)
             + (batch + 1) * 4 + used * 4 + (batch * 4 if ps > 1 else 0))
    return indptr, indices, last, num_pages, moved


def sub_batch(indptr, indices, last, lo, hi):
    """Sequences lo..hi-1 as a batch of their own (the reference's chunks)."""
    p0, p1 = int(indptr[lo]), int(indptr[hi])
    return (indptr[lo:hi + 1] - p0), indices[p0:p1], (None if last is None else last[lo:hi])


def cuda_ext(point, d):
    """The CUDA sweep point's extension in its folder `d` (built there on first call, loaded after)."""
    from torch.utils import cpp_extension
    return cpp_extension.load(name="tp_mla_bw_" + point_name(point), sources=[os.path.join(d, "mla_paged_decode.cu")],
                              extra_include_paths=[d], build_directory=d, extra_cuda_cflags=["-O3"],
                              verbose=False)


def build_cuda(point, build_root):
    """Builds one CUDA sweep point (in a worker process, so the points build in parallel): (folder, seconds)."""
    d = os.path.join(build_root, "cuda_" + point_name(point))
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(HERE, "mla_paged_decode.cu"), d)
    with open(os.path.join(d, "tp_params.h"), "w") as f:
        f.write("#pragma once\n" + "".join(f"#define {k} {v}\n" for k, v in point.items()))
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")
    t = time.time()
    cuda_ext(point, d)
    return d, time.time() - t


def load_triton(point, build_root):
    from gpu_check import load_py
    d = os.path.join(build_root, "triton_" + point_name(point))
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "triton", "mla_paged_decode", "mla_paged_decode.py"), d)
    with open(os.path.join(d, "tp_params.py"), "w") as f:
        f.write("".join(f"{k} = {v}\n" for k, v in point.items()))
    return load_py(os.path.join(d, "mla_paged_decode.py"), "tp_mla_bw_triton_" + point_name(point)).run


def copy_bandwidth(do_bench):
    """Read + write bytes per second of a torch copy of 1 GiB (this process's roofline)."""
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=10, rep=100)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / (ms * 1e-3)


def write_json():
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "mla_bw.json.tmp"), "w") as f:
            json.dump(RES, f, indent=1)
        os.replace(os.path.join(out, "mla_bw.json.tmp"), os.path.join(out, "mla_bw.json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=float(os.environ.get("TP_BENCH_BUDGET", 400)),
                    help="seconds since start after which no new point starts")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    t_start = time.time()
    from gpu_check import compare, load_py, make_inputs, run_dps
    from triton.testing import do_bench

    build_root = os.environ.get("TP_MLA_BUILD", os.path.join(tempfile.gettempdir(), "tp_mla_bw"))
    os.makedirs(build_root, exist_ok=True)
    kernels = {}
    with cf.ProcessPoolExecutor(max_workers=6) as ex:
        futs = {ex.submit(build_cuda, p, build_root): p for p in CUDA_POINTS}
        for fut in cf.as_completed(futs):
            p = futs[fut]
            try:
                d, dt = fut.result()
                kernels["cuda_" + point_name(p)] = cuda_ext(p, d).run
                RES["builds"][point_name(p)] = {"ok": True, "seconds": round(dt, 1)}
            except Exception as e:  # noqa: BLE001
                RES["builds"][point_name(p)] = {"ok": False, "error": str(e)[-2000:]}
                print(f"BUILD FAILED {point_name(p)}: {str(e)[-1500:]}", flush=True)
    for p in TRITON_POINTS:
        kernels["triton_" + point_name(p)] = load_triton(p, build_root)
    base = load_py(os.path.join(ROOT, "baselines", "torch_mla_paged_decode", "mla_paged_decode.py"),
                   "tp_mla_bw_base").run
    RES["device"] = torch.cuda.get_device_name(0)
    RES["torch"] = torch.__version__
    bw = copy_bandwidth(do_bench)
    RES["copy_bandwidth_tbps"] = bw / 1e12
    print(f"[{time.time() - t_start:.0f}s] {RES['device']}: copy bandwidth {bw / 1e12:.3f} TB/s; "
          f"builds {sum(b['ok'] for b in RES['builds'].values())}/{len(CUDA_POINTS)}", flush=True)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(7)
    pool = {}
    grid = QUICK_GRID if a.quick else GRID
    for ps in (1, 64):
        for batch, tokens in grid:
            if time.time() - t_start > a.budget:
                RES["notes"].append(f"budget {a.budget:.0f}s reached before ps{ps} {batch}x{tokens}")
                continue
            indptr, indices, last, num_pages, moved = case(batch, tokens, ps)
            args = make_inputs(batch, H, num_pages, ps, indptr, indices, last, 0.1352337788608801, gen, pool)
            # the reference, 8 sequences at a time (the baseline pads to [batch, max_len] in fp32)
            want_o, want_l = [], []
            for lo in range(0, batch, 8):
                hi = min(batch, lo + 8)
                ip, ix, ll = sub_batch(indptr, indices, last, lo, hi)
                sub = [args[0][lo:hi], args[1][lo:hi], args[2], args[3], ip.cuda(), ix.cuda()]
                sub += ([ll.cuda()] if ll is not None else []) + [args[-1]]
                o, l = base(*sub)
                want_o.append(o)
                want_l.append(l)
            want = (torch.cat(want_o), torch.cat(want_l))
            row = {"page_size": ps, "batch": batch, "tokens": tokens, "bytes": moved,
                   "floor_us": moved / bw * 1e6, "kernels": {}}
            out = torch.empty((batch, H, 512), dtype=torch.bfloat16, device="cuda")
            lse = torch.empty((batch, H), dtype=torch.float32, device="cuda")
            for name, fn in kernels.items():
                rec = {}
                try:
                    ok, worst, nbad = compare(run_dps(fn, args, batch, H), want)
                    rec.update(ok=ok, max_abs=worst, bad=nbad)
                    if ok:
                        us = 1e3 * do_bench(lambda: fn(*args, out, lse), warmup=10, rep=40)
                        rec.update(us=us, pct_of_copy=100 * row["floor_us"] / us)
                except Exception as e:  # noqa: BLE001
                    rec.update(ok=False, error=f"{type(e).__name__}: {e}"[-800:])
                row["kernels"][name] = rec
            del want, want_o, want_l
            timed = {k: v for k, v in row["kernels"].items() if "us" in v}
            best = max(timed, key=lambda k: timed[k]["pct_of_copy"]) if timed else None
            row["best"] = best
            RES["points"].append(row)
            write_json()
            bad = [k for k, v in row["kernels"].items() if not v.get("ok")]
            print(f"[{time.time() - t_start:.0f}s] ps{ps} {batch}x{tokens}: floor {row['floor_us']:.1f} us; "
                  + " ".join(f"{k}={v['us']:.1f}us/{v['pct_of_copy']:.0f}%" for k, v in timed.items())
                  + (f"; FAILED {bad}" if bad else ""), flush=True)
            torch.cuda.empty_cache()
    RES["seconds"] = round(time.time() - t_start, 1)
    write_json()
    failed = sum(1 for r in RES["points"] for v in r["kernels"].values() if not v.get("ok"))
    print(f"{len(RES['points'])} points, {failed} kernel checks failed; {RES['seconds']}s")
    for r in RES["points"]:
        b = r["best"]
        if b:
            print(f"ps{r['page_size']:<3} {r['batch']:>4} x {r['tokens']:>6}  best {b:<22} "
                  f"{r['kernels'][b]['us']:8.1f} us  {r['kernels'][b]['pct_of_copy']:5.1f} % of copy")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
