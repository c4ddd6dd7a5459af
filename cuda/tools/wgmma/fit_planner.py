#!/usr/bin/env python3
"""Fits the sm90 GEMM planner's cost model (gemm_sm90.cu, plan_cost) to a `bench_gemm.py --explore` run.

    python3 cuda/tools/wgmma/fit_planner.py results/h100-2026-12-08-explore.json

The model, in microseconds: waves x (k-tiles per unit x tile[cfg] + unit[cfg]) + [split > 1] x (split +
partial x partial/stage bytes); a stream-K plan (splits 0) counts its CTAs' k-tiles and pieces
instead of waves x units, with the same split and partial terms, linear in its 14 coefficients, fitted by non-negative least squares on the
relative error over every plan that passed its check. Prints the coefficients as gemm_sm90.cu spells them,
and each model's regret: the measured time of the plan it would choose over the best measured plan of the
case (mean, max), for the fit, with each (N, K) shape left out of the fit in turn, and for the planner that
ran (the run's `auto` plan). Needs numpy and scipy.
"""
import json
import math
import sys

import numpy as np
from scipy.optimize import nnls

CFGS = ["128x256", "128x128", "swap8", "swap16", "swap32", "swap64"]
BN = [256, 128, 8, 16, 32, 64]
NAMES = [f"tile_{c}" for c in CFGS] + [f"unit_{c}" for c in CFGS] + ["split", "partial"]


def features(case, plan, sms):
    ci = CFGS.index(plan["cfg"])
    kt = math.ceil(case["K"] / 64)
    f = np.zeros(len(NAMES))
    if plan["splits"] == 0:  # stream-K over `grid` CTAs (gemm_sm90.cu, streamk_cost)
        swap = ci >= 2
        rows, cols = (case["N"], case["M"]) if swap else (case["M"], case["N"])
        iters = math.ceil(rows / 128) * math.ceil(cols / BN[ci]) * kt
        per = math.ceil(iters / plan["grid"])
        f[ci] = per
        f[6 + ci] = math.ceil(per / kt) + 1
    else:
        waves = math.ceil(plan["units"] / sms)
        f[ci] = waves * math.ceil(kt / plan["splits"])
        f[6 + ci] = waves
    if plan["splits"] != 1:
        f[12] = 1.0
        f[13] = (128 * BN[ci] * 4) / ((128 + BN[ci]) * 64 * 2)  # fp32 partial over one stage's bytes
    return f


def fit(rows):
    X = np.array([f for f, _ in rows])
    y = np.array([t for _, t in rows])
    coef, _ = nnls(X / y[:, None], np.ones(len(y)))
    return coef


def regret(cases, coef, sms):
    out = []
    for c in cases:
        good = [p for p in c["plans"] if p.get("ok")]
        chosen = min(good, key=lambda p: features(c, p, sms) @ coef)
        out.append(chosen["us"] / min(p["us"] for p in good))
    return out


def main(path):
    run = json.load(open(path))
    sms, cases = run["sms"], [c for c in run["explore"] if any(p.get("ok") for p in c["plans"])]
    rows = [(features(c, p, sms), p["us"]) for c in cases for p in c["plans"] if p.get("ok")]
    coef = fit(rows)
    print(f"{len(rows)} timed plans on {len(cases)} cases ({run.get('device')})")
    print("kTileUs = {" + ", ".join(f"{v:.3f}f" for v in coef[:6]) + "}")
    print("kUnitUs = {" + ", ".join(f"{v:.3f}f" for v in coef[6:12]) + "}")
    print(f"SM90_SPLIT_US {coef[12]:.2f}f, SM90_PARTIAL_US {coef[13]:.2f}f")
    r = regret(cases, coef, sms)
    loso = []
    for shape in sorted({(c["N"], c["K"]) for c in cases}):
        rest = [(features(c, p, sms), p["us"]) for c in cases if (c["N"], c["K"]) != shape
                for p in c["plans"] if p.get("ok")]
        loso += regret([c for c in cases if (c["N"], c["K"]) == shape], fit(rest), sms)
    ran = [c["auto_us"] / min(p["us"] for p in c["plans"] if p.get("ok")) for c in cases if c.get("auto_us")]
    for name, v in (("fitted model", r), ("each shape left out", loso), ("planner that ran", ran)):
        print(f"regret, {name}: mean {np.mean(v):.3f}, max {np.max(v):.3f} over {len(v)} cases")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cuda/tools/wgmma/results/h100-2026-12-08-explore.json")
