"""The verify command: every (solution, workload) cell judged for correctness by the definition's evaluator
(th_evaluators.py), each solution in its own worker."""

import os
import time

import torch

import th_core as C
from th_candidate import ReferenceFailed, candidates, not_run_result, not_runnable_reason, reference_not_runnable
from th_compile import prepare
from th_core import JobError
from th_evaluators import evaluator_for
from th_share import GpuShare, ran_out_of_memory


def verify_workload(ctx, cand, wl):
    """One (solution, workload) cell, judged by the definition's evaluator. Returns a Verdict."""
    axes = C.axis_values(ctx.defn, wl)
    blobs = C.load_blobs(ctx.defn, wl, axes, ctx.job.get("dataset_root"))
    return evaluator_for(ctx.defn).verify(ctx, cand, wl, axes, blobs)


def cmd_verify(ctx):
    sols = ctx.job.get("solutions") or []
    wls = ctx.job.get("workloads") or []
    builds = prepare(ctx, sols)
    ctx.job_phase("prepare")
    results = []
    for sol, cand in candidates(ctx, sols, builds, wls):
        ctx.job_phase("start_workers")
        if isinstance(cand, list):
            results += cand
            continue
        try:
            for wl in wls:
                results.append(verify_one(ctx, cand, sol, wl))
                ctx.job_phase("cells")
        finally:
            cand.close()
            ctx.job_phase("close_workers")
    return results


def _load_failure(ctx, cand, sol, wl):
    """The cell's result when the candidate's worker cannot start or load it, else None."""
    load_err = cand.ensure()
    if not load_err:
        return None
    log_t = load_err[1] + "\n" + cand.worker.log_text(ctx.log_limit)
    cand.worker.kill()
    why = not_runnable_reason(ctx, load_err[0], load_err[1])
    if why:  # an import of what this torch lacks: the machine's failure, not the solution's
        return not_run_result(sol["name"], wl, "not_runnable_here", why)
    return not_run_result(sol["name"], wl, "evaluated", None, ctx.evaluation(load_err[0], log_t))


def verify_one(ctx, cand, sol, wl):
    failed = _load_failure(ctx, cand, sol, wl)
    if failed:
        return failed
    t0 = time.time()
    share = GpuShare(os.path.dirname(ctx.scratch))

    def attempt(lock):
        """(verdict, None), or (None, the reference's failure)."""
        with lock:
            try:
                return verify_workload(ctx, cand, wl), None
            except ReferenceFailed as e:
                return None, e

    retried = None
    try:
        v, ref_err = attempt(share.shared())
        if ran_out_of_memory(str(ref_err or "")) or (
                v is not None and v.status == "RUNTIME_ERROR" and any(ran_out_of_memory(m) for m in v.msgs)):
            # Other judges on this GPU may have held the memory: run the cell again with the GPU to itself,
            # in a fresh worker, and blame the candidate only if it runs out of memory alone.
            retried = "out of device memory beside other judges; run again alone"
            cand.worker.kill()
            failed = _load_failure(ctx, cand, sol, wl)
            if failed:
                return failed
            v, ref_err = attempt(share.exclusive())
    except C.MachineLacks as e:
        return not_run_result(sol["name"], wl, "not_runnable_here", str(e))
    except JobError as e:
        return not_run_result(sol["name"], wl, "input_error", str(e))
    finally:
        if ctx.device == "cuda":
            torch.cuda.empty_cache()  # what this cell held must not crowd the other judges' next cells
    if ref_err:
        return reference_not_runnable(ctx, sol["name"], wl, ref_err)
    why = not_runnable_reason(ctx, v.status, "\n".join(v.msgs))
    if why:  # it failed on what this machine's torch lacks (probed): not runnable here, no verdict
        cand.worker.kill()
        return not_run_result(sol["name"], wl, "not_runnable_here", why)
    log_t = "\n".join(v.msgs + ([f"note: {retried}"] if retried else []))
    wlog = cand.worker.log_text(ctx.log_limit) if cand.worker else ""
    if wlog:
        log_t = (log_t + "\n" + wlog).strip()
    corr = {"max_relative_error": v.max_rel, "max_absolute_error": v.max_abs, "extra": v.extra or None}
    status = v.status or "PASSED"
    if status not in ("PASSED", "INCORRECT_NUMERICAL"):
        corr = None
    if status not in ("PASSED",):
        cand.worker.kill()  # a fresh process for the next workload after any failure
    ev = ctx.evaluation(status, log_t, corr, None)
    return {"solution": sol["name"], "workload": wl.get("uuid"), "outcome": "evaluated", "reason": None,
            "evaluation": ev, "details": {"rigor": v.rigor, "seconds": round(time.time() - t0, 3),
                                          "trials": int(ctx.cfg.get("num_trials", 3)), "phase_s": v.phase_s,
                                          "startup_s": cand.startup_s, "retried": retried}}
