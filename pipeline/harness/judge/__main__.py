"""tracepipe evaluation harness: the judge. See ../PROTOCOL.md.

    python3 pipeline/harness/judge {probe|compile|verify|time} --job JOB.json --out RESULT.json
    python3 pipeline/harness/judge serve      # many jobs, one judge (PROTOCOL.md §7)

The judge generates inputs from secret seeds, computes references, compares and computes statistics.
Candidate code never runs here: builds run in th_build.py children, calls in th_worker.py children, each in
its own process group, killed as a group on timeout. Run as a directory, Python puts this folder on
sys.path, so its modules import each other flat (`import th_core`):

    th_env.py        probe, clocks          th_handle.py       worker processes, spares
    th_context.py    the job (Ctx)          th_compile.py      the compile command
    th_candidate.py  candidates, reference  th_verify.py       the verify command
    th_evaluators.py the evaluator registry (th_eval_default.py, th_eval_sampling.py; th_tvd.py its statistics)
    th_timing.py     timing arithmetic      th_time.py         the time command
    th_precision.py  references' precision  th_capability.py   what this torch lacks (not runnable here)
    th_lifeline.py   children die with us   th_l2.py           the persisting-L2 reset between timed calls
"""

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from th_forkserver import _FORK_SERVER, close_fork_server, fork_server  # noqa: E402  (standard library only)

if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    fork_server()  # a serving judge: its fork server imports torch while this process does too

import torch  # noqa: E402

import th_core as C  # noqa: E402
from th_context import PROTOCOL, Ctx, scratch_root, sweep_stale_scratch  # noqa: E402
from th_core import JobError  # noqa: E402
from th_env import _CLOCKS, ClockMonitor, _probe_once, close_clocks  # noqa: E402
from th_handle import _INITIALIZING, close_spares, top_up_spares  # noqa: E402

# Each command's module, imported when a job of it comes: a judging stage's cell keys hold the judge modules
# its command reaches (pipeline/harness/judge_code.ts), so editing the time command re-runs no verify cell.
COMMANDS = {"compile": ("th_compile", "cmd_compile"), "verify": ("th_verify", "cmd_verify"),
            "time": ("th_time", "cmd_time")}


def run_job(command, job_path, out, persistent=False):
    """Runs one command on one job file and writes its result file. Returns the exit status of PROTOCOL.md.

    `persistent` (serve mode) keeps the fork server and the clock monitor for the next job."""
    result = {"protocol": PROTOCOL, "command": command, "ok": True, "error": None, "results": []}
    code = 0
    ctx = None
    try:
        job = {}
        if job_path:
            try:
                with open(job_path) as f:
                    job = json.load(f)
            except (OSError, ValueError) as e:
                raise JobError(f"{job_path}: cannot read job JSON: {e}") from e
            if not isinstance(job, dict):
                raise JobError(f"{job_path}: the job must be a JSON object")
        elif command != "probe":
            raise JobError("--job is required for " + command)
        ctx = Ctx(job, command)
        result["device"] = ctx.device
        result["environment"] = ctx.env
        if command == "probe":
            result["probe"] = ctx.info
        else:
            if command in ("verify", "time"):
                fork_server(ctx.scratch)  # starts importing torch now, while the judge builds and plans
            module, name = COMMANDS[command]
            result["results"] = getattr(importlib.import_module(module), name)(ctx)
            result["job_s"] = ctx.job_s
    except JobError as e:
        msg = str(e)
        if job_path and not msg.startswith(job_path):
            msg = f"{job_path}: {msg}"
        result.update(ok=False, error=msg)
        print(f"error: {msg}", file=sys.stderr)
        code = 2
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result.update(ok=False, error=f"internal error: {type(e).__name__}: {e}")
        code = 1
    finally:
        _INITIALIZING.clear()
        if not persistent:
            close_fork_server()
            close_clocks()
        elif torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        if ctx:
            ctx.cleanup()
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(C.finite_json(result), f, indent=1, allow_nan=False)
    os.replace(tmp, out)
    return code


def serve():
    """Serve mode (PROTOCOL.md §6): one judge process answers many jobs, so torch, the CUDA context, the fork
    server and the clock monitor are paid for once per stage instead of once per job."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever prints to stdout lands in the log; only replies go to the caller's pipe
    info = _probe_once()
    root = scratch_root(os.path.join(os.getcwd(), ".tracepipe", "harness"))
    sweep_stale_scratch(root)
    home = tempfile.mkdtemp(prefix=f"run_{os.getpid()}_serve_", dir=root)
    spares = {"compile": 0, "verify": 2, "time": 4, "probe": 0}  # workers a job of that kind starts first
    if info["device"] == "cuda":
        torch.zeros(1, device="cuda")  # the judge's own context, made before the first job
        _CLOCKS["m"] = ClockMonitor()  # nvidia-smi's first reading takes a while: have it before timing asks
    replies.write(json.dumps({"tp_ready": PROTOCOL, "device": info["device"]}) + "\n")
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                command, job_path, out = req["command"], req.get("job"), req["out"]
                if command not in ("probe", "compile", "verify", "time"):
                    raise ValueError(f"unknown command {command!r}")
            except (ValueError, KeyError, TypeError) as e:
                replies.write(json.dumps({"tp_error": f"bad serve request: {e}"}) + "\n")
                continue
            code = run_job(command, job_path, out, persistent=True)
            if _FORK_SERVER.get("fs") and _FORK_SERVER["fs"].proc.poll() is not None:
                close_fork_server()  # the fork server died: the next job starts a new one
            if code == 0 and spares[command] and fork_server(home):
                # The next job is most likely of the same kind: have its first workers ready when it comes.
                top_up_spares(home, spares[command], "cuda" if info["device"] == "cuda" else None)
            replies.write(json.dumps({"tp_done": req.get("id"), "code": code}) + "\n")
            if code == 1:
                break  # an internal error may have left the judge's CUDA context unusable: start afresh
    finally:
        close_spares()
        close_fork_server()
        close_clocks()
        shutil.rmtree(home, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="tracepipe evaluation harness (see PROTOCOL.md)")
    ap.add_argument("command", choices=["probe", "compile", "verify", "time", "serve"])
    ap.add_argument("--job")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.command == "serve":
        serve()
        return 0
    if not a.out:
        ap.error("--out is required")
    return run_job(a.command, a.job, a.out)


if __name__ == "__main__":
    sys.exit(main())
