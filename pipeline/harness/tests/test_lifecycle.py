"""The lives of the judge's processes: a worker's exit status and signal in the evaluation log, timeout
messages that say how long the cell ran against its limit, a timed-out worker gone at once, and no fork
server or worker outliving a judge killed outright. Run by test_harness.py (CPU: a Python spin; GPU: a CUDA
spin kernel as well)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from th_testlib import JUDGE, check  # first: puts the judge and cheaters/ on sys.path

import catalog  # noqa: E402
from th_run import run_harness  # noqa: E402

SPIN_PY = catalog.sol("spin_forever", "tp_relu_f32", "def run(x):\n    while True:\n        pass\n")
CUDA_SPIN = catalog.sol("spin_kernel", "tp_relu_f32", catalog.CUDA_SPIN, dps=True, language="cuda",
                        entry="relu.cu::relu_entry", binding="c-abi")


def proc_state(pid):
    """A process's state letter (R, S, Z, ...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def descendants(root):
    """Pids of every live process below `root` (from /proc)."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    return proc_state(pid) not in (None, "Z")


def _job(work, solutions, timeout_s, device, workloads=1):
    return {"device": device, "work_dir": os.path.join(work, "hw"), "definition": catalog.DEFS["tp_relu_f32"],
            "solutions": solutions, "workloads": catalog.WORKLOADS["tp_relu_f32"][:workloads],
            "config": {"num_trials": 1, "timeout_s": timeout_s}}


def exit_status_tests(work, device):
    """A worker that ends by itself or is killed has its exit status, and the name of the signal, in the log,
    whether it was forked by the fork server or started as a new interpreter."""
    sols = [catalog.sol("segv", "tp_relu_f32", "import os, signal\n\ndef run(x):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"),
            catalog.sol("exit3", "tp_relu_f32", "import os\n\ndef run(x):\n    os._exit(3)\n"),
            catalog.sol("spin", "tp_relu_f32", SPIN_PY["sources"][0]["content"])]
    for env, how in (({}, "forked"), ({"TRACEPIPE_FORK_SERVER": "0"}, "new interpreter")):
        rc, res, err, _ = run_harness("verify", _job(work, sols, 3, device), work, env=env)
        logs = {r["solution"]: (r["evaluation"] or {}).get("log", "") for r in res.get("results", [])}
        check(f"worker exit status in the log ({how}): SIGSEGV, exit(3), SIGKILL after a timeout",
              rc == 0 and "exit status -11 (killed by SIGSEGV)" in logs.get("segv", "")
              and "exit status 3" in logs.get("exit3", "") and "exit status -9 (killed by SIGKILL)" in logs.get("spin", ""),
              json.dumps({k: v[:300] for k, v in logs.items()}) + err[-500:])


def timeout_message_test(work, device):
    """A TIMEOUT says how long the cell ran and its limit, not the budget left for its last request: the first
    call takes 1.5 s of a 3 s cell, the second spins until the cell's limit."""
    s = catalog.sol("slow_then_spin", "tp_relu_f32",
                    "import time, torch\n_n = [0]\n\ndef run(x):\n    _n[0] += 1\n    if _n[0] == 1:\n"
                    "        time.sleep(1.5)\n        return torch.relu(x)\n    while True:\n        pass\n")
    rc, res, err, _ = run_harness("verify", _job(work, [s], 3, device), work)
    ev = res["results"][0]["evaluation"] if rc == 0 else {}
    m = re.search(r"the cell ran (\d+\.\d) s against its limit of 3 s \(timeout_s\)", (ev or {}).get("log", ""))
    check("timeout message: how long the cell ran (>= its limit) and the limit, not the budget left",
          ev.get("status") == "TIMEOUT" and m is not None and float(m.group(1)) >= 3.0,
          (ev or {}).get("log", "")[:400] + err[-500:])


def _serve(env=None):
    return subprocess.Popen([sys.executable, JUDGE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                            env=dict(os.environ, **(env or {})))


def _send(p, work, n, job):
    jp = os.path.join(work, f"life_job_{n}.json")
    with open(jp, "w") as f:
        json.dump(job, f)
    out = os.path.join(work, f"life_out_{n}.json")
    p.stdin.write(json.dumps({"id": n, "command": "verify", "job": jp, "out": out}) + "\n")
    p.stdin.flush()
    return out


def _reply(p, n, timeout):
    """The judge's reply to job `n` (the ready line and others skipped), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            return None
        rep = json.loads(line)
        if rep.get("tp_done") == n:
            return rep
    return None


def _kill_leftovers(pids):
    """Kills, by pid, the processes this test started that survived (a failing check must not leave them)."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def lifeline_tests(work, device, spinner=SPIN_PY, label="a Python spin"):
    """A spinning candidate's worker is gone within a few seconds of its timeout (the judge still running), and
    a judge killed with SIGKILL while a worker spins leaves no fork server and no worker 10 s later."""
    if not os.path.isdir("/proc"):
        print("skip lifeline checks: no /proc on this system")
        return
    p = _serve()
    seen = set()
    try:
        out = _send(p, work, 1, _job(work, [spinner], 3, device))
        rep = _reply(p, 1, 600)
        with open(out) as f:
            log = json.load(f)["results"][0]["evaluation"]["log"]
        m = re.search(r"worker pid (\d+)", log)
        pid = int(m.group(1)) if m else None
        deadline = time.monotonic() + 3
        while pid and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        check(f"timeout ({label}): the worker is gone within 3 s of its cell's timeout, the judge still serving",
              rep is not None and rep["code"] == 0 and pid is not None and not alive(pid) and p.poll() is None,
              f"pid {pid} state {proc_state(pid) if pid else None}: {log[:300]}")
    finally:
        seen.update(descendants(p.pid))
        p.stdin.close()  # end of input ends the judge, which closes its spares and fork server
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        _kill_leftovers(seen)
    p = _serve()
    seen = set()
    try:
        _send(p, work, 2, _job(work, [spinner], 600, device))
        t0 = time.monotonic()
        spinning = False
        # The spinning worker is a grandchild (forked by the fork server) running flat out; a worker waiting on
        # a CUDA spin kernel may sleep in the driver instead: then 60 s with a worker beside the server do.
        while time.monotonic() - t0 < 300 and not spinning:
            time.sleep(0.5)
            below = descendants(p.pid)
            seen.update(below)
            spinning = len(below) >= 2 and (any(proc_state(q) == "R" for q in below) or time.monotonic() - t0 > 60)
        time.sleep(1.0)
        seen.update(descendants(p.pid))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(10)
        left = sorted(q for q in seen if alive(q))
        check(f"a judge killed with SIGKILL ({label}) leaves no fork server, worker or spare 10 s later",
              spinning and not left, f"spinning={spinning}; alive: {[(q, proc_state(q)) for q in left]}")
    finally:
        _kill_leftovers(seen)
        if p.poll() is None:
            p.kill()
            p.wait()
