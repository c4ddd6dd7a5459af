"""Shared, trusted helpers of the tracepipe harness: dtypes, tensor files, inputs, comparison.

Imported by the judge (judge/__main__.py and its modules) and by the worker (th_worker.py) before any candidate code
is loaded. Works with torch 1.13 (CPU) and torch 2.x (CUDA).
"""

import bisect
import hashlib
import json
import math
import os
import random
import struct

import torch

# The 11 FlashInfer dtypes, in the format's order; the index is the C-ABI dtype code.
DTYPE_NAMES = [
    "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1",
    "int64", "int32", "int16", "int8", "bool",
]
_TORCH_ATTR = {"float4_e2m1": "float4_e2m1fn_x2"}


class JobError(Exception):
    """Invalid job input: the message names the file/field and the reason."""


def torch_dtype(name):
    """Map a FlashInfer dtype string to a torch dtype (None if this torch lacks it)."""
    if name not in DTYPE_NAMES:
        raise JobError(f"unsupported dtype {name!r} (expected one of {', '.join(DTYPE_NAMES)})")
    return getattr(torch, _TORCH_ATTR.get(name, name), None)


def is_float_dtype(dt):
    return dt.is_floating_point if hasattr(dt, "is_floating_point") else False


# ---------------------------------------------------------------------------------------------------
# Tensor files: the safetensors layout (8-byte little-endian header length, JSON header, raw data).
# Written and parsed here so neither side needs the safetensors package, and so the judge can read
# files written by the untrusted worker without unpickling anything.

_ST_CODES = {
    "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2", "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "bool": "BOOL", "uint8": "U8", "float64": "F64",
}
_ST_BACK = {v: k for k, v in _ST_CODES.items()}
_SIZED_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _dtype_name_of(t):
    for name in list(_ST_CODES):
        dt = getattr(torch, name, None)
        if dt is not None and t.dtype == dt:
            return name
    raise ValueError(f"tensor dtype {t.dtype} cannot be stored")


def _raw_bytes(t):
    """The tensor's bytes as a buffer (a view of one host copy: no second copy through `bytes`)."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    size = t.element_size()
    if t.numel() == 0:
        return b""
    return memoryview(t.reshape(-1).view(_SIZED_INT[size]).numpy()).cast("B")


def bit_equal(a, b):
    """Bitwise equality (distinguishes -0.0 from 0.0 and compares NaN payloads)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.numel() == 0:
        return True
    ai = a.contiguous().reshape(-1)
    bi = b.contiguous().reshape(-1)
    if a.dtype == torch.bool:
        return torch.equal(ai, bi)
    size = a.element_size()
    return torch.equal(ai.view(_SIZED_INT[size]), bi.view(_SIZED_INT[size]))


