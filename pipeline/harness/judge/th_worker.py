"""Candidate worker: the only process in which candidate code runs.

    python3 th_worker.py REPLY_FD [JUDGE_PID]   (requests: JSON lines on stdin; replies: JSON lines on REPLY_FD)

Started by the judge in its own process group with stdout/stderr sent to a log file. The judge trusts
nothing this process says except tensor files it re-checks itself; the checks done here (exact tensor
type, aliasing, timer identity, global flags, threads) are a first line that an in-process attacker could
in principle subvert, which is why correctness and the post-timing recheck are judged in the parent.
"""

import collections
import ctypes
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__" and len(sys.argv) > 2:  # started as a new interpreter: die with the judge JUDGE_PID
    from th_lifeline import die_with_parent
    die_with_parent(int(sys.argv[2]))
import torch  # noqa: E402

import th_core as C  # noqa: E402
import th_gate  # noqa: E402
import th_l2  # noqa: E402

# Captured before any candidate code is imported: the timing path uses only these references, and each
# call re-checks that the public names still point at them (monkey-patched timers are rejected).
_perf_ns = time.perf_counter_ns
_ORIG = {
    "time.perf_counter": time.perf_counter,
    "time.perf_counter_ns": time.perf_counter_ns,
    "time.time": time.time,
}
if torch.cuda.is_available():
    _ORIG.update({
        "torch.cuda.synchronize": torch.cuda.synchronize,
        "torch.cuda.Event": torch.cuda.Event,
        "torch.cuda.Event.record": torch.cuda.Event.record,
        "torch.cuda.Event.elapsed_time": torch.cuda.Event.elapsed_time,
        "torch.cuda.Event.synchronize": torch.cuda.Event.synchronize,
        "torch.cuda.Event.query": torch.cuda.Event.query,
    })
_Event = torch.cuda.Event
_ev_record = torch.cuda.Event.record
_ev_elapsed = torch.cuda.Event.elapsed_time
_ev_sync = torch.cuda.Event.synchronize
_ev_query = torch.cuda.Event.query
_sync = torch.cuda.synchronize
_cur_stream = torch.cuda.current_stream
_set_stream = torch.cuda.set_stream
_Tensor = torch.Tensor


def _current(name):
    obj_path = name.split(".")
    mod = {"time": time, "torch": torch}[obj_path[0]]
    cur = mod
    for part in obj_path[1:]:
        cur = getattr(cur, part)
    return cur


def timers_intact():
    bad = [n for n, f in _ORIG.items() if _current(n) is not f]
    return bad


def _gate_report(req, gate, gate_note, opened, prep, host_bound, l2):
    """What a timing round tells the judge of its gate: the hold, how the measured samples' gates opened, the
    harness's prep time per call, whether the round was host-bound, why there was no gate, and the persisting-L2
    resets (how many found a carveout the candidate set, or why there were none)."""
    gate_rep = {"hold_us": req.get("gate_hold_us") or 0, "on": gate is not None,
                "opened_by_host": opened.get("host", 0), "hold_expired": opened.get("hold_expired", 0),
                "l2_persisting": l2[0].report() if l2[0] is not None else {"off": l2[1]}}
    if prep:
        gate_rep["prep_ms"] = [p / 1e6 for p in prep]
    if host_bound:
        gate_rep["host_bound"] = True
    if gate is None:
        gate_rep["reason"] = gate_note
    return gate_rep


