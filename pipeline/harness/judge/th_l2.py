"""Resets the persisting-L2 carveout between timed calls (pygpubench #49; nvbench PR #459).

A kernel may reserve part of L2 for persisting accesses (cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize)
and an access-policy window on its stream). Persisting lines are not evicted by normal accesses, so they
survive the harness's L2 flush: inputs written under such a window (by the harness's own copies on the
judge's stream, whose window the candidate set) would be read from L2 by the next timed call, "cold" only in
name. Before each timed call's input copies and flush, with the device idle, the worker sets the carveout
back to 0 and turns every persisting line back to normal (cuCtxSetLimit, cuCtxResetPersistingL2Cache,
through the driver API as th_gate.py uses it): nothing the candidate reserved outlives its call.
"""

import ctypes

import th_gate

_CU_LIMIT_PERSISTING_L2_CACHE_SIZE = 0x06


class L2Unavailable(Exception):
    """The driver has no persisting-L2 controls here (no driver, no context, a driver before CUDA 11)."""


class PersistingL2:
    """The persisting-L2 reset of one worker process; `reset()` once per timed call, with the device idle.
    `resets` counts the resets, `found_carveout` those that found a carveout set (a candidate reserved one)."""

    def __init__(self):
        self.cu = th_gate.load_driver(L2Unavailable)
        try:
            self._get, self._set = self.cu.cuCtxGetLimit, self.cu.cuCtxSetLimit
            self._reset = self.cu.cuCtxResetPersistingL2Cache
        except AttributeError as e:
            raise L2Unavailable(f"the driver has no persisting-L2 controls: {e}") from e
        self._get.argtypes = [ctypes.POINTER(ctypes.c_size_t), ctypes.c_int]
        self._set.argtypes = [ctypes.c_int, ctypes.c_size_t]
        self._value = ctypes.c_size_t()
        self.resets, self.found_carveout = 0, 0
        # Read here (so an unsupported limit fails now, not in the timing loop) and cleared: on an H100 a
        # fresh worker's first reset found a carveout in every worker, honest ones too (fourteenth session,
        # BENCHMARKS.md), so what the context held before the first timed call is recorded apart and only a
        # carveout set after it counts as found.
        self.initial_carveout = self.carveout()
        if self.initial_carveout:
            self._clear()

    def carveout(self):
        """The persisting-L2 carveout set now, in bytes."""
        rc = self._get(ctypes.byref(self._value), _CU_LIMIT_PERSISTING_L2_CACHE_SIZE)
        if rc != 0:
            raise L2Unavailable(f"cuCtxGetLimit(persisting L2) failed: {rc}")
        return self._value.value

    def reset(self):
        """Carveout to 0, every persisting line back to normal."""
        self.resets += 1
        if self.carveout():
            self.found_carveout += 1
        self._clear()

    def _clear(self):
        rc = self._set(_CU_LIMIT_PERSISTING_L2_CACHE_SIZE, 0)
        if rc != 0:
            raise L2Unavailable(f"cuCtxSetLimit(persisting L2, 0) failed: {rc}")
        rc = self._reset()
        if rc != 0:
            raise L2Unavailable(f"cuCtxResetPersistingL2Cache failed: {rc}")

    def report(self):
        """What the timing round tells the judge: resets made, how many found a carveout, and the carveout the
        worker's context held before its first timed call (bytes; the driver's, or a candidate's warm-up)."""
        return {"resets": self.resets, "found_carveout": self.found_carveout,
                "initial_carveout": self.initial_carveout}
