"""Turns solutions into callables.

Python solutions are imported from their sources written to a temporary folder. Triton (and the
other Python-hosted GPU languages) load the same way, on a GPU only. CUDA and C++ solutions are
built by the tracepipe harness's own build code (pipeline/harness/judge/th_compile.py, imported, not
copied), which caches builds by content in `.tracepipe/harness/builds`, so a solution the pipeline
compiled is not compiled again. Without a GPU only Python solutions load: the others raise
LoadError saying so, and the runtime turns that into a strict error or a fallback (ApplyConfig).
"""

import atexit
import ctypes
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
from types import SimpleNamespace

import torch

PY_HOSTED = ("triton", "tilelang", "cutedsl", "cutile")
NATIVE = ("cuda", "cpp", "cutlass")

_lock = threading.Lock()
_tmp_root = []
_EXTENSIONS = {}  # artifact path -> loaded torch extension module


class LoadError(RuntimeError):
    """A solution that cannot be loaded (here): the message says which and why."""


def _tmp():
    if not _tmp_root:
        d = tempfile.mkdtemp(prefix="tracepipe_apply_")
        _tmp_root.append(d)
        atexit.register(shutil.rmtree, d, True)
    return _tmp_root[0]


def _package(sol):
    h = hashlib.sha1()
    for part in [sol.definition, sol.language, sol.entry_point, *[x for p in sol.sources for x in p]]:
        h.update(part.encode("utf-8"))
    base = re.sub(r"[^0-9A-Za-z_]", "_", sol.name)[:40]
    return f"tpa_{base}_{h.hexdigest()[:12]}"


def load_python(sol):
    """Imports a Python-hosted solution's entry point from its sources (written once per content)."""
    entry_file, sym = sol.entry_point.split("::")
    if not entry_file.endswith(".py"):
        raise LoadError(f"solution {sol.name}: entry file {entry_file} is not a .py file")
    pkg = _package(sol)
    with _lock:
        base = _tmp()
        pdir = os.path.join(base, pkg)
        if not os.path.isdir(pdir):
            for path, content in sol.sources:
                full = os.path.join(pdir, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(content)
        # Both the folder above (import pkg.module, relative imports) and the package folder itself
        # (a source importing a sibling by its bare name), as the harness's worker does.
        for p in (base, pdir):
            if p not in sys.path:
                sys.path.insert(0, p)
        try:
            mod = importlib.import_module(pkg + "." + entry_file[:-3].replace("/", "."))
        except Exception as e:  # noqa: BLE001 - any import failure is the solution's
            raise LoadError(f"solution {sol.name}: import failed: {type(e).__name__}: {e}") from e
    fn = getattr(mod, sym, None)
    if not callable(fn):
        raise LoadError(f"solution {sol.name}: {entry_file} has no callable {sym!r}")
    return fn


def repo_root():
    """The tracepipe checkout: $TRACEPIPE_ROOT, else the first folder above this package or the
    working directory that holds pipeline/harness/judge/th_build.py; None when there is none."""
    cands = [os.environ.get("TRACEPIPE_ROOT")]
    for start in (os.path.dirname(os.path.abspath(__file__)), os.getcwd()):
        d = start
        while True:
            cands.append(d)
            up = os.path.dirname(d)
            if up == d:
                break
            d = up
    for c in cands:
        if c and os.path.exists(os.path.join(c, "pipeline", "harness", "judge", "th_build.py")):
            return c
    return None


def _harness():
    root = repo_root()
    if root is None:
        raise LoadError("the tracepipe harness (pipeline/harness/judge) is not found: set TRACEPIPE_ROOT "
                        "to the checkout to build CUDA/C++ solutions")
    judge = os.path.join(root, "pipeline", "harness", "judge")
    if judge not in sys.path:
        sys.path.append(judge)
    import th_compile  # noqa: PLC0415 - the harness's build code, found at run time
    return root, th_compile


def build_native(sols):
    """Builds CUDA/C++ solutions with the harness (in parallel, cached) → {name: build result}."""
    if not torch.cuda.is_available():
        return {s.name: {"outcome": "not_runnable_here", "reason": "no GPU: CUDA/C++ solutions are not loadable here"}
                for s in sols}
    try:
        root, th_compile = _harness()
    except LoadError as e:
        return {s.name: {"outcome": "not_runnable_here", "reason": str(e)} for s in sols}
    major, minor = torch.cuda.get_device_capability()
    ctx = SimpleNamespace(device="cuda", info={"compute_capability": f"{major}.{minor}"},
                          cfg={"parallel_builds": 4}, work=os.path.join(root, ".tracepipe", "harness"),
                          log_limit=4000, evaluation=lambda status, log: {"status": status, "log": log})
    return th_compile.compile_solutions(ctx, [s.raw for s in sols])


def load_native(sol, definition, built):
    """A callable from a harness build result (torch extension, C ABI library or tvm-ffi module)."""
    if built.get("outcome") != "built":
        raise LoadError(f"solution {sol.name} ({sol.language}): {built.get('outcome')}: "
                        f"{(built.get('reason') or '').strip()[-600:]}")
    sym = sol.entry_point.split("::")[1]
    art = built.get("artifact")
    binding = built.get("binding")
    if binding == "torch":
        mod = _EXTENSIONS.get(art)
        if mod is None:  # identical sources share one build (and one module) whatever definition they serve
            name = os.path.basename(art).split(".")[0]
            loader = importlib.machinery.ExtensionFileLoader(name, art)
            spec = importlib.util.spec_from_loader(name, loader)
            mod = _EXTENSIONS[art] = importlib.util.module_from_spec(spec)
            loader.exec_module(mod)
        return getattr(mod, sym)
    if binding == "c-abi":
        if not sol.dps:
            raise LoadError(f"solution {sol.name}: the C ABI binding needs destination_passing_style")
        return _cabi(ctypes.CDLL(art, mode=os.RTLD_NOW), sym, definition)
    if binding == "tvm-ffi":
        import tvm_ffi  # noqa: PLC0415
        return getattr(tvm_ffi.load_module(art), sym)
    raise LoadError(f"solution {sol.name}: unknown binding {binding!r}")


_CABI_DTYPES = ["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1",
                "int64", "int32", "int16", "int8", "bool"]


class _TPTensor(ctypes.Structure):
    # pipeline/harness/include/tracepipe_cabi.h
    _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("ndim", ctypes.c_int32),
                ("dtype", ctypes.c_int32), ("device", ctypes.c_int32), ("device_id", ctypes.c_int32)]


