"""Worker handles: each candidate runs in a worker process (th_worker.py) in its own process group, forked
by the fork server (th_forkserver.py) or started as a new interpreter; serve mode keeps blank spares."""

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import th_forkserver
from th_forkserver import ForkedProcess, fork_server, log, worker_env

HERE = os.path.dirname(os.path.abspath(__file__))


class WorkerDied(Exception):
    pass


class WorkerTimeout(Exception):
    """A worker gave no answer within `waited` seconds; it has been killed with its process group (`killed`
    says how it ended: its pid and exit status)."""

    def __init__(self, waited, killed):
        super().__init__(f"no answer within {waited:.1f} s; {killed}")
        self.waited, self.killed = waited, killed


def exit_text(rc):
    """A worker's exit status for a log: its returncode, with the signal's name when a signal ended it (a
    negative returncode, as subprocess has it)."""
    if isinstance(rc, bool) or not isinstance(rc, int):
        return "exit status unknown"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"exit status {rc} (killed by {name})"
    return f"exit status {rc}"


class WorkerStartFailed(WorkerDied):
    """The worker answered its start-up request with an error (it could not create a CUDA context)."""


_INITIALIZING = set()  # workers whose CUDA context is being created in the background
_SPARES = []  # serve mode: blank workers, started between jobs, that the next job's candidates take over
_SPARE_HOME = {}  # serve mode: where spares are started ("home") and for which device ("device")


def take_spare(device):
    """A blank worker started for `device` ahead of time (serve mode), or None. The oldest is taken (the
    likeliest to have its CUDA context ready) and a replacement is started at once, so the next job finds
    spares whose contexts were made while this one ran."""
    while _SPARES:
        h = _SPARES.pop(0)
        if h.device == device and h.alive and h.proc.poll() is None:
            h.spare = True
            if _SPARE_HOME.get("home") and _SPARE_HOME.get("device") == device:
                _SPARES.append(WorkerHandle(_SPARE_HOME["home"], "spare", device))
            return h
        h.close()
    return None


def top_up_spares(home, n, device):
    """Starts blank workers until `n` wait (their CUDA contexts are made while the caller is between jobs)."""
    _SPARE_HOME.update(home=home, device=device)
    while len(_SPARES) < n:
        _SPARES.append(WorkerHandle(home, "spare", device))


def close_spares():
    _SPARE_HOME.clear()
    while _SPARES:
        _SPARES.pop().close()


def settle_workers(timeout=60.0):
    """Waits until no worker is still creating its CUDA context: called before a timed measurement, so that
    a context being made for the next candidate never overlaps one."""
    for h in list(_INITIALIZING):
        h.wait_ready(timeout)


