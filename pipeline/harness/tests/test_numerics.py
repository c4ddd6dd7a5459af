"""What decides a verdict: the reference's precision, non-finite values matched against the reference's,
a workload's own tolerances, and failures that are the machine's (not runnable here, never a verdict).
Run by test_harness.py, on the CPU and (the same checks) on a GPU."""

import math
import os

import torch

from th_testlib import check  # first: puts the judge and cheaters/ on sys.path

import catalog  # noqa: E402
import th_capability  # noqa: E402
import th_core as C  # noqa: E402
import th_precision  # noqa: E402
from th_run import run_harness  # noqa: E402


def _verify(work, device, definition, solutions, workloads, config=None):
    job = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": definition, "solutions": solutions,
           "workloads": workloads, "config": dict({"num_trials": 2}, **(config or {}))}
    rc, res, err, _ = run_harness("verify", job, work)
    by = {}
    for r in res.get("results", []):
        by.setdefault(r["solution"], []).append(r)
    return rc, res, by, err


def _status(rs):
    return [r["evaluation"]["status"] if r["evaluation"] else r["outcome"] for r in rs]


# The reference reports the flags it runs under: zeros when fp16 reductions, TF32 and cuDNN TF32 are all off.
FLAGS_DEF = {
    "name": "tp_reference_flags", "op_type": "probe", "axes": {"n": {"type": "const", "value": 3}},
    "inputs": {"x": {"shape": ["n"], "dtype": "float32"}}, "outputs": {"y": {"shape": ["n"], "dtype": "float32"}},
    "reference": ("import torch\n\ndef run(x):\n    m = torch.backends.cuda.matmul\n"
                  "    f16 = float(m.allow_fp16_reduced_precision_reduction)\n"
                  "    tf32 = float(torch.get_float32_matmul_precision() != 'highest')\n"
                  "    dnn = float(torch.backends.cudnn.allow_tf32)\n"
                  "    return x * 0 + torch.tensor([f16, tf32, dnn], device=x.device)\n"),
}


def reference_precision_tests(work, device):
    """References run with reduced-precision reductions and TF32 off, the flags restored afterwards, and every
    trace says so (environment.libs.reference_mode)."""
    before = th_precision.current_flags()
    with th_precision.strict_reference():
        inside = th_precision.current_flags()
    after = th_precision.current_flags()
    strict = {"fp16_reduction": False, "bf16_reduction": False, "tf32": "highest", "cudnn_tf32": False}
    check("strict reference: every flag this torch has is off inside, and restored after",
          inside == {k: strict[k] for k in inside} and after == before and "fp16_reduction" in inside,
          f"before {before} inside {inside} after {after}")
    zeros = catalog.sol("expects_strict", FLAGS_DEF["name"], "import torch\n\ndef run(x):\n    return torch.zeros_like(x)\n")
    rc, res, by, err = _verify(work, device, FLAGS_DEF, [zeros], [{"uuid": "flags", "axes": {}, "inputs": {}}])
    ev = (by.get("expects_strict") or [{}])[0].get("evaluation") or {}
    mode = (ev.get("environment") or {}).get("libs", {}).get("reference_mode", "")
    check("strict reference: the judge's reference ran with fp16 reductions and TF32 off; the trace records the mode",
          rc == 0 and ev.get("status") == "PASSED" and mode.startswith("strict(fp16_reduction=off"),
          f"{ev.get('status')} {mode!r} {ev.get('log', '')[:300]}{err[-500:]}")


# A row with no keys has LSE -inf: the even rows here.
LSE_DEF = {
    "name": "tp_lse_f32", "op_type": "attention", "axes": {"n": {"type": "var"}, "d": {"type": "const", "value": 8}},
    "inputs": {"s": {"shape": ["n", "d"], "dtype": "float32"}}, "outputs": {"lse": {"shape": ["n"], "dtype": "float32"}},
    "reference": ("import torch\n\ndef run(s):\n    empty = torch.arange(s.shape[0], device=s.device) % 2 == 0\n"
                  "    return torch.logsumexp(s.masked_fill(empty[:, None], float('-inf')), -1)\n"),
}
LSE_HONEST = LSE_DEF["reference"]


