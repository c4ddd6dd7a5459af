"""The timing gate: keeps the host's submission latency out of a timed sample (PROTOCOL.md §5).

With the device idle when the start event is recorded, a sample would hold the host's path from that
event to the candidate's first launch (Python, the binding, the driver): microseconds that depend on the
machine and its load, not on the kernel, and that dominate kernels of a few microseconds. The gate is a
kernel (gate/gate.cu, as PTX loaded through the CUDA driver API, so no compiler is needed) launched on
the judge's stream ahead of the start event. It holds that stream, and every SM of the device, until the
host releases it after the call has returned, or until the hold (`set_hold_ns`) has passed since the host
armed it as the call began. The call's kernels then run back to back from the moment the gate opens, as
they would in a CUDA graph: the sample is the device time of the call, like flashinfer-bench's CUPTI timer.

Once open, and before it exits, the gate itself writes the call's inputs into their buffers (which hold
poison until then) and flushes L2, with every SM still held: nothing a candidate started outside the
measurement (a copy to the host during the hold, a kernel queued on another stream) can read the inputs
or overlap the harness's own work.

The hold is bounded. A call that synchronises with the device (`.item()`, `.tolist()`) waits for the gate
until the hold expires and is then timed with the rest of its host path inside the sample, as without the
gate; a call that runs host code for longer than the hold has the excess charged the same way. So at most
the hold of host time per call is ever left out. Because the gate's blocks fill every SM, no kernel a
candidate launches on another stream can run before the measurement starts.
"""

import ctypes
import ctypes.util
import os
import re

# The gate's PTX, generated from gate/gate.cu by tools/gen-gate-ptx.sh into gate.ptx beside this module (inside the
# judge folder, so that it is part of the judging stages' code key); its first line names the SHA-256 of the gate.cu
# it was made from (checked by a test). Read once, at import, before the worker runs anything untrusted.
_PTX_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate.ptx")


