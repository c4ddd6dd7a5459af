"""Fork server for candidate workers: imports torch once, then forks one worker per request.

    python3 th_zygote.py SOCKET_FD [MODULE,...]      (modules to import before forking, e.g. triton)

Starting a worker from scratch means a new interpreter importing torch (seconds on the GPU machine);
a fork of this process starts in milliseconds. The fork server never touches CUDA (a CUDA driver
initialised before fork() is unusable in the child), never imports candidate code and never reads
inputs: each child is a fresh copy of a process that ran nothing but imports, so isolation between
candidates is the same as with a new interpreter.

Protocol on the UNIX socket SOCKET_FD (one message per worker): the judge sends a JSON object
{"cwd": sandbox dir} with three file descriptors attached (SCM_RIGHTS): the worker's stdin (requests),
its log file (stdout and stderr) and the write end of its reply pipe. The server answers {"pid": N}.
The child calls setsid(), so N is also its process group, which the judge kills as a whole.
"""

import json
import os
import signal
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
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


def child(msg, fds):
    stdin_fd, log_fd, reply_fd = fds
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
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no zombies
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
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                child(msg, fds)
            except BaseException:  # noqa: BLE001 - whatever happens, the child must not return here
                import traceback
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