def matching_infinity_tests(work, device):
    """An inf is accepted where the reference has the same one and rejected elsewhere, whatever the matched
    ratio; a finite value where the reference has -inf is rejected; where the reference has NaN (undefined: an
    attention row with no key) a finite value or NaN is accepted, an inf is not."""
    tol = {"rtol": 1e-2, "atol": 1e-2, "required_matched_ratio": 0.5}
    ninf, inf, nan = float("-inf"), float("inf"), float("nan")
    ref = torch.tensor([ninf, 1.0, inf, nan])
    cases = {"same": ([ninf, 1.0, inf, nan], None), "opposite inf": ([inf, 1.0, inf, nan], "INCORRECT_NUMERICAL"),
             "finite for -inf": ([-1e30, 1.0, inf, nan], "INCORRECT_NUMERICAL"),
             "inf for finite": ([ninf, ninf, inf, nan], "INCORRECT_NUMERICAL"),
             "finite for NaN": ([ninf, 1.0, inf, 0.0], None),
             "inf for NaN": ([ninf, 1.0, inf, ninf], "INCORRECT_NUMERICAL"),
             "NaN for finite": ([ninf, nan, inf, nan], "INCORRECT_NUMERICAL")}
    got = {k: C.compare_outputs([torch.tensor(v)], [ref], tol)[0] for k, (v, _) in cases.items()}
    check("compare: non-finite values match only the same value at the same place (ratio 0.5 does not excuse)",
          all(got[k] == want for k, (_, want) in cases.items()), str(got))
    wrong_place = ("import torch\n\ndef run(s):\n    y = torch.logsumexp(s, -1)\n    y[1::2] = float('-inf')\n"
                   "    return y\n")
    finite = "import torch\n\ndef run(s):\n    return torch.logsumexp(s.masked_fill((torch.arange(s.shape[0], device=s.device) % 2 == 0)[:, None], -1e4), -1)\n"
    sols = [catalog.sol("lse_honest", LSE_DEF["name"], LSE_HONEST), catalog.sol("lse_inf_wrong_place", LSE_DEF["name"], wrong_place),
            catalog.sol("lse_finite_for_inf", LSE_DEF["name"], finite)]
    rc, res, by, err = _verify(work, device, LSE_DEF, sols, [{"uuid": "lse-a", "axes": {"n": 6}, "inputs": {}}])
    st = {k: _status(v) for k, v in by.items()}
    check("matching infinities: -inf where the reference has it passes; -inf elsewhere and a finite value for "
          "-inf fail", rc == 0 and st == {"lse_honest": ["PASSED"], "lse_inf_wrong_place": ["INCORRECT_NUMERICAL"],
                                          "lse_finite_for_inf": ["INCORRECT_NUMERICAL"]}, str(st) + err[-500:])


def workload_tolerance_tests(work, device):
    """A workload's own max_atol / max_rtol / required_matched_ratio replace the job's tolerances for it."""
    d = catalog.DEFS["tp_relu_f32"]
    off = catalog.sol("off_by_0_05", d["name"], "import torch\n\ndef run(x):\n    return torch.relu(x) + 0.05\n")
    quarter = catalog.sol("quarter_wrong", d["name"],
                          "import torch\n\ndef run(x):\n    y = torch.relu(x)\n    y.view(-1)[::4] += 1.0\n    return y\n")
    wls = [{"uuid": "default", "axes": {"n": 8}, "inputs": {}},
           {"uuid": "loose_atol", "axes": {"n": 8}, "inputs": {}, "max_atol": 0.1},
           {"uuid": "loose_rtol", "axes": {"n": 8}, "inputs": {}, "max_atol": 0.0, "max_rtol": 1e9},
           {"uuid": "ratio_half", "axes": {"n": 8}, "inputs": {}, "required_matched_ratio": 0.5}]
    rc, res, by, err = _verify(work, device, d, [off, quarter], wls)
    st = {k: _status(v) for k, v in by.items()}
    want = {"off_by_0_05": ["INCORRECT_NUMERICAL", "PASSED", "PASSED", "INCORRECT_NUMERICAL"],
            "quarter_wrong": ["INCORRECT_NUMERICAL", "INCORRECT_NUMERICAL", "PASSED", "PASSED"]}
    ratio = ((by.get("quarter_wrong") or [{}] * 4)[3].get("evaluation") or {}).get("correctness") or {}
    check("per-workload tolerances: max_atol, max_rtol and required_matched_ratio replace the defaults there",
          rc == 0 and st == want and abs((ratio.get("extra") or {}).get("matched_ratio", 0) - 0.75) < 1e-9,
          f"{st} {ratio}{err[-500:]}")
    rc, res, by, err = _verify(work, device, d, [off], [{"uuid": "bad", "axes": {"n": 8}, "inputs": {}, "max_atol": -1}])
    r = (by.get("off_by_0_05") or [{}])[0]
    check("per-workload tolerances: a bad value is an input error naming the workload and field",
          r.get("outcome") == "input_error" and "workload bad: field max_atol" in (r.get("reason") or ""), str(r))


