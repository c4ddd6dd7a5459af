"""Judge-side processes die with their parent: the fork server, its workers, spares, the clock monitor.

Every such process runs in its own session (so that a timeout can kill it as a process group), which also
puts it out of reach of whoever kills the judge's own group: a judge killed on a harness timeout or abort
used to leave its fork server and workers running, orphaned to init, a spinning candidate at full speed.
Each one therefore asks the kernel to SIGKILL it when its parent dies (Linux prctl PR_SET_PDEATHSIG); where
that is unavailable, a daemon thread polls getppid() instead.

    python3 th_lifeline.py PARENT_PID COMMAND [ARG...]    (sets the lifeline, then execs COMMAND)

Standard library only: the fork server imports this before torch.
"""

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig(sig):
    """Asks the kernel to send `sig` to this process when its parent thread exits. True when set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent, interval):
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)  # the parent is gone: reparented to init (or a subreaper)


def die_with_parent(parent=None, interval=1.0):
    """Ends this process (SIGKILL) when its parent dies. `parent` is the pid the caller expects as its parent:
    if it is already gone (it died before this call), the process exits at once. Returns "prctl" or "thread"
    (the poller, where prctl is unavailable: only for processes that may hold a thread)."""
    parent = os.getppid() if parent is None else int(parent)
    how = "prctl" if _prctl_pdeathsig(signal.SIGKILL) else None
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the lifeline was set
    if how is None:
        threading.Thread(target=_watch, args=(parent, interval), daemon=True, name="tp-lifeline").start()
        how = "thread"
    return how


def lifeline_argv(argv):
    """`argv` run under a lifeline to this process: the command dies when the caller does (PDEATHSIG survives
    exec; the caller's pid is checked after it is set, so an early death is not missed). Unchanged where
    prctl is unavailable (not Linux)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, os.path.abspath(__file__), str(os.getpid())] + list(argv)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: th_lifeline.py PARENT_PID COMMAND [ARG...]")
    if not _prctl_pdeathsig(signal.SIGKILL):
        sys.exit("th_lifeline: PR_SET_PDEATHSIG unavailable; not starting the command")
    if os.getppid() != int(sys.argv[1]):
        os._exit(1)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as e:
        sys.exit(f"th_lifeline: cannot run {sys.argv[2]}: {e}")
