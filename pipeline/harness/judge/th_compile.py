"""The compile command: every solution built in a child process (th_build.py), in parallel, cached by content."""

import concurrent.futures
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import torch

import th_build
import th_core as C
from th_context import validate_solution
from th_env import arch_of
from th_lifeline import lifeline_argv

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE_DIR = os.path.join(os.path.dirname(HERE), "include")  # pipeline/harness/include: tracepipe_cabi.h


def compile_solutions(ctx, sols):
    """Build every solution (in parallel child processes). Returns {name: compile result}."""
    arch = arch_of(ctx.info) if ctx.device == "cuda" else "9.0a"
    tag = f"torch{torch.__version__}|cuda{torch.version.cuda}|{arch}|{ctx.device}"
    # Never more builds at once than cores: on a 2-core CPU box, 8 nvcc processes only thrash.
    par = max(1, min(int(ctx.cfg.get("parallel_builds") or 4), os.cpu_count() or 1))
    max_jobs = max(1, (os.cpu_count() or 1) // par)
    overrides = ctx.cfg.get("binding_override") or {}
    tmo = float(ctx.cfg.get("compile_timeout_s", 600))

    def one(sol):
        digest = C.solution_hash(sol)
        base = {"solution": sol["name"], "hash": digest, "language": sol["spec"]["language"],
                "cached": False, "seconds": 0.0, "build_dir": None, "reason": None, "log": "", "evaluation": None}
        try:
            binding = th_build.resolve_binding(sol, overrides.get(sol["name"]))
        except ValueError as e:
            base.update(outcome="compile_error", reason=str(e))
            base["evaluation"] = ctx.evaluation("COMPILE_ERROR", str(e))
            return base
        base["binding"] = binding
        if binding == "tvm-ffi" and not ctx.info["tvm_ffi"]:
            base.update(outcome="toolchain_unavailable", reason="binding tvm-ffi needs the tvm_ffi package")
            return base
        # Identical sources build once, whichever definition they serve: a kernel swept over many
        # definitions is one build per sweep point, not one per (definition, point).
        build_digest = C.solution_hash({**sol, "definition": ""})
        bdir, pkg = th_build.plan_build(os.path.join(ctx.work, "builds"), {"name": "build"}, build_digest, binding, tag)
        base["build_dir"] = bdir
        base["pkg"] = pkg
        os.makedirs(bdir, exist_ok=True)
        t0 = time.time()
        done = th_build.cached_build(bdir)
        if done is not None:
            base.update(outcome=done["outcome"], reason=done.get("reason"), cached=True, artifact=done.get("artifact"),
                        seconds=round(time.time() - t0, 3), build_seconds=0.0, log=(done.get("log") or "")[-ctx.log_limit:])
            return base
        req = {"solution": sol, "build_dir": bdir, "binding": binding, "device": ctx.device, "arch": arch,
               "max_jobs": max_jobs, "include_dir": INCLUDE_DIR}
        # Identical sources share one build directory, and concurrent judges may build it at once (th_build
        # serialises the build itself): each call's request, result and log files are its own.
        call = f"{os.getpid()}_{secrets.token_hex(4)}"
        rq = os.path.join(bdir, f"request_{call}.json")
        rs = os.path.join(bdir, f"result_{call}.json")
        lp = os.path.join(bdir, f"build_{call}.log")
        with open(rq, "w") as f:
            json.dump(req, f)
        t0 = time.time()
        with open(lp, "wb") as lf:
            # Under a lifeline (th_lifeline.py): the build process dies with the judge.
            p = subprocess.Popen(lifeline_argv([sys.executable, os.path.join(HERE, "th_build.py"), rq, rs]), stdout=lf,
                                 stderr=subprocess.STDOUT, start_new_session=True, cwd=bdir)
            try:
                p.wait(timeout=tmo)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                base.update(outcome="compile_error", reason=f"build exceeded {tmo:.0f} s")
                base["evaluation"] = ctx.evaluation("COMPILE_ERROR", base["reason"])
                return base
        try:
            with open(rs) as f:
                res = json.load(f)
            os.remove(rs)
        except (OSError, ValueError):
            res = {"outcome": "compile_error", "reason": f"build process died (exit status {p.returncode})"}
        with open(lp, "rb") as f:
            blog = f.read().decode("utf-8", "replace")
        for tmp in (rq, lp):
            os.remove(tmp)
        base.update(outcome=res["outcome"], reason=res.get("reason"), cached=res.get("cached", False),
                    artifact=res.get("artifact"), seconds=round(time.time() - t0, 3),
                    build_seconds=res.get("seconds"))
        base["log"] = ((res.get("log") or "") + "\n" + blog)[-ctx.log_limit:]
        if res["outcome"] == "compile_error":
            base["evaluation"] = ctx.evaluation("COMPILE_ERROR", (base["reason"] or "") + "\n" + base["log"])
        return base

    with concurrent.futures.ThreadPoolExecutor(max_workers=par) as ex:
        results = list(ex.map(one, sols))
    return {r["solution"]: r for r in results}


def cmd_compile(ctx):
    sols = ctx.job.get("solutions") or []
    for i, s in enumerate(sols):
        validate_solution(s, i)
    built = compile_solutions(ctx, sols)
    out = []
    for s in sols:
        r = dict(built[s["name"]])
        r.pop("pkg", None)
        out.append(r)
    return out


def prepare(ctx, sols):
    for i, s in enumerate(sols):
        validate_solution(s, i)
    return compile_solutions(ctx, sols)
