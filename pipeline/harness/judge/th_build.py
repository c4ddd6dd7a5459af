"""Builds one solution. Run as a child process by the judge (it may import built code):

    python3 th_build.py REQUEST.json RESULT.json

REQUEST: {solution, build_dir, binding, device, arch (e.g. "9.0a") | null, max_jobs, include_dir}
RESULT:  {outcome: built|compile_error|toolchain_unavailable|not_runnable_here, log, artifact, seconds, reason}
The judge also imports this module for plan_build() (pure path computation, no candidate code).
"""

import ast
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time

NATIVE_EXT = (".cu", ".cpp", ".cc", ".cxx", ".c")
BUILD_FLAGS_VERSION = "tp2"  # bump when our compiler flags change, so cached builds are redone
# Host code of an extension is glue (argument checks, a launch); device code is what gets timed. Host -O1
# instead of -O3 cuts an nvcc compile of a torch-including .cu by about a tenth (57 s vs 63 s on the
# 2-core CPU machine) while keeping inlining of the small accessors a call goes through. Device code is
# optimised by nvcc whatever the host level (-dopt on, ptxas -O3 by default).
HOST_OPT = "-O1"


def resolve_binding(sol, override=None):
    lang = sol["spec"]["language"]
    if lang in ("python", "triton", "tilelang"):
        return "python"
    b = override or sol["spec"].get("binding") or "tvm-ffi"
    if b not in ("torch", "tvm-ffi", "c-abi"):
        raise ValueError(f"solution {sol.get('name')}: field spec.binding: unknown binding {b!r}")
    return b


def package_name(sol, digest):
    base = re.sub(r"[^0-9A-Za-z_]", "_", sol["name"])
    if base[:1].isdigit():
        base = "_" + base
    return f"tp_{base[:40]}_{digest[:12]}"


def plan_build(build_root, sol, digest, binding, toolchain_tag):
    """Build directory keyed by the content hash, the binding and the toolchain."""
    import hashlib
    key = hashlib.sha1(f"{digest}|{binding}|{toolchain_tag}|{BUILD_FLAGS_VERSION}".encode()).hexdigest()
    return os.path.join(build_root, binding, package_name(sol, key)), package_name(sol, key)