def machine_capability_tests(work, device):
    """A failure caused by what this machine's torch lacks (probed: a missing attribute, a kernel missing for a
    dtype on the device) is not runnable here, with the reason; a candidate that only claims so in its message
    is blamed as before; a reference that cannot run here makes the cell not runnable."""
    caps = th_capability.capabilities(device)
    missing = {m["capability"] for m in caps["missing"]}
    no_rms = "torch.nn.functional.rms_norm" in missing
    no_half_mm = f"addmm:float16:{device}" in missing
    d = catalog.DEFS["tp_relu_f32"]
    sols = [
        catalog.sol("uses_rms_norm", d["name"], "import torch\nimport torch.nn.functional as F\n\ndef run(x):\n"
                    "    F.rms_norm(x, (x.shape[-1],))\n    return torch.relu(x)\n"),
        catalog.sol("imports_rms_norm", d["name"], "import torch\nfrom torch.nn.functional import rms_norm\n\n"
                    "def run(x):\n    return torch.relu(x)\n"),
        catalog.sol("half_matmul", d["name"], "import torch\n\ndef run(x):\n    e = torch.eye(x.shape[1], dtype=torch.half, "
                    "device=x.device)\n    return torch.relu((x.half() @ e).float())\n"),
        catalog.sol("claims_missing_kernel", d["name"], "def run(x):\n    raise RuntimeError('\"addmm_impl_cpu_\" not "
                    "implemented for \\'Float\\'')\n"),
        catalog.sol("claims_missing_attr", d["name"], "def run(x):\n    raise AttributeError(\"module 'torch' has no "
                    "attribute 'relu'\")\n"),
        # Tries rms_norm, and its own fallback fails: the AttributeError is only in the traceback, not the error.
        catalog.sol("fallback_fails", d["name"], "import torch.nn.functional as F\n\ndef run(x):\n    try:\n"
                    "        return F.rms_norm(x, (x.shape[-1],))\n    except AttributeError:\n"
                    "        raise RuntimeError('my fallback is broken')\n"),
    ]
    rc, res, by, err = _verify(work, device, d, sols, catalog.WORKLOADS["tp_relu_f32"][:1])
    st = {k: _status(v) for k, v in by.items()}
    want = {"uses_rms_norm": ["not_runnable_here" if no_rms else "PASSED"],
            "imports_rms_norm": ["not_runnable_here" if no_rms else "PASSED"],
            "half_matmul": ["not_runnable_here" if no_half_mm else "PASSED"],
            "claims_missing_kernel": ["RUNTIME_ERROR"], "claims_missing_attr": ["RUNTIME_ERROR"],
            "fallback_fails": ["RUNTIME_ERROR" if no_rms else "INCORRECT_NUMERICAL"]}
    reasons = {k: v[0].get("reason") for k, v in by.items() if v and v[0].get("reason")}
    check(f"not runnable here: failures on what this torch lacks (rms_norm missing: {no_rms}, half addmm on "
          f"{device} missing: {no_half_mm}), never a verdict; claims alone are the candidate's",
          rc == 0 and st == want and all("rms_norm" in reasons[k] for k in ("uses_rms_norm", "imports_rms_norm") if no_rms),
          f"{st} {reasons}{err[-500:]}")
    ref_def = dict(d, name="tp_relu_ref_rms", reference="import torch\nimport torch.nn.functional as F\n\ndef run(x):\n"
                   "    F.rms_norm(x, (x.shape[-1],))\n    return torch.relu(x)\n")
    rc, res, by, err = _verify(work, device, ref_def, [catalog.sol("ok", ref_def["name"], catalog.RELU_VR)],
                               catalog.WORKLOADS["tp_relu_f32"][:1])
    r = (by.get("ok") or [{}])[0]
    want_ref = "not_runnable_here" if no_rms else "PASSED"
    got_ref = r.get("outcome") if r.get("outcome") != "evaluated" else (r.get("evaluation") or {}).get("status")
    check("not runnable here: a reference that calls what this torch lacks makes the cell not runnable (not a "
          "reference error)", got_ref == want_ref and (not no_rms or "reference cannot run here" in (r.get("reason") or "")),
          str(r.get("outcome")) + " " + str(r.get("reason")))
    check("capability probe: checked and missing listed, each missing one with its kind and reason",
          caps["checked"] > 30 and all(set(m) == {"capability", "kind", "reason"} for m in caps["missing"]) and
          math.isfinite(caps["checked"]), str(caps)[:300])