def _cabi(lib, sym, definition):
    entry = getattr(lib, sym)
    entry.restype = ctypes.c_int
    entry.argtypes = [ctypes.POINTER(_TPTensor), ctypes.c_int32, ctypes.c_void_p]
    specs = [s for _, s in definition.inputs] + [s for _, s in definition.outputs]
    from .calls import torch_dtype  # noqa: PLC0415

    def call(*args):
        keep = []
        arr = (_TPTensor * len(args))()
        for i, (a, (_shape, dt)) in enumerate(zip(args, specs)):
            if not isinstance(a, torch.Tensor):
                a = torch.tensor(a, dtype=torch_dtype(dt))
            shp = (ctypes.c_int64 * max(1, a.dim()))(*a.shape)
            strd = (ctypes.c_int64 * max(1, a.dim()))(*a.stride())
            keep += [a, shp, strd]
            arr[i] = _TPTensor(a.data_ptr(), shp, strd, a.dim(), _CABI_DTYPES.index(dt), 2 if a.is_cuda else 1,
                               a.device.index or 0)
        stream = torch.cuda.current_stream().cuda_stream if torch.cuda.is_available() else None
        rc = entry(arr, len(args), stream)
        if rc != 0:
            raise RuntimeError(f"c-abi entry {sym} returned {rc}")

    return call


def load_many(sols, definitions):
    """{solution name: callable or LoadError} for many solutions, building the native ones together."""
    out = {}
    native = [s for s in sols if s.language in NATIVE]
    for s in sols:
        if s.language == "python" or (s.language in PY_HOSTED and torch.cuda.is_available()):
            try:
                out[s.name] = load_python(s)
            except LoadError as e:
                out[s.name] = e
        elif s.language in PY_HOSTED:
            out[s.name] = LoadError(f"solution {s.name} ({s.language}): not loadable here: it needs a GPU")
        elif s.language not in NATIVE:
            out[s.name] = LoadError(f"solution {s.name}: language {s.language!r} is not supported")
    if native:
        built = build_native(native)
        for s in native:
            try:
                out[s.name] = load_native(s, definitions[s.definition], built[s.name])
            except LoadError as e:
                out[s.name] = e
            except Exception as e:  # noqa: BLE001 - a broken artifact is the solution's
                out[s.name] = LoadError(f"solution {s.name}: loading its build failed: {type(e).__name__}: {e}")
    return out