class WorkerHandle:
    """A candidate worker process. With `device`, the worker is asked at once to create its CUDA context, and
    the judge goes on with other work: the answer is collected before the first real request."""

    def __init__(self, scratch, tag, device=None):
        self.device = device
        self.spare = False  # started between jobs before its role was known (serve mode)
        self.dir = tempfile.mkdtemp(prefix=f"w_{tag}_", dir=scratch)
        self.log_path = os.path.join(self.dir, "worker.log")
        sandbox = os.path.join(self.dir, "cwd")
        os.makedirs(sandbox)
        r, w = os.pipe()
        self.logf = open(self.log_path, "wb")
        self.proc = None
        self.t_spawn = time.monotonic()
        status = os.path.join(self.dir, "exit_status.json")  # where the fork server records how the worker ended
        fs = fork_server(scratch)
        if fs is not None:
            sr, sw = os.pipe()
            try:
                pid = fs.spawn(sandbox, sr, self.logf.fileno(), w, status)
                self.proc = ForkedProcess(pid, os.fdopen(sw, "wb"), status)
            except OSError as e:
                os.close(sw)
                log(f"fork server failed ({e}); starting a new interpreter")
                th_forkserver.mark_failed(str(e))
            os.close(sr)
        if self.proc is None:
            # The worker's lifeline (th_lifeline.py) is tied to this judge: it dies when the judge does.
            self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "th_worker.py"), str(w), str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=self.logf, stderr=subprocess.STDOUT,
                                         pass_fds=(w,), start_new_session=True, cwd=sandbox, env=worker_env())
        os.close(w)
        self.rfd = r
        self.buf = b""
        self.alive = True
        self.init_nonce = None
        self.init_s = None
        self.ready_s = None
        if device:
            try:
                self.init_nonce = self._send({"op": "init", "device": device})
                _INITIALIZING.add(self)
            except WorkerDied:
                pass

    def wait_ready(self, timeout):
        """Collects the answer to the start-up `init` request, if one is outstanding."""
        if self.init_nonce is None:
            return
        nonce, self.init_nonce = self.init_nonce, None
        _INITIALIZING.discard(self)
        rep = self._recv(nonce, timeout)
        self.init_s = rep.get("init_s")
        self.ready_s = round(time.monotonic() - self.t_spawn, 4)
        if not rep.get("ok"):
            self.kill()
            raise WorkerStartFailed(f"worker start-up failed: {rep.get('error')}")

    def _send(self, msg):
        nonce = secrets.token_hex(16)  # a reply must echo it: stray writes to the channel are detected
        msg = dict(msg, nonce=nonce)
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            self.kill()
            raise WorkerDied(f"worker process is gone ({e})") from e
        return nonce

    def _recv(self, nonce, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()  # at once, before anything else starts: a spinning candidate stops here
                raise WorkerTimeout(timeout, self.ended())
            ready, _, _ = select.select([self.rfd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    # The reply channel closes as the process exits: give it a moment to finish exiting, so
                    # that its exit status (or the signal that ended it) is known, then kill what is left.
                    gone = self._wait_exit(5.0)
                    self.kill()
                    how = self.ended() if gone else f"it closed its reply channel; {self.ended()}"
                    raise WorkerDied(f"worker process exited unexpectedly ({how})")
                self.buf += chunk
                if len(self.buf) > 256 << 20:
                    self.kill()
                    raise WorkerDied("worker reply too large")
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError as e:
            self.kill()
            raise WorkerDied("worker reply is not JSON") from e
        if not isinstance(reply, dict):
            self.kill()
            raise WorkerDied("worker reply is not an object")
        if reply.get("nonce") != nonce:
            self.kill()
            raise WorkerDied("result_channel_tampering: a reply did not carry this request's nonce")
        return reply

    def request(self, msg, timeout):
        self.wait_ready(timeout)
        return self._recv(self._send(msg), timeout)

    def log_text(self, limit):
        try:
            self.logf.flush()
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        txt = data.decode("utf-8", "replace")
        if len(txt) > limit:
            txt = txt[:limit] + "\n\n[log truncated]\n"
        return txt

    def _wait_exit(self, timeout):
        """Waits up to `timeout` s for the worker to end by itself. Whether it did."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def ended(self):
        """How the worker ended, for a log: its pid and exit status (after kill(): SIGKILL's, or what ended it
        first), or that it is still exiting."""
        rc = self.proc.poll()
        if rc is None:
            return f"worker pid {self.proc.pid} still exiting after SIGKILL"
        return f"worker pid {self.proc.pid}: {exit_text(rc)}"

    def kill(self, wait=True):
        """Kills the worker's process group. `wait=False` leaves reaping to a background thread: a process
        tearing down a CUDA context takes a tenth of a second or more to go, which a closing worker (already
        told to exit) need not cost the job. An out-of-memory retry waits, so that the memory is free."""
        _INITIALIZING.discard(self)
        self.init_nonce = None
        if not self.alive:
            return
        self.alive = False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if wait:
            _reap(self.proc)
        else:
            threading.Thread(target=_reap, args=(self.proc,), daemon=True).start()
        try:
            os.close(self.rfd)
        except OSError:
            pass

    def close(self):
        if self.alive and self.proc.poll() is None:
            try:
                self.request({"op": "exit"}, 10)
            except (WorkerDied, WorkerTimeout):
                pass
        self.kill(wait=False)
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _reap(proc):
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