def save_tensors(path, tensors, meta=None):
    """Write {name: tensor} (CPU or CUDA) to a safetensors file."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        raw = _raw_bytes(t)
        header[name] = {"dtype": _ST_CODES[_dtype_name_of(t)], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_tensors(path, device="cpu", max_bytes=1 << 36):
    """Read a safetensors file, validating the (possibly untrusted) header. Returns {name: tensor}.

    The file is read once into one buffer; CPU tensors are views of it (no further copy), CUDA tensors are
    copied from it to the device."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: file too large")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: truncated safetensors header")
        (hlen,) = struct.unpack("<Q", head)
        if hlen > min(size - 8, 100 << 20):
            raise ValueError(f"{path}: header length {hlen} exceeds file")
        header = json.loads(f.read(hlen).decode())
        data = bytearray(size - 8 - hlen)
        got = f.readinto(data) if data else 0
    if got != len(data):
        raise ValueError(f"{path}: truncated data")
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not an object")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _ST_BACK:
            raise ValueError(f"{path}: tensor {name!r} has an unsupported dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)):
            raise ValueError(f"{path}: tensor {name!r} has a bad shape or offsets")
        dname = _ST_BACK[info["dtype"]]
        dt = getattr(torch, dname, None)
        if dt is None:
            raise ValueError(f"{path}: dtype {dname} not supported by torch {torch.__version__}")
        itemsize = torch.empty((), dtype=dt).element_size()
        n = math.prod(shape) if shape else 1
        a, b = offs
        if not (0 <= a <= b <= len(data)) or b - a != n * itemsize:
            raise ValueError(f"{path}: tensor {name!r} byte range does not match shape {shape}")
        if n == 0:
            t = torch.empty(shape, dtype=dt)
        else:
            raw = torch.frombuffer(data, dtype=torch.uint8, count=b - a, offset=a)
            if a % itemsize:
                raw = raw.clone()  # a misaligned offset: the typed view needs an aligned start
            raw = raw.view(_SIZED_INT[itemsize])
            t = raw.view(torch.uint8).to(torch.bool) if dt == torch.bool else raw.view(dt)
            t = t.reshape(shape)
        out[name] = t.to(device)
    return out


# ---------------------------------------------------------------------------------------------------
# Definition helpers


def axis_values(definition, workload):
    """Resolve const axes from the definition and var axes from the workload."""
    vals = {}
    waxes = workload.get("axes") or {}
    for name, ax in definition["axes"].items():
        kind = ax.get("type", "const" if "value" in ax else "var")
        if kind == "const":
            vals[name] = int(ax["value"])
        else:
            if name not in waxes:
                raise JobError(f"workload {workload.get('uuid')}: field axes.{name}: missing value for var axis")
            v = waxes[name]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise JobError(f"workload {workload.get('uuid')}: field axes.{name}: must be an integer >= 0")
            vals[name] = v
    return vals


def concrete_shape(spec, axes):
    if spec.get("shape") is None:
        return None
    return [axes[a] for a in spec["shape"]]


def poison_fill(t, variant=0):
    """Fill an output buffer with a value no honest kernel leaves behind (NaN, or a sentinel)."""
    if t.dtype.is_floating_point:
        try:
            t.fill_(float("nan") if variant == 0 else 12345.0)
        except RuntimeError:  # fp8 types without NaN fill support
            t.view(torch.uint8).fill_(0x7F if variant == 0 else 0x5A)
    elif t.dtype == torch.bool:
        t.fill_(variant == 0)
    else:
        info = torch.iinfo(t.dtype)
        t.fill_(info.min + 7 if variant == 0 else info.max - 7)
    return t


def alloc_outputs(definition, axes, device, variant=0):
    outs = []
    for name, spec in definition["outputs"].items():
        shape = concrete_shape(spec, axes) or []
        dt = torch_dtype(spec["dtype"])
        outs.append(poison_fill(torch.empty(shape, dtype=dt, device=device), variant))
    return outs


class MachineLacks(JobError):
    """What the job needs that this machine's torch lacks (a dtype): the cell is not runnable here."""


def random_tensor(shape, dname, gen, device):
    dt = torch_dtype(dname)
    if dt is None:
        raise MachineLacks(f"dtype {dname} is not supported by torch {torch.__version__}")
    if dname in ("float32", "float16", "bfloat16"):
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dt)
    if dname.startswith("float8") or dname == "float4_e2m1":
        return torch.randn(shape, generator=gen, device=device).clamp(-2, 2).to(dt)
    if dname == "bool":
        return torch.randint(0, 2, shape, generator=gen, device=device).to(torch.bool)
    if dname == "int8":
        return torch.randint(-128, 128, shape, generator=gen, device=device, dtype=torch.int8)
    return torch.randint(-1024, 1024, shape, generator=gen, device=device, dtype=dt)


