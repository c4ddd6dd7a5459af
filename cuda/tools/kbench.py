"""Standalone GPU check + benchmark driver for tracepipe's kernels (until pipeline/harness exists).

  python3 cuda/tools/kbench.py --defs DIR --out DIR [--ops rmsnorm,fused,decode,gemm] [--sweep]

DIR holds definition JSONs (<op_type>/<name>.json, as in flashinfer-trace). For every manifest
(cuda/*/kernel.json, triton/*/kernel.json, baselines/*/kernel.json) it materialises each sweep
point (default + params) into a build dir with the params file, builds CUDA ones with
torch.utils.cpp_extension.load (sm_90a, all in parallel), imports Triton/Python ones by path,
checks them against the definition's reference (flashinfer-bench rule: an element fails iff
|d| > atol and |d|/(|ref|+1e-8) > rtol, atol = rtol = 1e-2; outputs poisoned with NaN first;
fresh random inputs per workload) and times them (triton.testing.do_bench: L2 flushed before
each call, median). Roofline figures use the copy bandwidth and fp16 matrix rate measured here.
"""
import argparse
import concurrent.futures as cf
import importlib.util
import itertools
import json
import math
import os
import re
import sys
import time
import traceback

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import kcheck  # noqa: E402  (sweep points and params files exactly as the pipeline writes them)
BUILD = os.environ.get("KBENCH_BUILD", "/tmp/kbench_build")
ARCH_FLAGS = ["-O3", "-gencode=arch=compute_90a,code=sm_90a", "-std=c++17"]


def load_defs(d):
    defs = {}
    for dp, _, fs in os.walk(d):
        for f in fs:
            if f.endswith(".json"):
                j = json.load(open(os.path.join(dp, f)))
                defs[j["name"]] = j
    return defs


def manifests(kinds):
    out = []
    for kind in kinds:
        base = os.path.join(ROOT, kind)
        for k in sorted(os.listdir(base)):
            p = os.path.join(base, k, "kernel.json")
            if os.path.exists(p):
                m = json.load(open(p))
                m["_dir"] = os.path.join(base, k)
                out.append(m)
    return out


def points(m, sweep):
    """Full parameter dicts, default first: the sweep points `generate` and tools/kcheck.py use."""
    return [dict(m.get("default", {}), **p) for p in kcheck.sweep_points(m, sweep)]


def materialise(m, idx, params):
    d = os.path.join(BUILD, f"{m['name']}_p{idx}")
    os.makedirs(d, exist_ok=True)
    files = {}
    for s in m["sources"]:
        with open(os.path.join(m["_dir"], s)) as f:
            files[s] = f.read()
    if m.get("params_file"):
        files[m["params_file"]] = kcheck.params_text(m, params)
    for s, text in files.items():  # rewrite only on change: keeps ninja's build up to date
        path = os.path.join(d, s)
        if not (os.path.exists(path) and open(path).read() == text):
            with open(path, "w") as g:
                g.write(text)
    return d


def build_cuda(args):
    name, d, sources = args
    from torch.utils.cpp_extension import load
    t = time.time()
    try:
        load(name=name, sources=[os.path.join(d, s) for s in sources], extra_include_paths=[d],
             extra_cuda_cflags=ARCH_FLAGS, extra_cflags=["-O3"], build_directory=d, verbose=False)
        return name, None, time.time() - t
    except Exception as e:  # noqa: BLE001
        return name, f"{type(e).__name__}: {e}"[-4000:], time.time() - t


def import_py(name, d, entry):
    file, sym = entry.split("::")
    sys.path.insert(0, d)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(d, file))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return getattr(mod, sym)
    finally:
        sys.path.remove(d)


