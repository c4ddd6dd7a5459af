"""The judge's environment: device and toolchain facts (probe), and the clock monitor of timed cells."""

import datetime
import os
import platform
import shutil
import signal
import subprocess
import threading
import time

import torch

import th_build
from th_capability import capabilities
from th_lifeline import lifeline_argv


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001
        return None


def probe(full=True):
    """Device and toolchain facts; `full` adds the slower nvcc/nvidia-smi queries and the capability probes
    (probe command only)."""
    cuda = torch.cuda.is_available()
    info = {"device": "cuda" if cuda else "cpu", "gpu_name": None, "compute_capability": None, "sm_arch": None,
            "driver": None, "l2_bytes": None, "sm_count": None, "torch": torch.__version__,
            "triton": _version("triton"), "cuda": torch.version.cuda, "python": platform.python_version(),
            "nvcc": None, "tvm_ffi": False, "flashinfer": False, "ninja": shutil.which("ninja") is not None}
    for mod in ("tvm_ffi", "flashinfer"):
        try:
            __import__(mod)
            info[mod] = True
        except Exception:  # noqa: BLE001
            pass
    if full:  # what this torch cannot do on the device (th_capability.py): `tp doctor` lists it
        info["capabilities"] = capabilities(info["device"])
    nv = th_build.nvcc_path() if full else None
    if nv:
        try:
            out = subprocess.run([nv, "--version"], capture_output=True, text=True, timeout=30).stdout
            info["nvcc"] = out.strip().splitlines()[-1] if out.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    if cuda:
        p = torch.cuda.get_device_properties(0)
        info["gpu_name"] = p.name
        info["compute_capability"] = f"{p.major}.{p.minor}"
        info["sm_arch"] = f"sm_{p.major}{p.minor}" + ("a" if p.major >= 9 else "")
        info["sm_count"] = p.multi_processor_count
        info["l2_bytes"] = getattr(p, "L2_cache_size", None)
        try:
            if not full:
                raise OSError("skipped")
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout
            info["driver"] = out.strip().splitlines()[0] if out.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def arch_of(info):
    cc = info.get("compute_capability")
    if not cc:
        return None
    major = int(cc.split(".")[0])
    return cc + ("a" if major >= 9 else "")


def environment(info):
    hw = info["gpu_name"] or ("cpu:" + (platform.processor() or platform.machine()))
    libs = {k: v for k, v in (("torch", info["torch"]), ("triton", info["triton"]), ("cuda", info["cuda"]))
            if v}
    return {"hardware": hw, "libs": libs}


CLOCK_FIELDS = ["clocks.sm", "clocks.max.sm", "clocks.mem", "power.draw", "temperature.gpu",
                "clocks_event_reasons.active"]


def _clock_keys(fields):
    return [x.split(".")[-2] + "_" + x.split(".")[-1] if x.count(".") > 1 else x.replace(".", "_") for x in fields]


def smi_device_args(visible=None):
    """`-i <GPU>` for the GPU this judge sees: nvidia-smi ignores CUDA_VISIBLE_DEVICES and would report every
    GPU of the host, one line each, and a judge on one lane of a multi-GPU host would record another GPU's
    clocks. The pipeline pins a judge by UUID (or index); anything else (a MIG id, none) leaves it out."""
    first = (os.environ.get("CUDA_VISIBLE_DEVICES", "") if visible is None else visible).split(",")[0].strip()
    return ["-i", first] if first.isdigit() or first.startswith("GPU-") else []


class ClockMonitor:
    """One `nvidia-smi --query-gpu ... -lms 100` for the whole job, read by a thread: a snapshot per timed cell
    costs nothing (starting nvidia-smi twice per cell cost more than timing a small kernel), and the
    throttle reasons are OR-ed over the cell instead of sampled at its two ends."""

    def __init__(self):
        self.latest, self.reasons, self.proc = None, 0, None
        self.lock = threading.Lock()
        if not shutil.which("nvidia-smi"):
            return
        try:
            # Under a lifeline (th_lifeline.py): a judge killed outright leaves no nvidia-smi polling the GPU.
            self.proc = subprocess.Popen(lifeline_argv(["nvidia-smi", *smi_device_args(),
                                                        "--query-gpu=" + ",".join(CLOCK_FIELDS),
                                                        "--format=csv,noheader,nounits", "-lms", "100"]),
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         start_new_session=True)
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        keys = _clock_keys(CLOCK_FIELDS)
        for line in self.proc.stdout:
            vals = [v.strip() for v in line.strip().split(",")]
            if len(vals) != len(keys):
                continue
            snap = dict(zip(keys, vals))
            with self.lock:
                self.latest = snap
                try:
                    self.reasons |= int(snap["clocks_event_reasons_active"], 16)
                except ValueError:
                    pass

    def snapshot(self, reset=False):
        """The latest reading plus the throttle reasons seen since the last reset (None without nvidia-smi)."""
        deadline = time.monotonic() + 2.0
        while self.proc and self.latest is None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with self.lock:
            if self.latest is None:
                return None
            snap = dict(self.latest, clocks_event_reasons_seen=f"0x{self.reasons:016x}")
            if reset:
                self.reasons = 0
            return snap

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass


_CLOCKS = {}


def clocks(reset=False):
    """Clocks, power, temperature and throttle reasons from the job's clock monitor (None if unavailable)."""
    if "m" not in _CLOCKS:
        _CLOCKS["m"] = ClockMonitor()
    return _CLOCKS["m"].snapshot(reset)


def close_clocks():
    m = _CLOCKS.pop("m", None)
    if m:
        m.close()


def now():
    return datetime.datetime.now().isoformat()


_PROBED = {}


def _probe_once():
    """The quick probe, made once per process (a serving judge answers many jobs)."""
    if "info" not in _PROBED:
        _PROBED["info"] = probe(full=False)
    return _PROBED["info"]