def gen_inputs(definition, workload, axes, device, seed, blob_cache):
    """flashinfer-bench's generator, seeded with a secret seed; returns a list in definition order."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    winputs = workload.get("inputs") or {}
    out = []
    for name, spec in definition["inputs"].items():
        desc = winputs.get(name) or {"type": "random"}
        kind = desc.get("type", "random")
        shape = concrete_shape(spec, axes)
        if kind == "scalar":
            out.append(desc["value"])
        elif kind == "safetensors":
            t = blob_cache[name]
            out.append(t.to(device))
        elif kind == "random":
            if shape is None:
                v = random_tensor([], spec["dtype"], gen, "cpu").item()
                out.append(v)
            elif definition.get("op_type") == "sampling" and name == "probs":
                x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
                out.append(torch.softmax(x, -1).to(torch_dtype(spec["dtype"])))
            else:
                out.append(random_tensor(shape, spec["dtype"], gen, device))
        else:
            raise JobError(f"workload {workload.get('uuid')}: field inputs.{name}.type: unknown {kind!r}")
    return out


def load_blobs(definition, workload, axes, dataset_root):
    """Load safetensors inputs once per workload, checking shape and dtype against the definition."""
    cache = {}
    files = {}
    for name, desc in (workload.get("inputs") or {}).items():
        if desc.get("type") != "safetensors":
            continue
        if name not in definition["inputs"]:
            raise JobError(f"workload {workload.get('uuid')}: field inputs.{name}: not an input of the definition")
        rel = desc.get("path")
        if not rel or not dataset_root:
            raise JobError(f"workload {workload.get('uuid')}: field inputs.{name}.path: needs dataset_root and path")
        path = rel if os.path.isabs(rel) else os.path.join(dataset_root, rel)
        if ".." in rel.split("/"):
            raise JobError(f"workload {workload.get('uuid')}: field inputs.{name}.path: '..' not allowed")
        if path not in files:
            try:
                files[path] = load_tensors(path)
            except (OSError, ValueError) as e:
                raise JobError(f"{path}: field inputs.{name}: cannot read safetensors: {e}") from e
        key = desc.get("tensor_key", name)
        if key not in files[path]:
            raise JobError(f"{path}: field inputs.{name}.tensor_key: key {key!r} not in file")
        t = files[path][key]
        spec = definition["inputs"][name]
        want = concrete_shape(spec, axes)
        if want is not None and list(t.shape) != want:
            raise JobError(f"{path}: field inputs.{name}: shape {list(t.shape)} != expected {want}")
        if t.dtype != torch_dtype(spec["dtype"]):
            raise JobError(f"{path}: field inputs.{name}: dtype {t.dtype} != expected {spec['dtype']}")
        cache[name] = t
    return cache


def perturb_scale(seed, n):
    """Per-call input scale used during timing; computed identically by judge and worker."""
    r = random.Random(seed * 1000003 + n)
    # A log-uniform magnitude in [0.5, 0.99] and a random sign: an output replayed from an earlier call of
    # the same input set agrees with the fresh one within 1 % only if the two scales do (a fraction of a
    # percent over set, sign and magnitude), so the post-timing recheck catches stale replays. Never above
    # 1: larger inputs grow the absolute rounding error of bf16 intermediates past atol (a 2x range failed
    # honest torch attention baselines on the H100), smaller ones only shrink it.
    return 2.0 ** r.uniform(-1.0, -0.015) * (1 if r.random() < 0.5 else -1)


def perturbable(definition, workload):
    """Indices of inputs that may be scaled per timed call: random float tensors of non-sampling ops."""
    if definition.get("op_type") == "sampling":
        return []
    idx = []
    winputs = workload.get("inputs") or {}
    for i, (name, spec) in enumerate(definition["inputs"].items()):
        desc = winputs.get(name) or {"type": "random"}
        if desc.get("type", "random") == "random" and spec.get("shape") is not None and \
                spec["dtype"] in ("float32", "float16", "bfloat16"):
            idx.append(i)
    return idx


def apply_perturb(args, idx, scale):
    for i in idx:
        args[i].mul_(scale)


def round_stop_target(target, host_bound_target, expired, total):
    """The stopping rule's target for a timing round, and whether the round counts as host-bound: when the
    gate's hold expired in more than half of the round's samples so far (`expired` of `total`), the call's
    time is mostly host time, which moves with the machine by more than any within-run precision buys, so
    the round may stop at the looser `host_bound_target` (None or 0: never). Judged on the measured samples,
    not the warm-up, whose few first calls of a round are slow for reasons of their own."""
    host_bound = bool(host_bound_target) and total > 0 and expired * 2 > total
    return (max(float(target), float(host_bound_target)) if host_bound else float(target)), host_bound


class MedianStopRule:
    """The timing loop's noise-based stopping rule, on the statistic that is reported: the median.

    After `min_samples`, `add` answers True once the standard error of the median, taken from its
    distribution-free 95 % confidence interval (the order statistics n/2 -/+ 0.98 sqrt(n)), is below
    `target` relative to the median. Unlike the standard error of the mean, a few slow outliers (a host
    hiccup, a clock step) do not keep an otherwise tight distribution sampling to the cap."""

    def __init__(self, min_samples, target):
        self.min_samples, self.target = max(1, int(min_samples)), float(target)
        self.sorted = []

    def add(self, x):
        bisect.insort(self.sorted, x)
        n = len(self.sorted)
        if n < self.min_samples or n < 3:
            return False
        half = 0.98 * math.sqrt(n)
        lo = max(0, int(math.floor(n / 2 - half)))
        hi = min(n - 1, int(math.ceil(n / 2 + half)))
        s = self.sorted
        med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
        return med > 0 and (s[hi] - s[lo]) / (2 * 1.96) / med < self.target


# ---------------------------------------------------------------------------------------------------
# Comparison (flashinfer-bench's compute_error_stats, same formulas)


def error_stats(x, y, rtol, atol, required_ratio):
    """Returns (max_abs, max_rel, exceeded, matched_ratio). x = solution, y = reference."""
    if x.numel() == 0:
        return 0.0, 0.0, False, 1.0
    x = x.to(torch.float32)
    y = y.to(torch.float32)
    absd = (x - y).abs()
    rel = absd / (y.abs() + 1e-8)
    fail = (absd > atol) & (rel > rtol)
    ratio = 1.0 - float(fail.sum().item()) / x.numel()
    ratio = min(1.0, max(0.0, ratio))
    return float(absd.max().item()), float(rel.max().item()), ratio < required_ratio, ratio


def _nonfinite_check(i, sf, rf):
    """Non-finite values must match the reference's (flashinfer-bench PR #429): an inf only where the reference
    has the same inf (a row with no keys has LSE -inf in both), and a finite value never where it has an inf.
    A NaN in the reference is an element the reference leaves undefined (an attention row with no key: 0/0),
    where FlashInfer's kernels write 0 and the reference NaN: there the solution may write any finite value or
    NaN, and only an inf fails. Returns (failure or None, mask of the places left out of the tolerance check);
    a mismatch fails whatever the matched ratio."""
    s_inf, r_inf, s_nan, r_nan = torch.isinf(sf), torch.isinf(rf), torch.isnan(sf), torch.isnan(rf)
    if not bool((s_inf | r_inf | s_nan | r_nan).any().item()):
        return None, None
    same = (s_inf & r_inf & (sf == rf)) | (r_nan & ~s_inf)
    for bad, what, val in ((s_inf & ~same, "contains inf", math.inf), (s_nan & ~same, "contains NaN", math.nan),
                           (r_inf & ~same, "differs from an infinite reference value", math.inf)):
        n = int(bad.sum().item())
        if n:
            k = int(torch.nonzero(bad.reshape(-1))[0].item())
            return ("INCORRECT_NUMERICAL", val, val, None,
                    f"output {i}: {what} at {n} place(s) where the reference has another value (first at flat "
                    f"index {k}: {sf.reshape(-1)[k].item()} vs the reference's {rf.reshape(-1)[k].item()})"), same
    return None, same


def compare_outputs(sol_outs, ref_outs, tol):
    """Apply the check order shape → dtype → inf → NaN → tolerance to each output pair. An inf is accepted only
    where the reference has the same inf, a NaN only where the reference has NaN (undefined there: any finite
    value is accepted too; see _nonfinite_check).

    Returns (status or None, max_abs, max_rel, matched_ratio_min, message).
    """
    max_abs = 0.0
    max_rel = 0.0
    ratio_min = 1.0
    exceeded = False
    for i, (s, r) in enumerate(zip(sol_outs, ref_outs)):
        if list(s.shape) != list(r.shape):
            return "INCORRECT_SHAPE", None, None, None, f"output {i}: shape {list(s.shape)} != {list(r.shape)}"
        if s.dtype != r.dtype:
            return "INCORRECT_DTYPE", None, None, None, f"output {i}: dtype {s.dtype} != {r.dtype}"
        sf = s.to(torch.float32)
        rf = r.to(device=sf.device, dtype=torch.float32)
        failed, same = _nonfinite_check(i, sf, rf)
        if failed:
            return failed
        if same is not None:  # matching non-finite and undefined places count as exact: compare the rest
            s, r = sf.masked_fill(same, 0.0), rf.masked_fill(same, 0.0)
        a, rl, ex, ratio = error_stats(s, r, tol["rtol"], tol["atol"], tol["required_matched_ratio"])
        max_abs = max(max_abs, a)
        max_rel = max(max_rel, rl)
        ratio_min = min(ratio_min, ratio)
        exceeded = exceeded or ex
    if exceeded:
        return "INCORRECT_NUMERICAL", max_abs, max_rel, ratio_min, "tolerance exceeded"
    return None, max_abs, max_rel, ratio_min, ""


def normalize_outputs(ret, definition, device):
    """flashinfer-bench's value-returning normalisation; raises ValueError on a wrong count."""
    specs = list(definition["outputs"].values())
    n = len(specs)
    if isinstance(ret, (tuple, list)):
        items = list(ret)
        if len(items) == 1 and n == 1:
            pass
        elif len(items) != n:
            raise ValueError(f"expected {n} outputs, got {len(items)}")
    else:
        if n != 1:
            raise ValueError(f"expected {n} outputs, got a single value")
        items = [ret]
    out = []
    for v, spec in zip(items, specs):
        if isinstance(v, (bool, int, float)):
            v = torch.tensor(v, dtype=torch_dtype(spec["dtype"]), device=device)
        out.append(v)
    return out