# ---------------------------------------------------------------- inputs per op
def gen_rms(defn, batch, fused):
    h = defn["axes"]["hidden_size"]["value"]
    x = torch.randn(batch, h, dtype=torch.bfloat16, device="cuda")
    w = torch.randn(h, dtype=torch.bfloat16, device="cuda")
    if fused:
        r = torch.randn(batch, h, dtype=torch.bfloat16, device="cuda")
        return [x, r, w], (3 * batch * h + h) * 2
    return [x, w], (2 * batch * h + h) * 2


def gen_decode(defn, lens, extra_pages=7):
    ax = defn["axes"]
    hq, hkv, ps = ax["num_qo_heads"]["value"], ax["num_kv_heads"]["value"], ax["page_size"]["value"]
    dev = "cuda"
    npg = [(l + ps - 1) // ps for l in lens]
    total = sum(npg)
    num_pages = total + extra_pages
    perm = torch.randperm(num_pages, device=dev)[:total].to(torch.int32)
    indptr = torch.tensor([0] + list(itertools.accumulate(npg)), dtype=torch.int32, device=dev)
    last = torch.tensor([l - (n - 1) * ps if n > 0 else 0 for l, n in zip(lens, npg)],
                        dtype=torch.int32, device=dev)
    q = torch.randn(len(lens), hq, 128, dtype=torch.bfloat16, device=dev)
    k = torch.randn(num_pages, ps, hkv, 128, dtype=torch.bfloat16, device=dev)
    v = torch.randn(num_pages, ps, hkv, 128, dtype=torch.bfloat16, device=dev)
    scale = 1.0 / math.sqrt(128)
    ins = [q, k, v, indptr, perm] + ([last] if "kv_last_page_len" in defn["inputs"] else []) + [scale]
    nbytes = 2 * sum(lens) * hkv * 128 * 2 + q.numel() * 2 * 2 + len(lens) * hq * 4
    return ins, nbytes


def gen_gemm(defn, m):
    n, k = defn["axes"]["N"]["value"], defn["axes"]["K"]["value"]
    a = torch.randn(m, k, dtype=torch.float16, device="cuda")
    b = torch.randn(n, k, dtype=torch.float16, device="cuda") * (1.0 / math.sqrt(k))
    return [a, b], (m * k + n * k + m * n) * 2, 2.0 * m * n * k


def out_shapes(defn, ins):
    names = list(defn["inputs"])
    if defn["op_type"] == "gemm":
        return [((ins[0].shape[0], ins[1].shape[0]), torch.float16)]
    if defn["op_type"] == "rmsnorm":
        return [(tuple(ins[0].shape), torch.bfloat16)]
    q = ins[names.index("q")]
    return [(tuple(q.shape), torch.bfloat16), ((q.shape[0], q.shape[1]), torch.float32)]


# ---------------------------------------------------------------- correctness
def check(outs, refs, atol=1e-2, rtol=1e-2):
    worst = {"max_abs": 0.0, "max_rel": 0.0, "ok": True, "why": ""}
    for o, r in zip(outs, refs):
        if tuple(o.shape) != tuple(r.shape):
            return {"ok": False, "why": f"shape {tuple(o.shape)} vs {tuple(r.shape)}"}
        if o.dtype != r.dtype:
            return {"ok": False, "why": f"dtype {o.dtype} vs {r.dtype}"}
        x, y = o.float(), r.float()
        both_inf = torch.isinf(x) & torch.isinf(y) & (torch.sign(x) == torch.sign(y))
        if torch.isnan(x).any():
            return {"ok": False, "why": "NaN in output (unwritten or invalid)"}
        if (torch.isinf(x) & ~both_inf).any():
            return {"ok": False, "why": "inf where the reference is finite"}
        xf = torch.where(both_inf, torch.zeros_like(x), x)
        yf = torch.where(both_inf, torch.zeros_like(y), y)
        ab = (xf - yf).abs()
        rel = ab / (yf.abs() + 1e-8)
        if ab.numel():
            worst["max_abs"] = max(worst["max_abs"], ab.max().item())
            worst["max_rel"] = max(worst["max_rel"], rel.max().item())
            if ((ab > atol) & (rel > rtol)).any():
                worst["ok"] = False
                worst["why"] = f"{int(((ab > atol) & (rel > rtol)).sum())} elements out of tolerance"
    return worst


def call(fn, dps, ins, shapes):
    if dps:
        outs = [torch.full(s, float("nan"), dtype=dt, device="cuda") for s, dt in shapes]
        fn(*ins, *outs)
        return outs
    r = fn(*ins)
    return list(r) if isinstance(r, (tuple, list)) else [r]


def bench(fn, dps, ins, shapes):
    from triton.testing import do_bench
    if dps:
        outs = [torch.empty(s, dtype=dt, device="cuda") for s, dt in shapes]
        f = lambda: fn(*ins, *outs)  # noqa: E731
    else:
        f = lambda: fn(*ins)  # noqa: E731
    return do_bench(f, warmup=10, rep=40, return_mode="median")


# ---------------------------------------------------------------- workloads
def workloads(op, defs, quick):
    """(definition name, generator args, check?, bench?) tuples."""
    W = []
    if op in ("rmsnorm", "fused"):
        pre = "fused_add_rmsnorm_h" if op == "fused" else "rmsnorm_h"
        for n in sorted(d for d in defs if d.startswith(pre)):
            for b in (1, 7, 257):
                W.append((n, b, True, False))
        h = pre + "4096"
        for b in (1, 64, 256, 1024, 8192, 14509):
            W.append((h, b, b >= 1024, True))
        for b in (256, 8192):
            W.append((pre + "7168", b, False, True))
    elif op == "decode":
        import random
        rnd = random.Random(5)
        for n in ("gqa_paged_decode_h32_kv8_d128_ps1", "gqa_paged_decode_h32_kv8_d128_ps64",
                  "gqa_paged_decode_h5_kv1_d128_ps1", "gqa_paged_decode_h48_kv8_d128_ps1",
                  "gqa_paged_decode_h16_kv2_d128_ps64", "gqa_paged_decode_h32_kv16_d128_ps64",
                  "gqa_paged_decode_h24_kv8_d128_ps64"):
            W.append((n, [1], True, False))
            W.append((n, [0, 17, 300, 64, 65], True, False))
            W.append((n, [rnd.randint(1, 6000) for _ in range(16)], True, False))
        for n in ("gqa_paged_decode_h32_kv8_d128_ps1", "gqa_paged_decode_h32_kv8_d128_ps64"):
            for b, l in ((1, 8192), (16, 4096), (64, 4096), (128, 8192), (32, 16384), (1, 32768)):
                W.append((n, [l] * b, b * l <= 16 * 4096 * 4, True))
    elif op == "gemm":
        for n in ("gemm_n4096_k4096", "gemm_n128_k2048", "gemm_n256_k7168", "gemm_n6144_k4096"):
            for m in (1, 7, 16, 17, 100, 256, 1000):
                W.append((n, m, True, False))
        for n in ("gemm_n4096_k4096", "gemm_n6144_k4096", "gemm_n28672_k4096", "gemm_n4096_k14336",
                  "gemm_n128_k2048", "gemm_n2048_k4096", "gemm_n5120_k2048"):
            for m in (1, 16, 64, 256, 1024, 4096):
                W.append((n, m, m in (256, 4096), True))
    return W


def gen(op, defn, arg):
    if op in ("rmsnorm", "fused"):
        ins, nb = gen_rms(defn, arg, op == "fused")
        return ins, nb, 0.0
    if op == "decode":
        ins, nb = gen_decode(defn, arg)
        return ins, nb, 0.0
    ins, nb, fl = gen_gemm(defn, arg)
    return ins, nb, fl


OP_OF = {"rmsnorm": "^rmsnorm", "fused": "^fused_add", "decode": "^gqa_paged_decode", "gemm": "^gemm"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--defs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ops", default="rmsnorm,fused,decode,gemm")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--points", type=int, default=0, help="max sweep points per manifest (0: all)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    defs = load_defs(a.defs)
    ops = a.ops.split(",")
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": [],
           "build": {}, "sweep": []}
    try:
        import triton
        res["triton"] = triton.__version__
    except ImportError:
        pass

    # ceilings
    buf = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(buf)
    from triton.testing import do_bench
    t = do_bench(lambda: dst.copy_(buf), warmup=10, rep=100, return_mode="median")
    bw = 2 * buf.numel() * 4 / (t * 1e-3)
    del buf, dst
    x = torch.randn(8192, 8192, dtype=torch.float16, device="cuda")
    y = torch.randn(8192, 8192, dtype=torch.float16, device="cuda")
    t = do_bench(lambda: torch.matmul(x, y), warmup=10, rep=100, return_mode="median")
    mm = 2 * 8192**3 / (t * 1e-3)
    del x, y
    res["copy_bw_Bps"], res["fp16_mm_flops"] = bw, mm
    print(f"copy bandwidth {bw/1e12:.3f} TB/s, fp16 matmul {mm/1e12:.1f} TFLOP/s", flush=True)

    sel = [m for m in manifests(["cuda", "triton", "baselines"])
           if any(re.match(OP_OF[o].lstrip("^"), m["definition_regex"].lstrip("^")) for o in ops)]
    # materialise all points, build CUDA in parallel
    cands = []  # (manifest, idx, params, dir, modname)
    for m in sel:
        pts = points(m, a.sweep and m["author"] != "baseline")
        for i, p in enumerate(pts[: a.points] if a.points else pts):
            d = materialise(m, i, p)
            cands.append((m, i, p, d, f"{m['name']}_p{i}"))
    cuda_jobs = [(mn, d, m["sources"]) for m, i, p, d, mn in cands if m["spec"]["language"] == "cuda"]
    t0 = time.time()
    with cf.ProcessPoolExecutor(max_workers=a.jobs) as ex:
        for name, err, dt in ex.map(build_cuda, cuda_jobs):
            res["build"][name] = {"ok": err is None, "seconds": round(dt, 1), "error": err}
            print(f"build {name}: {'ok' if err is None else 'FAILED'} {dt:.0f}s", flush=True)
            if err:
                print(err[-2000:], flush=True)
    print(f"builds done in {time.time()-t0:.0f}s", flush=True)

    fns = {}
    for m, i, p, d, mn in cands:
        try:
            if m["spec"]["language"] == "cuda":
                if not res["build"][mn]["ok"]:
                    continue
                from torch.utils.cpp_extension import load
                mod = load(name=mn, sources=[os.path.join(d, s) for s in m["sources"]],
                           extra_include_paths=[d], extra_cuda_cflags=ARCH_FLAGS,
                           extra_cflags=["-O3"], build_directory=d, verbose=False)
                fns[mn] = getattr(mod, m["spec"]["entry_point"].split("::")[1])
            else:
                fns[mn] = import_py(mn, d, m["spec"]["entry_point"])
        except ImportError as e:
            print(f"{mn}: unavailable ({e})", flush=True)
            res["build"][mn] = {"ok": False, "error": f"unavailable: {e}"}
        except Exception as e:  # noqa: BLE001
            print(f"{mn}: load failed: {e}", flush=True)
            res["build"][mn] = {"ok": False, "error": str(e)[-2000:]}

    for op in ops:
        ws = workloads(op, defs, False)
        mine = [c for c in cands if c[4] in fns and re.search(c[0]["definition_regex"], ws[0][0])]
        # sweep: pick the best point per manifest on the bench workloads (mean time ratio)
        best = {}
        for m in {c[0]["name"]: c[0] for c in mine}.values():
            pts = [c for c in mine if c[0]["name"] == m["name"]]
            if len(pts) == 1:
                best[m["name"]] = pts[0]
                continue
            bws = [w for w in ws if w[3]]
            bws = [bws[len(bws) // 3], bws[-1]] if len(bws) > 2 else bws
            scores = []
            for c in pts:
                tot, ok = 0.0, True
                for dn, arg, _, _ in bws:
                    defn = defs[dn]
                    ins, nb, fl = gen(op, defn, arg)
                    try:
                        outs = call(fns[c[4]], c[0]["spec"]["destination_passing_style"], ins,
                                    out_shapes(defn, ins))
                        refmod = {}
                        exec(defn["reference"], refmod)
                        ref = refmod["run"](*ins)
                        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
                        if not check(outs, ref)["ok"]:
                            ok = False
                        tot += math.log(bench(fns[c[4]], c[0]["spec"]["destination_passing_style"],
                                              ins, out_shapes(defn, ins)))
                    except Exception as e:  # noqa: BLE001
                        ok = False
                        print(f"sweep {c[4]} {dn} {arg if not isinstance(arg, list) else len(arg)}: {e}")
                res["sweep"].append({"op": op, "solution": c[4], "params": c[2], "ok": ok,
                                     "log_time_sum": tot})
                print(f"sweep {op} {c[4]} {c[2]} ok={ok} score={tot:.3f}", flush=True)
                if ok:
                    scores.append((tot, c))
            best[m["name"]] = min(scores, key=lambda s: s[0])[1] if scores else pts[0]
        for dn, arg, do_check, do_bench_ in ws:
            defn = defs[dn]
            ins, nb, fl = gen(op, defn, arg)
            shapes = out_shapes(defn, ins)
            ref = None
            if do_check or not do_bench_:
                refmod = {}
                exec(defn["reference"], refmod)
                r = refmod["run"](*ins)
                ref = list(r) if isinstance(r, (tuple, list)) else [r]
            size = arg if not isinstance(arg, list) else {"batch": len(arg), "lens_sum": sum(arg),
                                                          "max_len": max(arg)}
            row_t = {}
            for name, c in best.items():
                mn, dps = c[4], c[0]["spec"]["destination_passing_style"]
                rec = {"op": op, "definition": dn, "size": size, "solution": mn, "params": c[2]}
                try:
                    if ref is not None:
                        rec["check"] = check(call(fns[mn], dps, ins, shapes), ref)
                    if do_bench_:
                        rec["ms"] = bench(fns[mn], dps, ins, shapes)
                        floor = max(nb / bw, fl / mm if fl else 0.0) * 1e3
                        rec["floor_ms"] = floor
                        rec["pct_roofline"] = 100 * floor / rec["ms"]
                        row_t[name] = rec["ms"]
                except Exception as e:  # noqa: BLE001
                    rec["error"] = f"{type(e).__name__}: {e}"[-1500:]
                    traceback.print_exc()
                res["results"].append(rec)
            if do_bench_:
                base = [v for k, v in row_t.items() if k.startswith("baseline_")]
                line = f"{op:8s} {dn:38s} {str(size):48s} " + " ".join(
                    f"{k.replace('tp_', '').replace('baseline_', 'b_')}={v*1e3:.1f}us" for k, v in row_t.items())
                if base:
                    line += "  speedup " + " ".join(f"{k.replace('tp_','')}={base[0]/v:.2f}x"
                                                    for k, v in row_t.items() if not k.startswith("baseline_"))
                print(line, flush=True)
        bad = [r for r in res["results"] if r["op"] == op and (("check" in r and not r["check"]["ok"]) or "error" in r)]
        print(f"== {op}: {len(bad)} failing records", flush=True)
        for r in bad[:20]:
            print("   FAIL", r["solution"], r["definition"], r["size"], r.get("check", {}).get("why"), r.get("error", ""))
        with open(os.path.join(a.out, "kbench.json"), "w") as f:
            json.dump(res, f, indent=1, default=str)
    print("done", flush=True)


if __name__ == "__main__":
    main()
