"""DefaultEvaluator: how a cell's correctness is judged for every definition no special evaluator claims
(th_evaluators.py chooses)."""

import os
import secrets
import time

import th_core as C
from th_candidate import ReferenceFailed, Verdict, read_outputs, remove_file, run_reference, write_inputs


class DefaultEvaluator:
    """The ordinary evaluator: the candidate's outputs are compared with the definition's reference on fresh
    inputs (verify), and its last timed output with the reference on that same input (recheck)."""

    @classmethod
    def can_evaluate(cls, definition):
        """Whether this evaluator applies to `definition` (the default applies to every one)."""
        return True

    @classmethod
    def verify(cls, ctx, cand, wl, axes, blobs):
        """One (solution, workload) cell: trials of candidate → reference → candidate. Returns a Verdict."""
        v = Verdict()
        tol = C.workload_tolerance(ctx.tol, wl)  # the workload's own tolerances, where it carries them
        n_out = len(ctx.defn["outputs"])
        trials = int(ctx.cfg.get("num_trials", 3))
        started = time.monotonic()
        deadline = started + ctx.timeout
        for trial in range(trials):
            seed = secrets.randbits(62)
            t_in = time.monotonic()
            pristine = C.gen_inputs(ctx.defn, wl, axes, ctx.device, seed, blobs)
            ipath = os.path.join(ctx.scratch, f"in_{trial}.safetensors")
            scalars = write_inputs(ipath, pristine)
            v.phase("inputs", t_in)
            outs = []
            for k, poison in enumerate((0, 1)):
                if k == 1 and not outs:
                    break
                opath = os.path.join(ctx.scratch, f"out_{trial}_{k}.safetensors")
                left = max(1.0, deadline - time.monotonic())
                t_call = time.monotonic()
                rep, err = cand.call({"op": "call", "inputs": ipath, "out": opath, "scalars": scalars, "axes": axes,
                                      "poison": poison}, left, since=started, limit=ctx.timeout)
                v.phase("calls", t_call)
                if err:
                    tag = "timeout" if err[0] == "TIMEOUT" else \
                        "result_channel_tampering" if "result_channel_tampering" in err[1] else "worker_crashed"
                    v.fail(err[0], err[1], (rep or {}).get("rigor") or ([tag] if rep is None else None))
                    return v
                try:
                    o, _ = read_outputs(opath, n_out, ctx.device)
                except (OSError, ValueError) as e:
                    v.fail("RUNTIME_ERROR", f"unreadable worker output: {e}", "worker_output_invalid")
                    return v
                finally:
                    remove_file(opath)
                outs.append(o)
                if k == 0:
                    t_ref = time.monotonic()
                    try:
                        ref = run_reference(ctx, pristine)
                    except Exception as e:  # noqa: BLE001
                        raise ReferenceFailed(f"reference raised {type(e).__name__}: {e}") from e
                    v.phase("reference", t_ref)
            remove_file(ipath)
            t_cmp = time.monotonic()
            for k, o in enumerate(outs):
                status, a, r, ratio, msg = C.compare_outputs(o, ref, tol)
                if status in ("INCORRECT_SHAPE", "INCORRECT_DTYPE"):
                    v.fail(status, f"trial {trial} call {k + 1}: {msg}")
                    return v
                if status == "INCORRECT_NUMERICAL" and msg.startswith("output") and not msg.endswith("exceeded"):
                    v.max_abs, v.max_rel = a, r
                    v.fail(status, f"trial {trial} call {k + 1}: {msg}")
                    return v
                v.max_abs, v.max_rel = max(v.max_abs, a), max(v.max_rel, r)
                v.ratio = min(v.ratio, ratio)
                if status:
                    v.fail(status, f"trial {trial} call {k + 1}: tolerance exceeded (matched ratio {ratio:.6f})")
            if v.status is None and len(outs) == 2:
                st, a, r, ratio, msg = C.compare_outputs(outs[1], outs[0], tol)
                if st:
                    v.fail("INCORRECT_NUMERICAL", f"trial {trial}: candidate disagrees with itself ({msg})",
                           "self_inconsistent")
            v.phase("compare", t_cmp)
            if v.status == "INCORRECT_NUMERICAL":
                continue  # keep accumulating max errors over trials, as flashinfer-bench does
        if tol["record_ratio"]:
            v.extra["matched_ratio"] = v.ratio
        return v

    @classmethod
    def recheck(cls, ctx, outs, inputs, wl=None):
        """Post-timing recheck: the last timed outputs `outs` against the reference on that exact input (with
        the tolerances of workload `wl`). Returns (status or None, max absolute error, max relative error,
        matched ratio, message)."""
        try:
            r_out = run_reference(ctx, inputs)
        except Exception as ex:  # noqa: BLE001
            raise ReferenceFailed(f"reference raised {type(ex).__name__}: {ex}") from ex
        return C.compare_outputs(outs, r_out, C.workload_tolerance(ctx.tol, wl or {}))
