"""Fork server for candidate workers: imports torch once, then forks one worker per request.

    python3 th_zygote.py SOCKET_FD [MODULE,...] [JUDGE_PID]   (modules to import before forking, e.g. triton)

Starting a worker from scratch means a new interpreter importing torch (seconds on the GPU machine);
a fork of this process starts in milliseconds. The fork server never touches CUDA (a CUDA driver
initialised before fork() is unusable in the child), never imports candidate code and never reads
inputs: each child is a fresh copy of a process that ran nothing but imports, so isolation between
candidates is the same as with a new interpreter.

Protocol on the UNIX socket SOCKET_FD (one message per worker): the judge sends a JSON object
{"cwd": sandbox dir, "status": file or null} with three file descriptors attached (SCM_RIGHTS): the
worker's stdin (requests), its log file (stdout and stderr) and the write end of its reply pipe. The
server answers {"pid": N}. The child calls setsid(), so N is also its process group, which the judge kills
as a whole. When the worker ends, the server writes {"returncode": R} to the status file (R < 0: killed by
signal -R) before it reaps the worker, so the file is there once the pid is gone.

The server dies with the judge JUDGE_PID, and each worker with the server (th_lifeline.py): a judge killed
outright leaves none of them behind.
"""

import json
import os
import signal
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from th_lifeline import die_with_parent  # noqa: E402  (standard library only)

if __name__ == "__main__" and len(sys.argv) > 3:
    die_with_parent(int(sys.argv[3]))  # before the slow imports: a judge that dies meanwhile is not outlived
# torch.cuda.is_available() must not initialise the driver in this process (children could not use it).
os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"

import torch  # noqa: E402,F401  the point of this process: the import is paid once

import th_core  # noqa: E402,F401


def preload(names):
    """Imports the modules many candidates import (Triton: about a second each time), once, here. A module
    whose import created a CUDA context would make every child's CUDA unusable: that is checked, and the
    fork server then refuses to start (the judge falls back to new interpreters)."""
    for name in names:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a missing optional package is not an error
            continue
    if torch.cuda.is_initialized():
        raise SystemExit("th_zygote: a preloaded module initialised CUDA; cannot fork workers")


preload([n for n in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if n])


_STATUS = {}  # worker pid -> the file its exit status goes to
_CAN_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


def _write_status(path, rc):
    try:
        with open(path + ".tmp", "w") as f:
            json.dump({"returncode": rc}, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the judge already removed the worker's directory


def _reap(_signum=None, _frame=None):
    """SIGCHLD: records each ended worker's exit status, then reaps it (peeking first with WNOWAIT, so the
    status file is written while the pid still exists: once the judge sees the pid gone, the file is there)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        rc = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        path = _STATUS.pop(info.si_pid, None)
        if path:
            _write_status(path, rc)
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            pass


def child(msg, fds, server):
    stdin_fd, log_fd, reply_fd = fds
    die_with_parent(server)  # the worker dies with its fork server, which dies with the judge
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(stdin_fd)
    os.close(log_fd)
    os.chdir(msg["cwd"])
    sys.argv = [os.path.join(HERE, "th_worker.py"), str(reply_fd)]
    import th_worker  # the worker's module-level captures (timers, events) happen here, before any candidate
    th_worker.Worker(reply_fd).serve()
    sys.stdout.flush()


def serve(sock):
    if _CAN_WAITID:
        signal.signal(signal.SIGCHLD, _reap)  # children are reaped as they end, their exit statuses recorded
    else:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reaped by the kernel: no zombies, no statuses
    me = os.getpid()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 3)
        except OSError:
            return
        if not data:
            return  # the judge closed its end
        msg = json.loads(data)
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            sock.sendall(json.dumps({"error": "expected 3 file descriptors"}).encode() + b"\n")
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGCHLD waits until the new pid is registered: a worker that ends at once still gets its status.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                child(msg, fds, me)
            except BaseException:  # noqa: BLE001 - whatever happens, the child must not return here
                import traceback
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        if msg.get("status"):
            _STATUS[pid] = msg["status"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in fds:
            os.close(fd)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
