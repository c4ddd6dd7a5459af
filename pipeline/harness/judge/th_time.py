"""The time command: every (solution, workload) cell timed in rounds against the reference and the
baseline, each in its own worker, then rechecked by the definition's evaluator (th_evaluators.py)."""

import math
import os
import secrets
import statistics
import time

import torch

import th_core as C
from th_candidate import (Candidate, ReferenceFailed, candidates, not_run_result, not_runnable_reason, read_outputs,
                          reference_not_runnable, write_inputs)
from th_compile import prepare
from th_core import JobError
from th_env import clocks
from th_evaluators import evaluator_for
from th_handle import settle_workers
from th_timing import (TAIL_CHARGE, TIMING_DEFAULTS, add_gate_report, charge_async_work, input_set_count,
                       peak_bandwidth, tstats, warm_gpu, workload_bytes)


_LAST_TIMED = [float("-inf")]  # when this judge's last timing job ended
WARM_FOR_S = 3.0  # idle for less than this, the GPU is taken to be at its working clocks (each cell logs them)


def cmd_time(ctx):
    sols = ctx.job.get("solutions") or []
    wls = ctx.job.get("workloads") or []
    base_sol = ctx.job.get("baseline")
    all_sols = sols + ([base_sol] if base_sol else [])
    phase = ctx.job_phase
    builds = prepare(ctx, all_sols)
    phase("prepare")
    tcfg = dict(TIMING_DEFAULTS)
    tcfg.update(ctx.cfg.get("timing") or {})
    if ctx.device == "cuda" and not tcfg["flush_bytes"]:
        # Twice the L2, as flashinfer-bench's cold-L2 timing does (nvbench: once): what a call finds in L2
        # then comes from its own fresh inputs only. The flush is device time in every sample's set-up.
        l2 = ctx.info.get("l2_bytes") or (50 << 20)
        tcfg["flush_bytes"] = -(-2 * l2 // (1 << 20)) << 20
    if ctx.device != "cuda":
        tcfg["flush_bytes"] = None
    ref = Candidate(ctx, None, None, role="reference")
    noop = Candidate(ctx, None, None, role="noop")
    base = None
    if base_sol:
        bb = builds[base_sol["name"]]
        if bb["outcome"] == "built":
            base = Candidate(ctx, base_sol, bb)
    for c in (ref, noop, base):  # their CUDA contexts are made while the GPU warms up
        if c:
            c.prestart()
    phase("start_workers")
    # A serving judge whose previous timing job ended moments ago finds the GPU at its working clocks.
    if ctx.device == "cuda" and tcfg.get("gpu_warmup_ms") and time.monotonic() - _LAST_TIMED[0] > WARM_FOR_S:
        warm_gpu(float(tcfg["gpu_warmup_ms"]))
        phase("gpu_warmup")
    results = []
    try:
        for sol, cand in candidates(ctx, sols, builds, wls):
            phase("start_workers")
            if isinstance(cand, list):
                results += cand
                continue
            try:
                for wl in wls:
                    try:
                        results.append(time_one(ctx, tcfg, cand, ref, base, noop, sol, wl))
                    except C.MachineLacks as e:
                        results.append(not_run_result(sol["name"], wl, "not_runnable_here", str(e)))
                    except JobError as e:
                        results.append(not_run_result(sol["name"], wl, "input_error", str(e)))
                    except ReferenceFailed as e:
                        results.append(reference_not_runnable(ctx, sol["name"], wl, e))
                    phase("cells")
            finally:
                cand.close()
                phase("close_workers")
    finally:
        for c in (ref, noop, base):
            if c:
                c.close()
        phase("close_workers")
        _LAST_TIMED[0] = time.monotonic()
    return results


def time_one(ctx, tcfg, cand, ref, base, noop, sol, wl):
    """One (solution, workload) cell timed: input sets, rounds over the roles (_measure), the no-op's overhead,
    the charge for async work, the post-timing recheck by the definition's evaluator, then the verdict."""
    axes = C.axis_values(ctx.defn, wl)
    blobs = C.load_blobs(ctx.defn, wl, axes, ctx.job.get("dataset_root"))
    details = {"rigor": []}
    err = cand.ensure()
    if err:
        return failed_time(ctx, sol, wl, err[0], err[1], details, cand)
    details["startup_s"] = cand.startup_s
    t_phase = time.monotonic()
    phases = details["phase_s"] = {}
    k = input_set_count(ctx, tcfg, axes)
    details["input_sets"] = k
    set_paths, sets, scalars = [], [], None
    for i in range(k):
        inputs = C.gen_inputs(ctx.defn, wl, axes, ctx.device, secrets.randbits(62), blobs)
        p = os.path.join(ctx.scratch, f"tset_{i}.safetensors")
        scalars = write_inputs(p, inputs)
        set_paths.append(p)
        sets.append(inputs)
    phases["inputs"] = round(time.monotonic() - t_phase, 4)
    pidx = C.perturbable(ctx.defn, wl) if tcfg["perturb_inputs"] else []
    pseed = secrets.randbits(40) if pidx else None
    base_req = {"op": "time", "sets": set_paths, "sets_id": secrets.token_hex(8), "scalars": scalars, "axes": axes,
                "perturb_idx": pidx,
                "perturb_seed": pseed, "flush_bytes": tcfg["flush_bytes"], "gate_hold_us": tcfg["gate_hold_us"],
                "reset_persisting_l2": bool(tcfg["reset_persisting_l2"])}
    cache = tcfg.setdefault("_shared", {}).setdefault(wl.get("uuid"), {})
    roles = [("candidate", cand)]
    if tcfg["time_reference"] and "reference" not in cache:
        roles.insert(0, ("reference", ref))
    # The baseline solution judged as a candidate is not timed a second time beside itself: on the decode
    # characterization's H100 run that second timing was 103 of the time stage's 941 s (BENCHMARKS.md,
    # "Sixteenth session"). Its samples are the baseline's, and its speedup against the baseline is 1.
    self_base = bool(base) and base.sol["name"] == sol["name"] and "baseline" not in cache
    if base and "baseline" not in cache and not self_base:
        roles.append(("baseline", base))
    m, failed = _measure(ctx, tcfg, roles, base_req, details, sol, wl)
    if failed:
        return failed
    samples, round_samples = m["samples"], m["round_samples"]
    if self_base:
        # Its samples and tails are the baseline's, for this cell and the workload's later ones: as when
        # the baseline was timed beside itself, its honest tails include its own (a host-side tail torch
        # leaves is not async work), and later candidates are judged against them.
        samples["baseline"] = list(samples["candidate"])
        round_samples["baseline"] = [list(r) for r in round_samples["candidate"]]
        m["tails"]["baseline"] = list(m["tails"].get("candidate") or [])
        details["baseline_from"] = "candidate"
    if tcfg["reuse_reference"]:
        share_honest_roles(samples, round_samples, m["tails"], cache, details)
    _noop_overhead(ctx, noop, base_req, cache, details)
    t_phase = time.monotonic()
    # The candidate's per-sample host times, in sample order (what its `host_submit_median_ms` is taken over).
    cand_host_ms = (m["host_times"].get("candidate") or {}).get("host_submit_median_ms")
    hold_ms = float(tcfg["gate_hold_us"] or 0) / 1000 if ctx.device == "cuda" else 0.0
    uncharged = list(samples.get("candidate") or [])
    charge_async_work(details, samples, m["tails"], cache.get("overhead_tails_ms"), cand_host_ms, hold_ms)
    reused = [(r, c) for r, c in (("reference", ref), ("baseline", base)) if c and r in details.get("reused", [])]
    if TAIL_CHARGE in details["rigor"] and reused:
        confirm_tail_charge(ctx, tcfg, reused, base_req, details, samples, uncharged, m["tails"], cache, cand_host_ms,
                            hold_ms, sol, wl)
    # Post-timing recheck: the last timed output must match the reference on that exact input.
    last_cand = m["last_cand"]
    n_out = len(ctx.defn["outputs"])
    outs, _ = read_outputs(os.path.join(ctx.scratch, "tout_candidate.safetensors"), n_out, ctx.device)
    x = [v.clone() if isinstance(v, torch.Tensor) else v for v in sets[last_cand["last_set"]]]
    if pseed is not None:
        C.apply_perturb(x, pidx, C.perturb_scale(pseed, last_cand["last_call"]))
    recheck = evaluator_for(ctx.defn).recheck(ctx, outs, x, wl)
    st, a, r, ratio, msg = recheck
    phases["recheck"] = round(time.monotonic() - t_phase, 4)
    details["recheck"] = {"status": st or "PASSED", "max_absolute_error": a, "max_relative_error": r,
                          "message": msg}
    return _cell_result(ctx, tcfg, cand, sol, wl, axes, details, samples, round_samples, recheck)


def share_honest_roles(samples, round_samples, tails, cache, details):
    """Reference and baseline are timed once per workload (interleaved with the first candidate) and
    their samples reused for the other candidates of the job: same inputs, same process, same GPU.

    Their tails travel with them: they are the honest tails every later candidate's tail is judged
    against. Without them the no-op's alone was the bar, and 19 honest cells of an H100 run (torch
    baselines and the project's kernels among them) were charged for async work (BENCHMARKS.md,
    "Twelfth session"). Fills `samples`, `round_samples` and `tails` in place from `cache`, or the
    cache from them."""
    for role in ("reference", "baseline"):
        if samples.get(role):
            cache[role] = (samples[role], round_samples[role], tails.get(role) or [])
        elif role in cache:
            samples[role], round_samples[role], tails[role] = cache[role]
            details.setdefault("reused", []).append(role)


def confirm_tail_charge(ctx, tcfg, reused, base_req, details, samples, uncharged, tails, cache, cand_host_ms,
                        hold_ms, sol, wl):
    """A charge judged against reused honest tails is confirmed against honest calls timed now.

    The reference's and baseline's tails were measured beside the workload's first candidate, maybe minutes
    before. On an H100 run both cells the check still charged (of 357) were honest calls of one workload
    (torch.matmul and a Triton GEMM) whose tails and latencies had doubled together, a disturbance of the
    moment (BENCHMARKS.md, "Thirteenth session"). So the reused roles are timed again in this cell, and the
    charge stands only if the candidate's tail still exceeds the honest tails measured now. Work a cheater
    leaves running does not go away when the reference is timed again. `reused` holds the (role, worker) pairs
    whose samples were reused; `details.tail_confirm` records the outcome."""
    fresh_details = {"rigor": [], "phase_s": {}}
    fresh, failed = _measure(ctx, tcfg, reused, base_req, fresh_details, sol, wl)
    details["phase_s"]["confirm"] = round(sum(fresh_details["phase_s"].values()), 4)
    if failed or not fresh or not any(fresh["tails"].values()):
        details["tail_confirm"] = {"confirmed": True, "why": "the honest calls could not be timed again"}
        return
    first = dict(details["tail_ms"])
    now = dict(tails, **{r: t for r, t in fresh["tails"].items() if t})
    details["rigor"].remove(TAIL_CHARGE)
    samples["candidate"] = uncharged
    charge_async_work(details, samples, now, cache.get("overhead_tails_ms"), cand_host_ms, hold_ms)
    details["tail_confirm"] = {"confirmed": TAIL_CHARGE in details["rigor"],
                               "retimed": sorted(r for r, t in fresh["tails"].items() if t),
                               "first": {k: first[k] for k in ("honest_median", "honest_from", "honest_medians")}}


def _measure(ctx, tcfg, roles, base_req, details, sol, wl):
    """The timing rounds: each role (reference, candidate, baseline) times a share of the samples per round,
    who goes first rotating. Returns (measurement, None), or (None, the cell's result) when the candidate
    failed."""
    phases = details["phase_s"]
    rounds = int(tcfg["rounds"])
    per = {k2: max(1, int(math.ceil(tcfg[k2] / rounds))) for k2 in ("min_samples", "max_samples")}
    samples = {r: [] for r, _ in roles}
    host_times = {}  # per role: the host's submission times and the harness's prep times, over the rounds
    tails = {r: [] for r, _ in roles}
    round_samples = {r: [] for r, _ in roles}
    offsets = {r: 0 for r, _ in roles}
    started = time.monotonic()
    deadline = started + ctx.timeout
    if ctx.device == "cuda" and tcfg["settle_workers"]:
        # Workers still creating their CUDA contexts (the next candidate's, blank ones) may overlap the
        # measurement unless asked: contexts created back to back in another process did not move the median
        # of a 1 MiB or a 64 MiB copy on the H100 (BENCHMARKS.md), so by default they do.
        t_phase = time.monotonic()
        settle_workers(ctx.startup_timeout)
        phases["settle"] = round(time.monotonic() - t_phase, 4)
    details["clocks"] = {"before": clocks(reset=True) if ctx.device == "cuda" else None}
    last_cand = None
    warmed = set()
    for rnd in range(rounds):
        order = roles[rnd % len(roles):] + roles[:rnd % len(roles)]  # rotate who goes first
        for role, c in order:
            e = c.ensure()
            if e:
                if role == "candidate":
                    return None, failed_time(ctx, sol, wl, e[0], e[1], details, c)
                details[f"{role}_error"] = e[1]
                continue
            # A role's first round warms it up in full; later rounds find its code loaded and the GPU busy,
            # and only need the few calls that bring its caches back after the other roles ran.
            full = role not in warmed
            warmed.add(role)
            req = dict(base_req, sync_before_end=tcfg["sync_before_end"],
                       warmup_calls=tcfg["warmup_calls"] if full else min(3, tcfg["warmup_calls"]),
                       warmup_ms=tcfg["warmup_ms"] if full else tcfg["warmup_ms"] / 5,
                       min_samples=per["min_samples"], max_samples=per["max_samples"],
                       max_seconds=tcfg["max_seconds"] / rounds, target_rel_stderr=tcfg["target_rel_stderr"],
                       host_bound_rel_stderr=tcfg["host_bound_rel_stderr"],
                       call_offset=offsets[role], binding=role)
            req["out"] = os.path.join(ctx.scratch, f"tout_{role}.safetensors")
            left = max(5.0, deadline - time.monotonic()) if role == "candidate" else ctx.timeout
            t_role = time.monotonic()
            rep, er = (c.call(req, left, since=started, limit=ctx.timeout, what="the cell's timing")
                       if role == "candidate" else c.call(req, left, what=f"timing the {role}"))
            phases[role] = round(phases.get(role, 0.0) + time.monotonic() - t_role, 4)
            if er:
                if role == "candidate":
                    details["rigor"] += (rep or {}).get("rigor") or (["timeout"] if er[0] == "TIMEOUT" else [])
                    return None, failed_time(ctx, sol, wl, er[0], er[1], details, c)
                details[f"{role}_error"] = er[1]
                continue
            offsets[role] = rep["next_call"]
            add_gate_report(details, role, rep, host_times)
            samples[role] += rep["samples_ms"]
            tails[role] += rep.get("tail_ms") or []
            round_samples[role].append(rep["samples_ms"])
            if role == "candidate":
                last_cand = rep
    details["clocks"]["after"] = clocks() if ctx.device == "cuda" else None
    return {"samples": samples, "host_times": host_times, "tails": tails, "round_samples": round_samples,
            "last_cand": last_cand}, None


def _noop_overhead(ctx, noop, base_req, cache, details):
    """Empty-call floor: the fixed cost of the measurement itself (sync + event round trip), measured in every
    cell with the no-op binding (30-60 samples); its tails are among the honest tails charge_async_work compares
    with. Measured once per workload, they were the tails of the workload's first cell: on an H100 the tails of
    honest calls grew over a workload's cells (torch.matmul's own from 16 us to 28-52 us), and later cells were
    charged against the early figure (BENCHMARKS.md, "Twelfth session"). Where the no-op cannot run, the
    workload's last figures stand in."""
    t_phase = time.monotonic()
    if noop.ensure():  # the no-op's worker failed: the workload's last figures, if any
        if "overhead_ms" in cache:
            details["overhead_ms"] = cache["overhead_ms"]
    else:
        # 30-60 samples: a median of the floor and of the tails is all that is read. At up to 200 (a 1 % target
        # it often missed) the no-op took 0.08 s a cell on the H100, up to 0.3 s: 30 s of a 252-s time stage.
        # One input set: the no-op reads none, and each sample stages a set of the same size as the
        # candidate's, so its floor and tails are the same; loading the others only cost time (up to a
        # second a cell on the decode characterization's 1 GiB points).
        rep, er = noop.call(dict(base_req, op="time", sets=base_req["sets"][:1], sets_id=base_req["sets_id"] + "-1",
                                 perturb_idx=[], warmup_calls=5, warmup_ms=5, min_samples=30, max_samples=60,
                                 max_seconds=1, target_rel_stderr=0.01, call_offset=0, binding="noop"), ctx.timeout)
        if not er:
            details["overhead_ms"] = cache["overhead_ms"] = statistics.median(rep["samples_ms"])
            cache["overhead_tails_ms"] = rep.get("tail_ms") or [0.0]
    details["phase_s"]["noop"] = round(time.monotonic() - t_phase, 4)


def _cell_result(ctx, tcfg, cand, sol, wl, axes, details, samples, round_samples, recheck):
    """The timed cell's result: statistics per role, speedups, the roofline floor, and the verdict (the
    recheck's failure, a time below the floor, or PASSED with the candidate's latency)."""
    st, a, r, ratio, msg = recheck
    stats = {role: dict(tstats(samples[role]), samples_ms=samples[role], rounds=round_samples[role])
             for role in samples}
    details.update(stats)
    cmed = stats["candidate"]["median_ms"]
    rmed = stats.get("reference", {}).get("median_ms")
    bmed = stats.get("baseline", {}).get("median_ms")
    oh = details.get("overhead_ms", 0.0) if tcfg["subtract_overhead"] else 0.0
    lat = max(cmed - oh, 1e-9)
    rlat = max(rmed - oh, 1e-9) if rmed else None
    details["speedup_vs_reference"] = rlat / lat if rlat else None
    details["speedup_vs_baseline"] = (max(bmed - oh, 1e-9) / lat) if bmed else None
    bw = peak_bandwidth(ctx, tcfg)
    floor = workload_bytes(ctx, axes, floor=True) / (bw * 1e9) * 1e3 if bw else None
    details["floor_ms"] = floor
    details["peak_bandwidth_gbps"] = bw
    wlog = cand.worker.log_text(ctx.log_limit)
    if st:
        details["rigor"].append("post_timing_recheck_failed")
        corr = {"max_relative_error": r if r is not None else math.inf,
                "max_absolute_error": a if a is not None else math.inf, "extra": None}
        status = st if st == "INCORRECT_NUMERICAL" else st
        ev = ctx.evaluation(status, f"post-timing recheck failed: {msg}\n{wlog}",
                            corr if status == "INCORRECT_NUMERICAL" else None)
        return {"solution": sol["name"], "workload": wl.get("uuid"), "outcome": "evaluated", "reason": None,
                "evaluation": ev, "details": details}
    if floor is not None and cmed < floor * float(tcfg["floor_factor"]):
        details["rigor"].append("below_roofline_floor")
        ev = ctx.evaluation("RUNTIME_ERROR", f"timing rejected: median {cmed:.6f} ms is below the roofline floor "
                            f"{floor:.6f} ms ({bw} GB/s)\n{wlog}")
        return {"solution": sol["name"], "workload": wl.get("uuid"), "outcome": "evaluated", "reason": None,
                "evaluation": ev, "details": details}
    if details["speedup_vs_baseline"] and details["speedup_vs_baseline"] > 10:
        details["flags"] = ["speedup_vs_baseline_over_10x"]
    perf = {"latency_ms": lat, "reference_latency_ms": rlat or 0.0,
            "speedup_factor": (rlat / lat) if rlat else 0.0}
    corr = {"max_relative_error": r, "max_absolute_error": a,
            "extra": {"matched_ratio": ratio} if C.workload_tolerance(ctx.tol, wl)["record_ratio"] else None}
    ev = ctx.evaluation("PASSED", wlog, corr, perf)
    return {"solution": sol["name"], "workload": wl.get("uuid"), "outcome": "evaluated", "reason": None,
            "evaluation": ev, "details": details}


def failed_time(ctx, sol, wl, status, msg, details, c):
    """The result of a timed cell whose candidate failed (its worker killed): not runnable here when the
    failure is what this machine's torch lacks (th_capability.py), else the failure's status."""
    wlog = c.worker.log_text(ctx.log_limit) if c.worker else ""
    if c.worker:
        c.worker.kill()
    why = not_runnable_reason(ctx, status, msg)
    if why:
        return not_run_result(sol["name"], wl, "not_runnable_here", why)
    return {"solution": sol["name"], "workload": wl.get("uuid"), "outcome": "evaluated", "reason": None,
            "evaluation": ctx.evaluation(status, f"{msg}\n{wlog}"), "details": details}