class Worker:
    def __init__(self, reply_fd):
        self.reply = os.fdopen(reply_fd, "w", buffering=1)
        self.fn = None
        self.dps = True
        self.defn = None
        self.device = "cpu"
        self.flags0 = None
        self.threads0 = None
        self.nonce = None
        self._gate_obj = None  # the timing gate, made on first use (_gate)
        self._gate_error = None  # why it could not be made
        self._l2_obj, self._l2_error = None, None  # the persisting-L2 reset (th_l2.py), made on first use

    def send(self, obj):
        obj["nonce"] = self.nonce
        self.reply.write(json.dumps(obj) + "\n")
        self.reply.flush()

    # ---------------------------------------------------------------------------------------------
    def op_init(self, req):
        """Creates the CUDA context before any candidate code is known: the judge sends this as soon as the
        process exists, so the context is made while the judge does other work."""
        t0 = time.perf_counter()
        self.device = req["device"]
        if self.device == "cuda" and not getattr(self, "cuda_ready", False):
            torch.cuda.init()
            torch.zeros(1, device="cuda").add_(1)
            _sync()
            self.cuda_ready = True
        return {"ok": True, "init_s": round(time.perf_counter() - t0, 4)}

    def op_load(self, req):
        self.op_init(req)
        self.defn = req["definition"]
        self.dps = bool(req["dps"])
        self.flags0 = C.torch_global_flags()
        self.threads0 = {t.ident for t in threading.enumerate()}
        kind = req["binding"]
        n_in = len(self.defn["inputs"])
        n_out = len(self.defn["outputs"])
        try:
            if kind == "noop":
                self.fn = lambda *a: None
                return {"ok": True}
            if kind == "reference":
                ns = {"__name__": "tp_reference"}
                exec(compile(req["source"], "<reference>", "exec"), ns)
                self.fn = ns["run"]
            elif kind == "python":
                self.fn = self._load_python(req)
            elif kind == "torch":
                self.fn = self._load_ext(req)
            elif kind == "c-abi":
                if not self.dps:
                    return {"ok": False, "kind": "compile", "error": "c-abi binding requires destination_passing_style"}
                self.fn = self._load_cabi(req)
            elif kind == "tvm-ffi":
                import tvm_ffi
                mod = tvm_ffi.load_module(req["artifact"])
                self.fn = getattr(mod, req["symbol"])
            else:
                return {"ok": False, "kind": "compile", "error": f"unknown binding {kind}"}
        except BaseException as e:  # noqa: BLE001 - any load failure is a COMPILE_ERROR
            return {"ok": False, "kind": "compile", "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
        if not callable(self.fn):
            return {"ok": False, "kind": "compile", "error": "entry symbol is not callable"}
        # flashinfer-bench's signature rule: bind exactly N positional placeholders when inspectable.
        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            n = n_in + n_out if self.dps else n_in
            try:
                sig.bind(*([object()] * n))
            except TypeError as e:
                return {"ok": False, "kind": "compile", "error": f"entry signature does not take {n} positional arguments: {e}"}
        return {"ok": True}

    def _load_python(self, req):
        bdir, pkg = req["build_dir"], req["pkg"]
        for p in (os.path.join(bdir, pkg), bdir):
            if p not in sys.path:
                sys.path.insert(0, p)
        entry_file, sym = req["entry_point"].split("::")
        modname = pkg + "." + entry_file[:-3].replace("/", ".")
        mod = importlib.import_module(modname)
        return getattr(mod, sym)

    def _load_ext(self, req):
        name = os.path.basename(req["artifact"]).split(".")[0]
        loader = importlib.machinery.ExtensionFileLoader(name, req["artifact"])
        spec = importlib.util.spec_from_loader(name, loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        return getattr(mod, req["symbol"])

    def _load_cabi(self, req):
        lib = ctypes.CDLL(req["artifact"], mode=os.RTLD_NOW)
        entry = getattr(lib, req["symbol"])

        class TPTensor(ctypes.Structure):
            _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.POINTER(ctypes.c_int64)),
                        ("strides", ctypes.POINTER(ctypes.c_int64)), ("ndim", ctypes.c_int32),
                        ("dtype", ctypes.c_int32), ("device", ctypes.c_int32), ("device_id", ctypes.c_int32)]

        entry.restype = ctypes.c_int
        entry.argtypes = [ctypes.POINTER(TPTensor), ctypes.c_int32, ctypes.c_void_p]
        specs = list(self.defn["inputs"].values()) + list(self.defn["outputs"].values())

        def call(*args):
            keep = []
            arr = (TPTensor * len(args))()
            for i, (a, spec) in enumerate(zip(args, specs)):
                if not isinstance(a, torch.Tensor):
                    a = torch.tensor(a, dtype=C.torch_dtype(spec["dtype"]))
                keep.append(a)
                shp = (ctypes.c_int64 * max(1, a.dim()))(*a.shape)
                strd = (ctypes.c_int64 * max(1, a.dim()))(*a.stride())
                keep += [shp, strd]
                dev = 2 if a.is_cuda else 1
                arr[i] = TPTensor(a.data_ptr(), shp, strd, a.dim(), C.DTYPE_NAMES.index(spec["dtype"]), dev,
                                  a.device.index or 0)
            stream = torch.cuda.current_stream().cuda_stream if self.device == "cuda" else None
            rc = entry(arr, len(args), stream)
            if rc != 0:
                raise RuntimeError(f"c-abi entry returned {rc}")

        return call

    # ---------------------------------------------------------------------------------------------
    def _args_from(self, tensors, scalars):
        args = []
        for i in range(len(self.defn["inputs"])):
            key = f"i{i}"
            args.append(tensors[key] if key in tensors else scalars[str(i)])
        return args

    def _invoke(self, args, axes, poison):
        if self.dps:
            outs = C.alloc_outputs(self.defn, axes, self.device, poison)
            self.fn(*args, *outs)
            return outs
        ret = self.fn(*args)
        return C.normalize_outputs(ret, self.defn, self.device)

    def _rigor(self, args, outs):
        problems = []
        ranges = []
        for a in args:
            if isinstance(a, _Tensor) and a.numel() > 0:
                ranges.append((a.data_ptr(), a.data_ptr() + a.numel() * a.element_size()))
        for i, o in enumerate(outs):
            if type(o) is not _Tensor:
                problems.append(f"output_not_exact_tensor: output {i} is {type(o).__name__}")
                continue
            if o.device.type != self.device:
                problems.append(f"output_not_exact_tensor: output {i} on {o.device}")
                continue
            if o.numel() > 0:
                lo, hi = o.data_ptr(), o.data_ptr() + o.numel() * o.element_size()
                if any(lo < b and a < hi for a, b in ranges):
                    problems.append(f"output_aliases_input: output {i} shares memory with an input")
        bad = timers_intact()
        if bad:
            problems.append("timer_tampering: " + ", ".join(bad))
        if C.torch_global_flags() != self.flags0:
            problems.append(f"global_flags_changed: {C.torch_global_flags()} != {self.flags0}")
        new = [t for t in threading.enumerate() if t.ident not in self.threads0 and t.is_alive()]
        if new:
            problems.append("thread_leak: " + ", ".join(t.name for t in new))
        return problems

    def op_call(self, req):
        tensors = C.load_tensors(req["inputs"], self.device)
        args = self._args_from(tensors, req["scalars"])
        pristine = {k: v.clone() for k, v in tensors.items()}
        try:
            with torch.no_grad():
                outs = self._invoke(args, req["axes"], req.get("poison", 0))
            if self.device == "cuda":
                _sync()
        except ValueError as e:
            return {"ok": False, "kind": "runtime", "error": f"output normalisation: {e}"}
        except BaseException as e:  # noqa: BLE001
            fatal = self.device == "cuda" and ("CUDA" in str(e) or "cuda" in str(e))
            return {"ok": False, "kind": "runtime", "fatal": fatal,
                    "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
        problems = self._rigor(args, outs)
        # Inputs must be bit-identical after the call. Checked here, on the device, rather than by sending
        # every input back to the judge: a worker that lies could echo pristine inputs just as well, and the
        # round trip cost more than the call for big workloads.
        changed = [int(k[1:]) for k, v in tensors.items() if not C.bit_equal(v, pristine[k])]
        if changed:
            names = list(self.defn["inputs"])
            problems.append("inputs_modified: the candidate modified its input "
                            + ", ".join(repr(names[i]) for i in sorted(changed)))
        if problems:
            return {"ok": False, "kind": "rigor", "error": "; ".join(problems), "rigor": problems}
        C.save_tensors(req["out"], {f"o{i}": o for i, o in enumerate(outs)})
        return {"ok": True}

    def op_call_many(self, req):
        tensors = C.load_tensors(req["inputs"], self.device)
        base = self._args_from(tensors, req["scalars"])
        tile = req.get("tile")
        if tile:
            # The judge sends the few rows under test once; the batch that samples them many times per call
            # is built here, on the device (a 10000-row tile of a 128K vocabulary is 5 GB: not for a file).
            for i in tile["inputs"]:
                x = base[i]
                base[i] = x.repeat(int(tile["repeat"]), *([1] * (x.dim() - 1)))
        firsts = []
        try:
            with torch.no_grad():
                for _ in range(req["n"]):
                    args = [a.clone() if isinstance(a, _Tensor) else a for a in base]
                    outs = self._invoke(args, req["axes"], 0)
                    if type(outs[0]) is not _Tensor:
                        return {"ok": False, "kind": "rigor", "error": "output_not_exact_tensor", "rigor": ["output_not_exact_tensor"]}
                    firsts.append(outs[0].detach().reshape(-1).to(torch.int64))
            if self.device == "cuda":
                _sync()
        except BaseException as e:  # noqa: BLE001
            return {"ok": False, "kind": "runtime", "fatal": self.device == "cuda",
                    "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
        problems = self._rigor(base, [])
        if problems:
            return {"ok": False, "kind": "rigor", "error": "; ".join(problems), "rigor": problems}
        C.save_tensors(req["out"], {"samples": torch.stack(firsts)})
        return {"ok": True}

    def _gate(self, hold_us):
        """The timing gate of this process (th_gate.py), made on first use and set to hold at most `hold_us`;
        (None, reason) when it is off or cannot be used here (the sample then holds the host's submission
        path, as PROTOCOL.md §5 says)."""
        if not hold_us:
            return None, "off"
        if self._gate_obj is None and self._gate_error is None:
            try:
                self._gate_obj = th_gate.Gate()
            except Exception as e:  # noqa: BLE001 - any failure leaves the ungated path
                self._gate_error = f"{type(e).__name__}: {e}"
        if self._gate_obj is not None:
            self._gate_obj.set_hold_ns(float(hold_us) * 1000)
        return self._gate_obj, self._gate_error

    def _persisting_l2(self, on):
        """(the persisting-L2 reset of this process, None) or (None, why there is none)."""
        if not on:
            return None, "off"
        if self._l2_obj is None and self._l2_error is None:
            try:
                self._l2_obj = th_l2.PersistingL2()
            except Exception as e:  # noqa: BLE001 - a device or driver without persisting L2: nothing to reset
                self._l2_error = f"{type(e).__name__}: {e}"
        if self._l2_obj is not None:
            self._l2_obj.resets = self._l2_obj.found_carveout = 0  # counts per timing round
        return self._l2_obj, self._l2_error

    def op_time(self, req):
        cuda = self.device == "cuda"
        # The judge times each role in several rounds over the same input sets: load them once per cell.
        key = req.get("sets_id")
        if key and getattr(self, "_sets_key", None) == key:
            sets = self._sets
        else:
            self._sets, self._sets_key = None, None
            sets = [C.load_tensors(p, self.device) for p in req["sets"]]
            sets = [self._args_from(s, req["scalars"]) for s in sets]
            if key:
                self._sets, self._sets_key = sets, key
        pidx = req.get("perturb_idx") or []
        pseed = req.get("perturb_seed")
        flush = None
        if cuda and req.get("flush_bytes"):
            flush = torch.empty(int(req["flush_bytes"]), dtype=torch.int8, device="cuda")
        keep = collections.deque(maxlen=2)  # last inputs stay alive: no address reuse for pointer caches
        state = {"n": req.get("call_offset", 0)}
        sync_end = req.get("sync_before_end", True)
        stream = torch.cuda.current_stream() if cuda else None  # fixed before the candidate can switch it
        gate, gate_note = self._gate(req.get("gate_hold_us")) if cuda else (None, "cpu")
        l2 = self._persisting_l2(req.get("reset_persisting_l2", True)) if cuda else (None, "cpu")
        handle = stream.cuda_stream if cuda else None
        start, end = (_Event(enable_timing=True), _Event(enable_timing=True)) if cuda else (None, None)
        opened = collections.Counter()
        prep = []  # host time the harness took to launch the gate with its copies (before arming it), per call

        def one():
            n = state["n"]
            state["n"] += 1
            si = n % len(sets)
            outs = C.alloc_outputs(self.defn, req["axes"], self.device, n % 2) if self.dps else None
            tail = 0.0
            if cuda and gate is not None:
                if _cur_stream().cuda_stream != handle:
                    _set_stream(stream)  # a candidate that left another stream current: the harness's work stays here
                # The call's inputs are written only once the gate opens, by the gate itself, which then flushes L2
                # with every SM still held: until then their buffers hold poison, so work started outside the
                # measurement (a copy to the host on another stream during the hold) finds nothing to compute
                # from, and nothing queued on another stream can overlap the harness's own work.
                srcs = list(sets[si])
                if pseed is not None and pidx:
                    for i in pidx:
                        srcs[i] = srcs[i].clone()
                    C.apply_perturb(srcs, pidx, C.perturb_scale(pseed, n))
                args = [C.poison_fill(torch.empty_like(a), n % 2) if isinstance(a, _Tensor) else a for a in srcs]
                pairs = [(a, src) for a, src in zip(args, srcs) if isinstance(a, _Tensor) and a.numel()]
                in_gate = len(pairs) <= th_gate.MAX_COPIES and all(
                    a.is_cuda and src.is_cuda and a.is_contiguous() and src.is_contiguous() for a, src in pairs)
                _sync()  # the device is idle: nothing the candidate launches can start before `start`
                if l2[0] is not None:
                    l2[0].reset()  # no persisting line the candidate reserved survives the gate's copies and flush
                p0 = _perf_ns()
                if in_gate:
                    gate.hold(handle, [(a.data_ptr(), src.data_ptr(), a.numel() * a.element_size()) for a, src in pairs],
                              (flush.data_ptr(), flush.numel()) if flush is not None else (0, 0))
                else:  # strided or host inputs, or more than the gate copies: the harness copies them behind it
                    gate.hold(handle)
                    for a, src in pairs:
                        a.copy_(src)
                    if flush is not None:
                        flush.zero_()
                h0 = _perf_ns()
                prep.append(h0 - p0)
                gate.arm()  # the hold runs from here: the harness's own submissions above take none of it
            else:
                args = [a.clone() if isinstance(a, _Tensor) else a for a in sets[si]]
                if pseed is not None and pidx:
                    C.apply_perturb(args, pidx, C.perturb_scale(pseed, n))
                if cuda:
                    if l2[0] is not None:
                        l2[0].reset()
                    if flush is not None:
                        flush.zero_()
                    _sync()
                h0 = _perf_ns()
            if cuda:
                _ev_record(start, stream)
                ret = self.fn(*args, *outs) if self.dps else self.fn(*args)
                _ev_record(end, stream)
                h1 = _perf_ns()
                if gate is not None:
                    gate.release()
                if sync_end:
                    # `end` closes the sample on the judge's stream, without host latency in it. Work the
                    # candidate left running on other streams is caught by the tail: the host time from
                    # `end` completing to the whole device being idle (a few microseconds when honest).
                    while not _ev_query(end):
                        pass
                    t_end = _perf_ns()
                    _sync()
                    tail = (_perf_ns() - t_end) / 1e6
                else:
                    _ev_sync(end)
                ms = _ev_elapsed(start, end)
                if gate is not None:
                    opened[gate.opened_by()] += 1
            else:
                ret = self.fn(*args, *outs) if self.dps else self.fn(*args)
                h1 = _perf_ns()
                ms = (h1 - h0) / 1e6
            if not self.dps:
                outs = C.normalize_outputs(ret, self.defn, self.device)
            keep.append((args, outs))
            return ms, (h1 - h0) / 1e6, tail, n, si, args, outs

        samples, host, tails = [], [], []
        try:
            with torch.no_grad():
                t_start = _perf_ns()
                warm = 0
                while warm < req["warmup_calls"] or (_perf_ns() - t_start) / 1e6 < req["warmup_ms"]:
                    one()
                    warm += 1
                    if warm > 100000:
                        break
                opened.clear()  # what the measured samples saw, not the warm-up
                prep.clear()
                t_start = _perf_ns()
                last = None
                host_bound = False
                rule = C.MedianStopRule(req["min_samples"], req["target_rel_stderr"])
                while True:
                    ms, hms, tms, n, si, args, outs = one()
                    samples.append(ms)
                    host.append(hms)
                    tails.append(tms)
                    last = (n, si, args, outs)
                    if len(samples) >= req["max_samples"] or (_perf_ns() - t_start) / 1e9 > req["max_seconds"]:
                        break
                    rule.target, host_bound = C.round_stop_target(
                        req["target_rel_stderr"], req.get("host_bound_rel_stderr"), opened.get("hold_expired", 0),
                        sum(opened.values()))
                    if rule.add(ms):
                        break
            if cuda:
                _sync()
        except BaseException as e:  # noqa: BLE001
            return {"ok": False, "kind": "runtime", "fatal": cuda,
                    "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
        problems = self._rigor(last[2], last[3])
        if problems:
            return {"ok": False, "kind": "rigor", "error": "; ".join(problems), "rigor": problems}
        if req.get("out"):
            C.save_tensors(req["out"], {f"o{i}": o for i, o in enumerate(last[3])})
        gate_rep = _gate_report(req, gate, gate_note, opened, prep, host_bound, l2)
        return {"ok": True, "samples_ms": samples, "host_ms": host, "tail_ms": tails, "warmup": warm,
                "last_call": last[0], "last_set": last[1], "next_call": state["n"], "gate": gate_rep}

    def serve(self):
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            self.nonce = req.get("nonce")
            op = req.get("op")
            if op == "exit":
                self.send({"ok": True})
                break
            handler = getattr(self, "op_" + op, None)
            try:
                res = handler(req) if handler else {"ok": False, "kind": "protocol", "error": f"bad op {op}"}
            except BaseException as e:  # noqa: BLE001
                res = {"ok": False, "kind": "runtime", "fatal": True,
                       "error": f"worker: {type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
            if self.device == "cuda" and op in ("call", "call_many", "time"):
                try:
                    torch.cuda.empty_cache()  # other judges may share this GPU: hold no idle memory
                except BaseException:  # noqa: BLE001 - a broken context is reported by the call itself
                    pass
            self.send(res)


if __name__ == "__main__":
    Worker(int(sys.argv[1])).serve()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: candidate atexit hooks or threads must not delay exit
