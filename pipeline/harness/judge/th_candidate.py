"""What verify and time share: a candidate (a built solution and its worker), tensor files to and from the
workers, the definition's reference run in the judge, a cell's verdict, and the results of cells not run."""

import os
import time

import torch

import th_core as C
import th_forkserver
from th_forkserver import ForkedProcess, log
from th_capability import machine_lacks
from th_handle import WorkerDied, WorkerHandle, WorkerStartFailed, WorkerTimeout, take_spare
from th_precision import strict_reference


class Candidate:
    """A built solution plus its current worker (respawned after a crash or timeout)."""

    def __init__(self, ctx, sol, build, role="cand"):
        self.ctx, self.sol, self.build, self.role = ctx, sol, build, role
        self.worker = None
        self.loaded = False
        self.startup_s = None  # {init, ready, load}: seconds the latest worker took to start

    def load_request(self):
        sol = self.sol
        if self.role == "reference":
            return {"op": "load", "binding": "reference", "source": self.ctx.defn["reference"], "dps": False}
        if self.role == "noop":
            return {"op": "load", "binding": "noop", "dps": True}
        entry, sym = sol["spec"]["entry_point"].split("::")
        return {"op": "load", "binding": self.build["binding"], "artifact": self.build.get("artifact"),
                "build_dir": self.build["build_dir"], "pkg": self.build["pkg"], "entry_point": sol["spec"]["entry_point"],
                "symbol": sym, "dps": sol["spec"].get("destination_passing_style", True)}

    def _spawn(self):
        device = "cuda" if self.ctx.device == "cuda" else None
        self.worker = take_spare(device) or WorkerHandle(self.ctx.scratch, self.role, device)
        self.loaded = False

    def prestart(self):
        """Starts the worker now and has it create its CUDA context in the background, to overlap other work.

        Candidate code is not loaded here (that happens in ensure(), with nothing being timed meanwhile)."""
        if self.worker is None:
            self._spawn()

    def ensure(self):
        if self.worker is not None and self.worker.alive and self.loaded:
            return None
        if self.worker is None or not self.worker.alive:
            self._spawn()
        self.loaded = True
        req = self.load_request()
        req.update(device=self.ctx.device, definition=self.ctx.stripped_definition())
        t0 = time.monotonic()
        try:
            try:
                rep = self.worker.request(req, self.ctx.startup_timeout)
            except WorkerStartFailed as e:
                if not isinstance(self.worker.proc, ForkedProcess):
                    raise
                # A forked worker that cannot create a CUDA context: the fork server is not usable on this
                # machine (a preloaded module touched the driver). New interpreters from now on.
                log(f"forked worker could not start ({e}); fork server disabled")
                th_forkserver.mark_failed(str(e))
                self._spawn()
                rep = self.worker.request(req, self.ctx.startup_timeout)
        except WorkerTimeout as e:
            return ("TIMEOUT", timeout_message("worker start and load", time.monotonic() - t0, self.ctx.startup_timeout,
                                               "startup_timeout_s", e))
        except WorkerDied as e:
            return ("COMPILE_ERROR" if self.role == "cand" else "RUNTIME_ERROR", f"loading crashed: {e}")
        finally:
            w = self.worker
            self.startup_s = {"init": w.init_s, "ready": w.ready_s, "load": round(time.monotonic() - t0, 4),
                              "spare": w.spare}
        if not rep.get("ok"):
            return ("COMPILE_ERROR", rep.get("error", "load failed"))
        return None

    def call(self, msg, timeout, since=None, limit=None, what="the cell", key="timeout_s"):
        """Returns (reply or None, (status, message) or None). A timeout's message says how long `what` ran
        (since `since`, a time.monotonic(); else this call alone) and what its limit was (`limit` s, the
        config `key`; else `timeout`)."""
        t0 = time.monotonic()
        try:
            rep = self.worker.request(msg, timeout)
        except WorkerTimeout as e:
            return None, ("TIMEOUT", timeout_message(what, time.monotonic() - (t0 if since is None else since),
                                                     timeout if limit is None else limit, key, e))
        except WorkerDied as e:
            return None, ("RUNTIME_ERROR", str(e))
        if not rep.get("ok"):
            if rep.get("fatal"):
                self.worker.kill()  # never reuse a process after a (possibly sticky) CUDA error
            return rep, ("RUNTIME_ERROR", rep.get("error", "call failed"))
        return rep, None

    def close(self):
        if self.worker:
            self.worker.close()


def timeout_message(what, ran_s, limit_s, key, e):
    """A TIMEOUT's log line: how long the work ran and its limit (not the budget left when the last request
    was sent), and how the worker ended."""
    return (f"{what} ran {ran_s:.1f} s against its limit of {limit_s:g} s ({key}): the worker gave no answer to its "
            f"last request within {e.waited:.1f} s and was killed with its process group ({e.killed})")