def write_sources(src_dir, sol):
    for src in sol["sources"]:
        p = src["path"]
        if os.path.isabs(p) or ".." in p.replace("\\", "/").split("/"):
            raise ValueError(f"solution {sol['name']}: field sources.path: unsafe path {p!r}")
        full = os.path.join(src_dir, p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(src["content"])


def _run(cmd, cwd, env, log):
    log.append("$ " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.append(p.stdout[-20000:])
    return p.returncode


def build_python(req, src_dir, log):
    sol = req["solution"]
    entry_file, _sym = sol["spec"]["entry_point"].split("::")
    if not entry_file.endswith(".py"):
        return {"outcome": "compile_error", "reason": f"entry file {entry_file} is not a .py file"}
    for src in sol["sources"]:
        if src["path"].endswith(".py"):
            try:
                ast.parse(src["content"], filename=src["path"])
            except SyntaxError as e:
                return {"outcome": "compile_error", "reason": f"{src['path']}:{e.lineno}: {e.msg}"}
    return {"outcome": "built", "artifact": src_dir}


def torch_includes(cuda):
    from torch.utils import cpp_extension
    inc = cpp_extension.include_paths(cuda=cuda) if cuda else cpp_extension.include_paths()
    return inc + [sysconfig.get_paths()["include"]]


def nvcc_path():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    for p in (home and os.path.join(home, "bin", "nvcc"), "/usr/local/cuda/bin/nvcc",
              "/usr/local/cuda-13.0/bin/nvcc", shutil.which("nvcc")):
        if p and os.path.exists(p):
            return os.path.realpath(p)  # a symlink in /usr/local/bin must not hide the CUDA root
    return None


def cuda_include():
    nv = nvcc_path()
    return os.path.join(os.path.dirname(os.path.dirname(nv)), "include") if nv else None


def _gencode(arch):
    a = arch.replace(".", "")
    return f"-gencode=arch=compute_{a},code=sm_{a}"


def build_torch(req, src_dir, bdir, pkg, log):
    sol = req["solution"]
    lang = sol["spec"]["language"]
    sources = [os.path.join(src_dir, s["path"]) for s in sol["sources"] if s["path"].endswith(NATIVE_EXT)]
    if not sources:
        return {"outcome": "compile_error", "reason": "no .cu/.cpp/.cc/.cxx/.c source"}
    import torch
    if req["device"] != "cuda" or not torch.cuda.is_available():
        return check_compile_only(req, src_dir, bdir, sources, log)
    from torch.utils import cpp_extension
    os.environ["MAX_JOBS"] = str(req.get("max_jobs") or os.cpu_count())
    if req.get("arch"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = req["arch"]
    try:
        mod = cpp_extension.load(
            name=pkg, sources=sources, extra_include_paths=[src_dir], build_directory=bdir,
            with_cuda=(lang == "cuda" or any(s.endswith(".cu") for s in sources)),
            extra_cflags=[HOST_OPT], extra_cuda_cflags=[HOST_OPT, "-Xptxas=-O3"], verbose=True)
    except Exception as e:  # noqa: BLE001 - any build failure is a COMPILE_ERROR
        return {"outcome": "compile_error", "reason": f"{type(e).__name__}: {str(e)[-4000:]}"}
    sym = sol["spec"]["entry_point"].split("::")[1]
    if not hasattr(mod, sym):
        return {"outcome": "compile_error", "reason": f"entry symbol {sym!r} not exported by the extension"}
    return {"outcome": "built", "artifact": mod.__file__}


def check_compile_only(req, src_dir, bdir, sources, log):
    """CPU mode: compile the CUDA/C++ sources with nvcc/g++ to prove they build; they cannot run here."""
    nvcc = nvcc_path()
    cu = [s for s in sources if s.endswith(".cu")]
    if cu and not nvcc:
        return {"outcome": "not_runnable_here", "reason": "no GPU and no nvcc: cannot check CUDA sources"}
    includes = ["-I" + src_dir] + ["-I" + p for p in torch_includes(cuda=False)]
    env = dict(os.environ)
    # Probe: can this toolchain compile torch's headers at all? If not, a failure says nothing about
    # the candidate, so it is reported as not runnable rather than as a COMPILE_ERROR.
    probe = os.path.join(bdir, "tp_probe.cu")
    with open(probe, "w") as f:
        f.write("#include <torch/extension.h>\n__global__ void k(){}\n")
    arch = req.get("arch") or "9.0a"
    if cu:
        rc = _run([nvcc, "-c", "-std=c++17", _gencode(arch), *includes, probe, "-o", probe + ".o"], bdir, env, [])
        if rc != 0:
            torch_ok = False
        else:
            torch_ok = True
    else:
        torch_ok = True
    failed = []
    missing = set()
    own = {os.path.basename(x["path"]) for x in req["solution"]["sources"]}
    for s in sources:
        obj = os.path.join(bdir, os.path.basename(s) + ".o")
        if s.endswith(".cu"):
            cmd = [nvcc, "-c", "-O3", "-std=c++17", _gencode(arch), "-DTORCH_EXTENSION_NAME=tp_check",
                   *includes, s, "-o", obj]
        else:
            cmd = ["g++", "-c", "-O1", "-std=c++17", "-fPIC", "-DTORCH_EXTENSION_NAME=tp_check", *includes,
                   s, "-o", obj]
            if cuda_include():
                cmd.insert(1, "-I" + cuda_include())
        if _run(cmd, bdir, env, log) != 0:
            # A system header this host lacks (e.g. cusparse.h in a CUDA install without the math
            # libraries) says nothing about the candidate.
            hdrs = set(re.findall(r"fatal error: ([^:\s]+): No such file or directory", log[-1]))
            hdrs = {h for h in hdrs if os.path.basename(h) not in own}
            if hdrs:
                missing |= hdrs
            else:
                failed.append(os.path.basename(s))
    if missing and not failed:
        return {"outcome": "not_runnable_here",
                "reason": "no GPU; this host lacks system headers needed to check the sources ("
                          + ", ".join(sorted(missing)) + "); the other sources compiled"}
    if failed and torch_ok:
        return {"outcome": "compile_error", "reason": "compiler failed on " + ", ".join(failed)}
    if failed:
        return {"outcome": "not_runnable_here",
                "reason": "no GPU; this host's torch headers do not compile under nvcc, so the CUDA sources "
                          "could not be checked (failed: " + ", ".join(failed) + ")"}
    return {"outcome": "not_runnable_here",
            "reason": f"no GPU; sources compiled for sm_{arch.replace('.', '')} as a check (nvcc/g++ -c)"}


def build_cabi(req, src_dir, bdir, pkg, log):
    sol = req["solution"]
    sources = [os.path.join(src_dir, s["path"]) for s in sol["sources"] if s["path"].endswith(NATIVE_EXT)]
    if not sources:
        return {"outcome": "compile_error", "reason": "no .cu/.cpp/.cc/.cxx/.c source"}
    so = os.path.join(bdir, pkg + ".so")
    inc = ["-I" + src_dir, "-I" + req["include_dir"]]
    has_cu = any(s.endswith(".cu") for s in sources)
    if has_cu:
        nvcc = nvcc_path()
        if not nvcc:
            return {"outcome": "toolchain_unavailable", "reason": "nvcc not found"}
        arch = req.get("arch") or "9.0a"
        cmd = [nvcc, "-shared", "-Xcompiler", "-fPIC", "-O3", "-std=c++17", _gencode(arch), *inc, *sources,
               "-o", so]
    else:
        cmd = ["g++", "-shared", "-fPIC", "-O3", "-std=c++17", *inc, *sources, "-o", so]
    if _run(cmd, bdir, dict(os.environ), log) != 0:
        return {"outcome": "compile_error", "reason": "compiler failed"}
    if has_cu and req["device"] != "cuda":
        return {"outcome": "not_runnable_here", "reason": "no GPU; shared library built with nvcc as a check",
                "artifact": so}
    import ctypes
    try:
        lib = ctypes.CDLL(so, mode=os.RTLD_NOW)
        getattr(lib, sol["spec"]["entry_point"].split("::")[1])
    except (OSError, AttributeError) as e:
        return {"outcome": "compile_error", "reason": f"shared library unusable: {e}"}
    return {"outcome": "built", "artifact": so}


def build_tvm_ffi(req, src_dir, bdir, pkg, log):
    try:
        import tvm_ffi  # noqa: F401
        import tvm_ffi.cpp
    except ImportError:
        return {"outcome": "toolchain_unavailable", "reason": "tvm_ffi is not importable"}
    sol = req["solution"]
    cpp = [os.path.join(src_dir, s["path"]) for s in sol["sources"] if s["path"].endswith(NATIVE_EXT[1:])]
    cuda = [os.path.join(src_dir, s["path"]) for s in sol["sources"] if s["path"].endswith(".cu")]
    if req["device"] != "cuda" and cuda:
        return {"outcome": "not_runnable_here", "reason": "no GPU for a CUDA tvm-ffi solution"}
    try:
        so = tvm_ffi.cpp.build(name=pkg, cpp_files=cpp, cuda_files=cuda, extra_include_paths=[src_dir],
                               build_directory=bdir)
    except Exception as e:  # noqa: BLE001
        return {"outcome": "compile_error", "reason": f"{type(e).__name__}: {str(e)[-4000:]}"}
    return {"outcome": "built", "artifact": str(so)}


def _cached(bdir):
    """The finished build in `bdir`, or None (caller holds the directory's lock)."""
    marker = os.path.join(bdir, "TP_BUILD.json")
    if not os.path.exists(marker):
        return None
    with open(marker) as f:
        res = json.load(f)
    if res.get("artifact_rel") is not None:
        # The build directory may have moved (a build cache carried to another machine).
        res["artifact"] = os.path.normpath(os.path.join(bdir, res["artifact_rel"]))
    if res.get("artifact") and not os.path.exists(res["artifact"]):
        os.remove(marker)  # an incomplete cache entry: build again
        return None
    res["cached"] = True
    res["seconds"] = 0.0
    return res


def cached_build(bdir):
    """The finished build in `bdir`, or None. Reads files only (no candidate code), so the judge calls it
    itself and starts no build process for a solution built before."""
    if not os.path.exists(os.path.join(bdir, "TP_BUILD.json")):
        return None
    with open(os.path.join(bdir, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        return _cached(bdir)


def build(req):
    sol = req["solution"]
    bdir = req["build_dir"]
    pkg = os.path.basename(bdir)
    os.makedirs(bdir, exist_ok=True)
    marker = os.path.join(bdir, "TP_BUILD.json")
    with open(os.path.join(bdir, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # concurrent builds of one hash wait for the first
        res = _cached(bdir)
        if res is not None:
            return res
        t0 = time.time()
        log = []
        src_dir = os.path.join(bdir, "src")
        binding = req["binding"]
        write_sources(src_dir if binding != "python" else os.path.join(bdir, pkg), sol)
        if binding == "python":
            res = build_python(req, os.path.join(bdir, pkg), log)
        elif binding == "torch":
            res = build_torch(req, src_dir, bdir, pkg, log)
        elif binding == "c-abi":
            res = build_cabi(req, src_dir, bdir, pkg, log)
        else:
            res = build_tvm_ffi(req, src_dir, bdir, pkg, log)
        res["seconds"] = round(time.time() - t0, 3)
        res["log"] = "\n".join(log)[-20000:]
        res["cached"] = False
        if res["outcome"] == "built":
            if res.get("artifact"):
                res["artifact_rel"] = os.path.relpath(res["artifact"], bdir)
            with open(marker, "w") as f:
                json.dump(res, f)
        return res


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    try:
        res = build(req)
    except Exception as e:  # noqa: BLE001
        res = {"outcome": "compile_error", "reason": f"{type(e).__name__}: {e}", "log": "", "seconds": 0}
    with open(sys.argv[2], "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