# ---------------------------------------------------------------------------------------------------
# Config resolution


def resolve_tolerance(definition, config):
    """defaults < built-in op_type rules < op_type_config < definition_config < top-level keys."""
    tol = {"rtol": 1e-2, "atol": 1e-2, "required_matched_ratio": None, "extra": {}}
    op = definition.get("op_type")
    name = definition.get("name", "")
    builtin = {
        "moe": {"required_matched_ratio": 0.95},
        "sampling": {"extra": {"sampling_validation_trials": 100, "sampling_tvd_threshold": 0.2}},
    }
    layers = [builtin.get(op, {}), (config.get("op_type_config") or {}).get(op, {}),
              (config.get("definition_config") or {}).get(name, {}),
              {k: config[k] for k in ("rtol", "atol", "required_matched_ratio") if config.get(k) is not None}]
    for layer in layers:
        for k, v in layer.items():
            if k == "extra":
                tol["extra"].update(v or {})
            elif v is not None:
                tol[k] = v
    for k in ("sampling_validation_trials", "sampling_tvd_threshold", "sampling_samples_per_row",
              "sampling_tvd_rows", "sampling_tile_max_bytes", "sampling_tvd_early_fraction_inv"):
        if config.get(k) is not None:
            tol["extra"][k] = config[k]
    if tol["required_matched_ratio"] is None and "moe_fp8_block_scale" in name:
        tol["required_matched_ratio"] = 0.95  # flashinfer-bench LowBitEvaluator default
    tol["record_ratio"] = tol["required_matched_ratio"] is not None
    if tol["required_matched_ratio"] is None:
        tol["required_matched_ratio"] = 1.0
    return tol


