"""The judge's fork server for candidate workers (th_zygote.py), and the process handle of a forked worker.

Standard library only: a serving judge starts its fork server before it imports torch itself, so the two
imports overlap.
"""

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEPIPE_")}
    env["PYTHONHASHSEED"] = str(secrets.randbits(30))
    env["PYTHONUNBUFFERED"] = "1"
    return env


UNKNOWN = "unknown"  # the exit status of a forked worker whose fork server recorded none


def read_exit_status(path):
    """The returncode the fork server recorded in `path` for a worker it reaped (negative: the signal that
    ended it, as subprocess has it), or None."""
    try:
        with open(path) as f:
            rc = json.load(f).get("returncode")
    except (OSError, ValueError, AttributeError):
        return None
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else None


class ForkedProcess:
    """The parts of subprocess.Popen the judge uses, for a worker forked by the fork server (not our child:
    liveness is probed with signal 0, and the exit status is the one the server wrote to `status` before it
    reaped the worker, so it is there once the pid is gone)."""

    def __init__(self, pid, stdin, status=None):
        self.pid, self.stdin, self.status, self.returncode = pid, stdin, status, None

    def poll(self):
        if self.returncode is not None:
            return self.returncode
        try:
            os.kill(self.pid, 0)
            return None
        except ProcessLookupError:
            rc = read_exit_status(self.status) if self.status else None
            self.returncode = UNKNOWN if rc is None else rc
            return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout or 0)
        while self.poll() is None:
            if timeout is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("worker", timeout)
            time.sleep(0.01)
        return self.returncode


class ForkServer:
    """One th_zygote.py per judge: it has imported torch, and forks a worker in milliseconds."""

    def __init__(self, log_path):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log_path = log_path
        self.log = open(log_path, "wb")
        preload = os.environ.get("TRACEPIPE_ZYGOTE_PRELOAD", "triton,triton.language")
        # The server's lifeline (th_lifeline.py) is tied to this judge, its workers' to the server: killing the
        # judge, even with SIGKILL, ends them all.
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "th_zygote.py"), str(theirs.fileno()),
                                      preload, str(os.getpid())],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     pass_fds=(theirs.fileno(),), start_new_session=True, env=worker_env())
        theirs.close()
        self.rbuf = b""

    def spawn(self, cwd, stdin_r, log_fd, reply_w, status=None):
        """Forks a worker (cwd, stdin, log, reply pipe); the server writes its exit status to `status`."""
        msg = {"cwd": cwd, "status": status}
        socket.send_fds(self.sock, [json.dumps(msg).encode()], [stdin_r, log_fd, reply_w])
        while b"\n" not in self.rbuf:
            ready, _, _ = select.select([self.sock], [], [], 30)
            chunk = self.sock.recv(4096) if ready else b""
            if not chunk:
                raise OSError("the fork server did not answer")
            self.rbuf += chunk
        line, self.rbuf = self.rbuf.split(b"\n", 1)
        reply = json.loads(line)
        if "pid" not in reply:
            raise OSError(f"fork server: {reply.get('error')}")
        return reply["pid"]

    def close(self):
        try:
            self.sock.close()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.log.close()
        try:
            os.remove(self.log_path)
        except OSError:
            pass


_FORK_SERVER = {}


def fork_server(scratch=None):
    """The judge's fork server, started on first use (its log in `scratch`, else the temporary directory);
    None when disabled (TRACEPIPE_FORK_SERVER=0) or broken."""
    if os.environ.get("TRACEPIPE_FORK_SERVER", "1") == "0":
        return None
    fs = _FORK_SERVER.get("fs")
    if fs is None and "failed" not in _FORK_SERVER:
        log_path = os.path.join(scratch or tempfile.gettempdir(), f"tracepipe-zygote-{os.getpid()}.log")
        try:
            fs = _FORK_SERVER["fs"] = ForkServer(log_path)
        except OSError as e:
            _FORK_SERVER["failed"] = str(e)
            log(f"fork server unavailable ({e}); workers start as new interpreters")
    return fs


def mark_failed(reason):
    """Stops using the fork server for the rest of this judge's life (workers start as new interpreters). It is
    retired, not killed: the workers it forked die with it (th_lifeline.py), and those still in use (spares,
    a next candidate's worker) are closed first; close_fork_server() ends it with the others."""
    _FORK_SERVER["failed"] = reason
    fs = _FORK_SERVER.pop("fs", None)
    if fs:
        _FORK_SERVER.setdefault("retired", []).append(fs)


def log(msg):
    print(f"[harness] {msg}", file=sys.stderr, flush=True)


def close_fork_server():
    """Ends the fork server, and any retired one (the workers they forked die with them)."""
    for fs in [_FORK_SERVER.pop("fs", None)] + _FORK_SERVER.pop("retired", []):
        if fs:
            fs.close()