def write_inputs(path, inputs):
    tensors = {f"i{i}": v for i, v in enumerate(inputs) if isinstance(v, torch.Tensor)}
    scalars = {str(i): v for i, v in enumerate(inputs) if not isinstance(v, torch.Tensor)}
    C.save_tensors(path, tensors)
    return scalars


def remove_file(path):
    try:
        os.remove(path)
    except OSError:
        pass


def run_reference(ctx, inputs):
    ns = ctx.reference_ns
    if ns is None:
        ns = ctx.reference_ns = {"__name__": "tp_reference_judge"}
        exec(compile(ctx.defn["reference"], f"<reference {ctx.defn['name']}>", "exec"), ns)
    args = [v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]
    # Full-precision reductions and no TF32 while the reference runs (th_precision.py): a reference reduced
    # in fp16 was itself wrong at M >= 136 on an A800. The flags found before are restored afterwards.
    with torch.no_grad(), strict_reference():
        ret = ns["run"](*args)
        outs = C.normalize_outputs(ret, ctx.defn, ctx.device)
        if ctx.device == "cuda":
            torch.cuda.synchronize()
    return outs


def read_outputs(path, n_out, device):
    t = C.load_tensors(path, device)
    outs = []
    for i in range(n_out):
        if f"o{i}" not in t:
            raise ValueError(f"output o{i} missing from worker file")
        outs.append(t[f"o{i}"])
    return outs, t


class Verdict:
    def __init__(self):
        self.status = None
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ratio = 1.0
        self.msgs = []
        self.rigor = []
        self.extra = {}
        self.phase_s = {}

    def phase(self, name, t0):
        """Adds the wall time since `t0` to phase `name` (details.phase_s: where a cell's time goes)."""
        self.phase_s[name] = round(self.phase_s.get(name, 0.0) + time.monotonic() - t0, 4)

    def fail(self, status, msg, rigor=None):
        if self.status is None:
            self.status = status
            self.msgs.append(msg)
            if rigor:
                self.rigor += rigor if isinstance(rigor, list) else [rigor]


class ReferenceFailed(Exception):
    pass


def not_run_result(sol_name, wl, outcome, reason, evaluation=None):
    return {"solution": sol_name, "workload": wl.get("uuid"), "outcome": outcome, "reason": reason,
            "evaluation": evaluation, "details": {}}


def not_runnable_reason(ctx, status, text):
    """Why a failure is the machine's, not the solution's (th_capability.py), or None: a RUNTIME_ERROR or
    COMPILE_ERROR whose error names a capability this machine's torch was probed to lack. Only the error
    itself counts (its first line, "Type: message"), not the traceback below it: a solution that tried
    rms_norm, caught the AttributeError and then failed on its own fallback failed on its own."""
    if status not in ("RUNTIME_ERROR", "COMPILE_ERROR") or not text:
        return None
    return machine_lacks(text.strip().split("\n", 1)[0], ctx.device)


def reference_not_runnable(ctx, sol_name, wl, err):
    """The result of a cell whose reference failed: not runnable here when what failed is the machine's
    (a torch attribute or kernel this torch lacks), else a reference error (the definition's fault)."""
    why = machine_lacks(str(err).strip().split("\n", 1)[0], ctx.device)
    if why:
        return not_run_result(sol_name, wl, "not_runnable_here", f"the reference cannot run here: {why}")
    return not_run_result(sol_name, wl, "reference_error", str(err))


def build_blocker(ctx, b, wls, name):
    """Results for a solution that cannot run here (compile error, toolchain, CPU mode), else None."""
    if b["outcome"] == "built":
        return None
    if b["outcome"] == "compile_error":
        return [not_run_result(name, wl, "evaluated", None, b["evaluation"]) for wl in wls]
    return [not_run_result(name, wl, b["outcome"], b["reason"]) for wl in wls]


def candidates(ctx, sols, builds, wls):
    """Yields (solution, Candidate or the blocked results), starting the next runnable candidate's
    interpreter while the current one works: process start-up dominates the cost of a cell."""
    cands = [None if build_blocker(ctx, builds[s["name"]], wls, s["name"]) else Candidate(ctx, s, builds[s["name"]])
             for s in sols]
    for i, sol in enumerate(sols):
        if cands[i] is None:
            yield sol, build_blocker(ctx, builds[sol["name"]], wls, sol["name"])
            continue
        nxt = next((c for c in cands[i + 1:] if c is not None), None)
        cands[i].prestart()
        if nxt is not None:
            nxt.prestart()
        yield sol, cands[i]
