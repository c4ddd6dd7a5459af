"""Several judges on one GPU: the verify stage runs a few at once, and a cell of one can run out of device
memory because of the others. Every verify cell holds the machine's GPU lock shared; a cell that ran out of
memory is run again holding it exclusively, so that only a candidate that runs out of memory alone is
blamed for it.

A turnstile lock in front of the main lock gives a waiting exclusive request priority over new shared ones
(flock alone lets readers starve a writer).
"""

import contextlib
import fcntl
import os
import re

_OOM = re.compile(r"out of memory|OutOfMemoryError|CUDA_ERROR_OUT_OF_MEMORY", re.IGNORECASE)


def ran_out_of_memory(text):
    """Whether an error message reports exhausted device memory."""
    return bool(text) and _OOM.search(text) is not None


class GpuShare:
    def __init__(self, root, visible=None):
        """One lock per GPU: judges pinned to other GPUs (CUDA_VISIBLE_DEVICES, one GPU per lane on a
        multi-GPU host) neither share its memory nor wait for it."""
        dev = os.environ.get("CUDA_VISIBLE_DEVICES", "") if visible is None else visible
        tag = "-" + re.sub(r"[^A-Za-z0-9._-]", "_", dev) if dev else ""
        self.main = os.path.join(root, f"gpu{tag}.lock")
        self.turnstile = os.path.join(root, f"gpu{tag}.turnstile")

    @contextlib.contextmanager
    def _locked(self, mode):
        with open(self.turnstile, "a") as t, open(self.main, "a") as m:
            fcntl.flock(t, fcntl.LOCK_EX)
            try:
                fcntl.flock(m, mode)
            finally:
                fcntl.flock(t, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(m, fcntl.LOCK_UN)

    def shared(self):
        """Held by every cell: many at once."""
        return self._locked(fcntl.LOCK_SH)

    def exclusive(self):
        """Held by a cell run again after running out of memory: no other cell runs meanwhile."""
        return self._locked(fcntl.LOCK_EX)