def _read_ptx():
    try:
        with open(_PTX_FILE, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return "", ""
    m = re.match(r"// sha256 ([0-9a-f]{64}) ", text)
    return text, (m.group(1) if m else "")


GATE_PTX, GATE_CU_SHA256 = _read_ptx()

_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
_CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39
_CU_MEMHOSTALLOC_PORTABLE = 0x01
_CU_MEMHOSTALLOC_DEVICEMAP = 0x02
_THREADS = 1024  # the kernel's launch bound: a few blocks of it fill an SM's thread slots
MAX_COPIES = 64  # gate.cu's max_copies: the most input copies one gate makes

# What `opened_by` reports for the latest gate.
OPENED_BY_HOST = "host"
OPENED_BY_EXPIRY = "hold_expired"


def load_driver(unavailable):
    """The CUDA driver library, for the driver API (this gate, th_l2's persisting-L2 reset). Raises
    `unavailable` (an exception class), saying why, where it cannot be loaded."""
    try:  # the driver's own library first: a toolkit's link-time stub answers every call with an error
        return ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        name = ctypes.util.find_library("cuda")
        try:
            return ctypes.CDLL(name or "libcuda.so")
        except OSError:
            raise unavailable(f"cannot load the CUDA driver library: {e}") from e


class GateUnavailable(Exception):
    """The gate cannot be used in this process (no driver, no current CUDA context, a failed call)."""


class Gate:
    """One gate per worker process, loaded into the CUDA context that torch made current in this thread.

    Per sample, with the device idle: `hold(stream, copies, flush)` launches it, `arm()` as the call under
    test begins (the hold runs from here), `release()` once the call has returned, and after the sample
    `opened_by()` says whether the host released it or the hold expired."""

    def __init__(self):
        if not GATE_PTX.strip():
            raise GateUnavailable("the gate's PTX is missing (run tools/gen-gate-ptx.sh)")
        self.cu = load_driver(GateUnavailable)
        ctx = ctypes.c_void_p()
        self._check("cuCtxGetCurrent", ctypes.byref(ctx))
        if not ctx.value:
            raise GateUnavailable("no CUDA context is current in this thread")
        dev = ctypes.c_int()
        self._check("cuCtxGetDevice", ctypes.byref(dev))
        sms, per_sm = ctypes.c_int(), ctypes.c_int()
        self._check("cuDeviceGetAttribute", ctypes.byref(sms), _CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)
        self._check("cuDeviceGetAttribute", ctypes.byref(per_sm), _CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR,
                    dev)
        self.blocks = max(1, sms.value * max(1, per_sm.value // _THREADS))
        self.module = ctypes.c_void_p()
        self._check("cuModuleLoadData", ctypes.byref(self.module), ctypes.c_char_p(GATE_PTX.encode() + b"\0"))
        self.fn = ctypes.c_void_p()
        self._check("cuModuleGetFunction", ctypes.byref(self.fn), self.module, b"tp_gate")
        # Mapped host memory: the host's release flag at offset 0, the gate's status word on its own cache line,
        # the table of input copies from offset 128.
        self.host = ctypes.c_void_p()
        size = 128 + 3 * 8 * MAX_COPIES
        self._check("cuMemHostAlloc", ctypes.byref(self.host), ctypes.c_size_t(size),
                    _CU_MEMHOSTALLOC_PORTABLE | _CU_MEMHOSTALLOC_DEVICEMAP)
        ctypes.memset(self.host.value, 0, size)
        host_dev = ctypes.c_uint64()
        self._check("cuMemHostGetDevicePointer_v2", ctypes.byref(host_dev), self.host, 0)
        self.dev = ctypes.c_uint64()
        # Device memory: the gate's open flag at offset 0, the grid barrier's count (u64) at offset 8.
        self._check("cuMemAlloc_v2", ctypes.byref(self.dev), ctypes.c_size_t(64))
        self._check("cuMemsetD32_v2", self.dev, 0, ctypes.c_size_t(16))
        self._table = (ctypes.c_uint64 * (3 * MAX_COPIES)).from_address(self.host.value + 128)
        self._flag = ctypes.c_int32.from_address(self.host.value)
        self._status = ctypes.c_int32.from_address(self.host.value + 64)
        self.seq = 0
        # Kernel arguments, reused by every launch (only `seq` changes).
        self._a_host = ctypes.c_uint64(host_dev.value)
        self._a_dev = ctypes.c_uint64(self.dev.value)
        self._a_seq = ctypes.c_int32(0)
        self._a_hold = ctypes.c_uint64(0)  # set_hold_ns() before the first hold()
        self._a_status = ctypes.c_uint64(host_dev.value + 64)
        self._a_table = ctypes.c_uint64(host_dev.value + 128)
        self._a_ncopies = ctypes.c_int32(0)
        self._a_flush = ctypes.c_uint64(0)
        self._a_flush_bytes = ctypes.c_uint64(0)
        self._a_barrier = ctypes.c_uint64(self.dev.value + 8)
        args = (self._a_host, self._a_dev, self._a_seq, self._a_hold, self._a_status, self._a_table,
                self._a_ncopies, self._a_flush, self._a_flush_bytes, self._a_barrier)
        self._params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args])
        self._launch = self.cu.cuLaunchKernel
        self._launch.restype = ctypes.c_int

    def _check(self, fn, *args):
        rc = getattr(self.cu, fn)(*args)
        if rc != 0:
            msg = ctypes.c_char_p()
            self.cu.cuGetErrorString(rc, ctypes.byref(msg))
            raise GateUnavailable(f"{fn} failed: {rc} {(msg.value or b'').decode()}")

    def set_hold_ns(self, hold_ns):
        """Sets the bound on how long later gates hold once armed."""
        self._a_hold.value = int(hold_ns)

    def hold(self, stream_handle, copies=(), flush=(0, 0)):
        """Launches the gate on `stream_handle` (a cudaStream_t as an int; 0 is the legacy default stream).
        Once open it makes `copies`, (dst, src, bytes) device addresses (at most MAX_COPIES), then zeroes
        `flush` = (address, bytes). The device must be idle: the previous gate's table is rewritten."""
        if len(copies) > MAX_COPIES:
            raise ValueError(f"a gate makes at most {MAX_COPIES} copies, not {len(copies)}")
        for i, (dst, src, nbytes) in enumerate(copies):
            self._table[3 * i], self._table[3 * i + 1], self._table[3 * i + 2] = int(dst), int(src), int(nbytes)
        self._a_ncopies.value = len(copies)
        self._a_flush.value, self._a_flush_bytes.value = int(flush[0]), int(flush[1])
        self.seq += 1
        self._a_seq.value = self.seq
        rc = self._launch(self.fn, self.blocks, 1, 1, _THREADS, 1, 1, 0, ctypes.c_void_p(stream_handle or None),
                          self._params, None)
        if rc != 0:
            raise GateUnavailable(f"cuLaunchKernel(tp_gate) failed: {rc}")

    def arm(self):
        """Starts the latest gate's hold (the call under test begins)."""
        self._flag.value = 2 * self.seq - 1

    def release(self):
        """Opens the latest gate (the host's call has returned)."""
        self._flag.value = 2 * self.seq

    def opened_by(self):
        """Who opened the latest gate: OPENED_BY_HOST or OPENED_BY_EXPIRY; None before the device reported it
        (call after the sample's device work is complete)."""
        word = self._status.value
        if word >> 2 != self.seq:
            return None
        return OPENED_BY_HOST if word & 3 == 1 else OPENED_BY_EXPIRY
