"""A job's context (Ctx): the parsed and checked job file, the device, tolerances, limits and scratch space;
and the checks of a solution's fields (validate_solution)."""

import os
import shutil
import tempfile
import time

import th_core as C
from th_core import JobError
from th_env import _probe_once, environment, now, probe
from th_precision import reference_mode


PROTOCOL = 1
TOP_KEYS = {"protocol", "device", "dataset_root", "work_dir", "definition", "solutions", "workloads",
            "baseline", "config"}
STATUSES = ("PASSED", "INCORRECT_SHAPE", "INCORRECT_NUMERICAL", "INCORRECT_DTYPE", "RUNTIME_ERROR",
            "COMPILE_ERROR", "TIMEOUT")


SCRATCH_MIN_FREE = 8 << 30


def scratch_root(work):
    """Where a job's scratch files go: tensors travel between the judge and its workers through files, so
    memory-backed /dev/shm when it has room (SCRATCH_MIN_FREE), else the work directory.
    TRACEPIPE_SCRATCH overrides both."""
    forced = os.environ.get("TRACEPIPE_SCRATCH")
    if forced:
        os.makedirs(forced, exist_ok=True)
        return forced
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= SCRATCH_MIN_FREE and os.access("/dev/shm", os.W_OK):
            root = os.path.join("/dev/shm", f"tracepipe-{os.getuid()}")
            os.makedirs(root, mode=0o700, exist_ok=True)
            return root
    except OSError:
        pass
    return work


def sweep_stale_scratch(root):
    """Removes the scratch directories of judges that no longer run (killed on a timeout, they could not clean
    up; in /dev/shm their files would hold memory until reboot)."""
    for name in os.listdir(root):
        parts = name.split("_")
        if len(parts) < 3 or parts[0] != "run" or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except OSError:
            pass


class Ctx:
    def __init__(self, job, command):
        unknown = set(job) - TOP_KEYS
        if unknown:
            raise JobError(f"job: unknown top-level field(s) {sorted(unknown)}")
        self.job = job
        self.command = command
        self.info = probe(full=True) if command == "probe" else _probe_once()
        want = job.get("device", "auto")
        if want not in ("auto", "cuda", "cpu"):
            raise JobError(f"job: field device: must be auto, cuda or cpu, not {want!r}")
        if want == "cuda" and self.info["device"] != "cuda":
            raise JobError("job: field device: cuda requested but torch sees no GPU")
        self.device = "cpu" if want == "cpu" else self.info["device"]
        self.env = environment(self.info)
        # Every trace says how its reference was computed (th_precision.py); the schema's libs is free-form.
        self.env["libs"]["reference_mode"] = reference_mode()
        self.cfg = job.get("config") or {}
        self.work = os.path.abspath(job.get("work_dir") or os.path.join(os.getcwd(), ".tracepipe", "harness"))
        os.makedirs(self.work, exist_ok=True)
        root = scratch_root(self.work)
        sweep_stale_scratch(root)
        self.scratch = tempfile.mkdtemp(prefix=f"run_{os.getpid()}_", dir=root)
        os.chmod(self.scratch, 0o700)
        self.reference_ns = None  # the definition's reference, compiled once per job
        self.job_s = {}  # seconds per phase of the job (`job_phase`), reported in the result
        self._phase_t = time.monotonic()
        self.defn = job.get("definition")
        if command != "probe":
            if not isinstance(self.defn, dict):
                raise JobError("job: field definition: required object")
            for k in ("name", "axes", "inputs", "outputs", "reference"):
                if k not in self.defn:
                    raise JobError(f"job: field definition.{k}: required")
            for sec in ("inputs", "outputs"):
                for n, spec in self.defn[sec].items():
                    if "shape" not in spec or "dtype" not in spec:
                        raise JobError(f"job: field definition.{sec}.{n}: needs shape and dtype")
                    C.torch_dtype(spec["dtype"])
        self.tol = C.resolve_tolerance(self.defn, self.cfg) if self.defn else None
        self.log_limit = int(self.cfg.get("log_limit_bytes", 65536))
        self.timeout = float(self.cfg.get("timeout_s", 300))
        self.startup_timeout = float(self.cfg.get("startup_timeout_s", 60))

    def job_phase(self, name):
        """Charges the time since the previous call (or the job's start) to phase `name` of `job_s`."""
        t = time.monotonic()
        self.job_s[name] = round(self.job_s.get(name, 0.0) + t - self._phase_t, 4)
        self._phase_t = t

    def stripped_definition(self):
        """What a worker may know of the definition: no reference code."""
        d = self.defn
        return {"name": d["name"], "op_type": d.get("op_type"), "axes": d["axes"], "inputs": d["inputs"],
                "outputs": d["outputs"]}

    def evaluation(self, status, log_text="", correctness=None, performance=None):
        assert status in STATUSES
        return C.finite_json({"status": status, "correctness": correctness, "performance": performance,
                              "log": log_text, "environment": self.env, "timestamp": now()})

    def cleanup(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


def validate_solution(sol, i):
    where = f"job: field solutions[{i}]"
    if not isinstance(sol, dict):
        raise JobError(f"{where}: must be an object")
    for k in ("name", "spec", "sources"):
        if k not in sol:
            raise JobError(f"{where}.{k}: required")
    spec = sol["spec"]
    if spec.get("language") not in ("python", "triton", "cpp", "cuda", "tilelang"):
        raise JobError(f"{where}.spec.language: unknown {spec.get('language')!r}")
    ep = spec.get("entry_point", "")
    if ep.count("::") != 1:
        raise JobError(f"{where}.spec.entry_point: must contain exactly one '::'")
    if not sol["sources"] or ep.split("::")[0] not in [s.get("path") for s in sol["sources"]]:
        raise JobError(f"{where}.spec.entry_point: entry file not among sources")