WORKLOAD_TOLERANCES = {"max_atol": "atol", "max_rtol": "rtol", "required_matched_ratio": "required_matched_ratio"}


def workload_tolerance(tol, workload):
    """The tolerance of one workload: its own `max_atol`, `max_rtol` and `required_matched_ratio` (the optional
    per-workload tolerances of the trace schema) replace the job's for that workload; `tol` is unchanged."""
    own = {k: workload.get(k) for k in WORKLOAD_TOLERANCES if workload.get(k) is not None}
    if not own:
        return tol
    out = dict(tol)
    for k, v in own.items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        if not ok or (k == "required_matched_ratio" and v > 1):
            rng = "a number in [0, 1]" if k == "required_matched_ratio" else "a finite number >= 0"
            raise JobError(f"workload {workload.get('uuid')}: field {k}: must be {rng}, not {v!r}")
        out[WORKLOAD_TOLERANCES[k]] = float(v)
    if "required_matched_ratio" in own:
        out["record_ratio"] = True
    return out


# ---------------------------------------------------------------------------------------------------
# Solution hash (flashinfer-bench §1.3) and JSON helpers


def solution_hash(sol):
    spec = sol.get("spec", {})
    h = hashlib.sha1()
    parts = [sol.get("definition", ""), spec.get("language", ""), spec.get("entry_point", ""),
             spec.get("binding") or ""]
    parts += list(spec.get("dependencies") or [])
    for src in sol.get("sources", []):
        parts += [src["path"], src["content"]]
    for p in parts:
        h.update(p.encode("utf-8"))
    return h.hexdigest()


def finite_json(v):
    """FlashInfer serialises non-finite floats as strings."""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return {k: finite_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_json(x) for x in v]
    return v


def torch_global_flags():
    """Numerics-relevant global flags a candidate must not flip."""
    flags = {"deterministic": torch.are_deterministic_algorithms_enabled()}
    try:
        flags["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        flags["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        flags["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        flags["fp16_reduced"] = torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
    except AttributeError:
        pass
    if hasattr(torch, "get_float32_matmul_precision"):
        flags["fp32_precision"] = torch.get_float32_matmul_precision()
    return flags
