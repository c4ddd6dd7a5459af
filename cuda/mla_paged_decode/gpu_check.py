"""Developer check for the MLA paged decode kernels on a GPU (not part of any Solution).

Builds cuda/mla_paged_decode (the .cu defaults, torch.utils.cpp_extension) and imports
triton/mla_paged_decode, then checks both against the definitions' rule (an element fails iff
|d| > 1e-2 and |d| / (|ref| + 1e-8) > 1e-2; outputs poisoned with NaN) on
  * every workload of scratch/kcheck-data (both h16 definitions), compared with the fp32 torch
    baseline (itself compared with the definition's reference on a sample),
  * synthetic edge cases: empty sequences, an empty kv_indices, last_page_len 1 and 64, a single
    token, one long sequence, and the h8 page_size-1 definition (checked against its reference),
and times (triton.testing.do_bench, L2 flushed, median) a spread of workloads.

    python3 cuda/mla_paged_decode/gpu_check.py --data scratch/kcheck-data --out OUT.json
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_st(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = {"I32": np.int32, "I64": np.int64}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(data[s:e], dtype=dt).reshape(v["shape"]).copy())
    return out


def build_cuda():
    from torch.utils import cpp_extension
    d = tempfile.mkdtemp(prefix="mla_cu_")
    shutil.copy(os.path.join(HERE, "mla_paged_decode.cu"), d)
    with open(os.path.join(d, "tp_params.h"), "w") as f:
        f.write("#pragma once\n")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")
    return cpp_extension.load(name="tp_mla_check", sources=[os.path.join(d, "mla_paged_decode.cu")],
                              extra_include_paths=[d], build_directory=d,
                              extra_cuda_cflags=["-O3"], verbose=False)


def load_py(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def defn(name):
    with open(os.path.join(ROOT, "data", "definitions", "mla_paged", name + ".json")) as f:
        d = json.load(f)
    ns = {}
    exec(compile(d["reference"], name, "exec"), ns)
    return d, ns["run"]


def compare(outs, refs):
    worst = 0.0
    nbad = 0
    for s, r in zip(outs, refs):
        s = s.float()
        r = r.float()
        if torch.isnan(s).any() or torch.isinf(s).any():
            # lse may legitimately be -inf (empty sequence): compare those positions exactly
            both = torch.isinf(s) & torch.isinf(r) & (torch.sign(s) == torch.sign(r))
            if torch.isnan(s).any() or (torch.isinf(s) & ~both).any():
                return False, float("nan"), -1
            s = torch.where(both, torch.zeros_like(s), s)
            r = torch.where(both, torch.zeros_like(r), r)
        d = (s - r).abs()
        rel = d / (r.abs() + 1e-8)
        nbad += int(((d > 1e-2) & (rel > 1e-2)).sum().item())
        worst = max(worst, float(d.max().item()) if d.numel() else 0.0)
    return nbad == 0, worst, nbad


def make_inputs(B, H, num_pages, ps, indptr, indices, last, scale, gen, cache_pool):
    dev = "cuda"
    qn = torch.randn((B, H, 512), generator=gen, device=dev).bfloat16()
    qp = torch.randn((B, H, 64), generator=gen, device=dev).bfloat16()
    key = (num_pages, ps)
    if key not in cache_pool:
        cache_pool.clear()
        torch.cuda.empty_cache()
        cache_pool[key] = (torch.randn((num_pages, ps, 512), generator=gen, device=dev).bfloat16(),
                           torch.randn((num_pages, ps, 64), generator=gen, device=dev).bfloat16())
    ckv, kpe = cache_pool[key]
    args = [qn, qp, ckv, kpe, indptr.to(dev), indices.to(dev)]
    if last is not None:
        args.append(last.to(dev))
    args.append(float(scale))
    return args


def run_dps(fn, args, B, H):
    out = torch.full((B, H, 512), float("nan"), dtype=torch.bfloat16, device="cuda")
    lse = torch.full((B, H), float("nan"), dtype=torch.float32, device="cuda")
    fn(*args, out, lse)
    torch.cuda.synchronize()
    return out, lse


def workloads(data):
    wls = []
    for path in sorted(glob.glob(os.path.join(data, "workloads", "mla_paged", "mla_paged_decode_*.jsonl"))):
        name = os.path.basename(path)[:-6]
        with open(path) as f:
            for line in f:
                if line.strip():
                    wls.append((name, json.loads(line)["workload"]))
    return wls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "scratch", "kcheck-data"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--time", type=int, default=12, help="number of workloads to time (spread)")
    ap.add_argument("--no-cuda", action="store_true")
    a = ap.parse_args()
    t_start = time.time()
    res = {"correctness": [], "edge": [], "timing": [], "errors": []}
    kernels = {}
    if not a.no_cuda:
        try:
            t0 = time.time()
            kernels["cuda"] = build_cuda().run
            print(f"cuda build {time.time() - t0:.1f}s", flush=True)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"cuda build: {e}"[-3000:])
            print("CUDA BUILD FAILED", str(e)[-3000:], flush=True)
    try:
        kernels["triton"] = load_py(os.path.join(ROOT, "triton", "mla_paged_decode", "mla_paged_decode.py"),
                                    "tp_mla_triton").run
    except Exception as e:  # noqa: BLE001
        res["errors"].append(f"triton import: {e}")
    base = load_py(os.path.join(ROOT, "baselines", "torch_mla_paged_decode", "mla_paged_decode.py"),
                   "tp_mla_base").run
    gen = torch.Generator(device="cuda")
    gen.manual_seed(1234)
    pool = {}
    refs = {}
    summary = {k: [0, 0] for k in kernels}

    def check_case(tag, name, args, B, H, use_ref):
        if use_ref:
            if name not in refs:
                refs[name] = defn(name)[1]
            want = refs[name](*[x.clone() if isinstance(x, torch.Tensor) else x for x in args])
        else:
            want = base(*args)
        row = {"case": tag, "definition": name}
        for kn, fn in kernels.items():
            try:
                got = run_dps(fn, args, B, H)
                ok, worst, nbad = compare(got, want)
            except Exception as e:  # noqa: BLE001
                ok, worst, nbad = False, float("nan"), -1
                res["errors"].append(f"{kn} {tag}: {type(e).__name__}: {e}"[-1500:])
            row[kn] = {"ok": ok, "max_abs": worst, "bad": nbad}
            summary[kn][0 if ok else 1] += 1
            if not ok:
                print(f"FAIL {kn} {tag} max_abs={worst} bad={nbad}", flush=True)
        return row

    # ---- every workload
    wls = workloads(a.data)
    for i, (name, wl) in enumerate(wls):
        ax = wl["axes"]
        blob = None
        for v in wl["inputs"].values():
            if v.get("type") == "safetensors":
                blob = load_st(os.path.join(a.data, v["path"]))
                break
        ps = 64 if name.endswith("ps64") else 1
        H = 16 if "_h16_" in name else 8
        last = blob.get("kv_last_page_len") if ps > 1 else None
        args = make_inputs(ax["batch_size"], H, ax["num_pages"], ps, blob["kv_indptr"], blob["kv_indices"], last,
                           wl["inputs"]["sm_scale"]["value"], gen, pool)
        use_ref = (i % 16 == 0) and ax["num_kv_indices"] < 30000
        row = check_case(wl["uuid"][:8], name, args, ax["batch_size"], H, use_ref)
        row["axes"] = ax
        res["correctness"].append(row)
    print(f"workloads checked: {len(wls)} ({time.time() - t_start:.0f}s) {summary}", flush=True)

    # ---- edge cases (against the definitions' reference)
    def synth(name, lens, ps, H, num_pages=None, scale=0.1352337788608801, tag=""):
        npages = [0 if L == 0 else -(-L // ps) for L in lens]
        indptr = torch.tensor([0] + list(np.cumsum(npages)), dtype=torch.int32)
        tot = int(indptr[-1])
        num_pages = num_pages or max(tot, 1) + 3
        perm = torch.randperm(num_pages)[:tot].to(torch.int32)
        last = torch.tensor([(L - 1) % ps + 1 if L > 0 else 1 for L in lens], dtype=torch.int32) if ps > 1 else None
        args = make_inputs(len(lens), H, num_pages, ps, indptr, perm, last, scale, gen, pool)
        row = check_case(tag or f"{name}:{lens[:6]}", name, args, len(lens), H, True)
        res["edge"].append(row)

    d16p1, d16p64, d8p1 = ("mla_paged_decode_h16_ckv512_kpe64_ps1", "mla_paged_decode_h16_ckv512_kpe64_ps64",
                           "mla_paged_decode_h8_ckv512_kpe64_ps1")
    cases = [
        (d16p1, [0], 1), (d16p1, [1], 1), (d16p1, [0, 5, 0, 300, 0], 1), (d16p1, [20000], 1),
        (d16p1, [7, 1, 513, 64, 65, 2049, 3], 1),
        (d16p64, [0], 64), (d16p64, [1], 64), (d16p64, [64], 64), (d16p64, [0, 64, 1, 0, 129, 4097], 64),
        (d16p64, [30000], 64), (d16p64, [63, 65, 127, 128, 1000] * 8, 64),
        (d8p1, [72], 1), (d8p1, [0, 9, 300, 0, 5000], 1), (d8p1, [1, 2, 3] * 20, 1),
    ]
    for name, lens, ps in cases:
        try:
            synth(name, lens, ps, 8 if "_h8_" in name else 16)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"edge {name} {lens[:6]}: {type(e).__name__}: {e}"[-1500:])
    # an empty kv_indices (all sequences empty), page_size 64
    try:
        args = make_inputs(3, 16, 4, 64, torch.zeros(4, dtype=torch.int32), torch.zeros(0, dtype=torch.int32),
                           torch.ones(3, dtype=torch.int32), 0.135, gen, pool)
        res["edge"].append(check_case("all-empty", d16p64, args, 3, 16, True))
    except Exception as e:  # noqa: BLE001
        res["errors"].append(f"edge all-empty: {e}")
    # inputs not modified
    print(f"edge cases done ({time.time() - t_start:.0f}s) {summary}", flush=True)

    # ---- timing
    try:
        from triton.testing import do_bench
    except Exception:  # noqa: BLE001
        do_bench = None
    if do_bench and a.time:
        def tot_tokens(w):
            return w[1]["axes"]["num_kv_indices"] * (64 if w[0].endswith("ps64") else 1)
        pick = []
        for name in sorted({n for n, _ in wls}):
            ws = sorted([w for w in wls if w[0] == name and w[1]["axes"]["num_pages"] < 200000], key=tot_tokens)
            k = max(2, a.time // 2)
            idx = sorted({round(j * (len(ws) - 1) / (k - 1)) for j in range(k)})
            pick += [ws[j] for j in idx]
        for name, wl in pick:
            ax = wl["axes"]
            blob = None
            for v in wl["inputs"].values():
                if v.get("type") == "safetensors":
                    blob = load_st(os.path.join(a.data, v["path"]))
                    break
            ps = 64 if name.endswith("ps64") else 1
            last = blob.get("kv_last_page_len") if ps > 1 else None
            args = make_inputs(ax["batch_size"], 16, ax["num_pages"], ps, blob["kv_indptr"], blob["kv_indices"],
                               last, 0.1352337788608801, gen, pool)
            ip = blob["kv_indptr"]
            if ps > 1:
                npg = (ip[1:] - ip[:-1]).long()
                tokens = int(((npg - 1) * ps + last.long()).clamp(min=0).sum())
            else:
                tokens = int(ip[-1])
            B = ax["batch_size"]
            bytes_ = tokens * 576 * 2 + B * 16 * 576 * 2 + B * 16 * (512 * 2 + 4) + (B + 1) * 4 + int(blob["kv_indices"].numel()) * 4
            row = {"uuid": wl["uuid"][:8], "definition": name, "batch": B, "tokens": tokens, "bytes": bytes_,
                   "floor_us": bytes_ / 3.006e12 * 1e6}
            out = torch.empty((B, 16, 512), dtype=torch.bfloat16, device="cuda")
            lse = torch.empty((B, 16), dtype=torch.float32, device="cuda")
            for kn, fn in kernels.items():
                try:
                    row[kn + "_us"] = 1e3 * do_bench(lambda: fn(*args, out, lse), warmup=10, rep=40)
                except Exception as e:  # noqa: BLE001
                    res["errors"].append(f"time {kn} {wl['uuid'][:8]}: {e}"[-800:])
            row["torch_us"] = 1e3 * do_bench(lambda: base(*args), warmup=5, rep=40)
            res["timing"].append(row)
            print("time", json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}),
                  flush=True)
    res["summary"] = summary
    res["seconds"] = time.time() - t_start
    print("SUMMARY", json.dumps(summary), "errors:", len(res["errors"]), flush=True)
    for e in res["errors"][:20]:
        print("ERR", e)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
