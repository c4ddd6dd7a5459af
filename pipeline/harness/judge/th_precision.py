"""The numerics the judge computes references in: full-precision reductions, no TF32.

PyTorch's defaults let cuBLAS reduce fp16 and bf16 GEMMs in reduced precision, and cuDNN use TF32 for fp32:
on an A800 the fp16 GEMM reference itself was inaccurate at M >= 136, so the reference, not the candidate,
decided verdicts. The judge therefore runs each reference it compares against with those flags off, and
restores whatever they were afterwards (the judge's defaults; candidates run in their own processes with
theirs). Each flag is probed first: torch 1.13 has no bf16 flag (and answers an unknown name with an
AssertionError, not an AttributeError). The timed reference of the `time` command runs in a worker at
PyTorch's defaults, as flashinfer-bench times it.

    with strict_reference(): ...        # the reference's run
    reference_mode()                    # e.g. "strict(fp16_reduction=off,bf16_reduction=n/a,tf32=off)"
"""

import contextlib
import warnings

import torch

# (name in the mode string, module, attribute): reduced-precision reductions, set to False for the reference.
_REDUCTIONS = [
    ("fp16_reduction", "torch.backends.cuda.matmul", "allow_fp16_reduced_precision_reduction"),
    ("bf16_reduction", "torch.backends.cuda.matmul", "allow_bf16_reduced_precision_reduction"),
]


def _module(path):
    obj = torch
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _get(path, attr):
    """The flag's value, or None where this torch has no such flag."""
    try:
        return getattr(_module(path), attr)
    except Exception:  # noqa: BLE001 - torch.backends.cuda.matmul raises AssertionError for unknown names
        return None


def _set(path, attr, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 warns that the TF32 flags' legacy setters will go
        setattr(_module(path), attr, value)


def _flags():
    """[(name, getter, setter, strict value)] of the flags this torch has."""
    out = []
    for name, path, attr in _REDUCTIONS:
        if isinstance(_get(path, attr), bool):
            out.append((name, (lambda p=path, a=attr: _get(p, a)), (lambda v, p=path, a=attr: _set(p, a, v)), False))
    # TF32 for fp32 matmuls through the matmul precision ("highest" = no TF32); the legacy setters keep torch's
    # old and new TF32 state consistent (mixing the two APIs raises in torch >= 2.9).
    if hasattr(torch, "get_float32_matmul_precision"):
        out.append(("tf32", torch.get_float32_matmul_precision, _set_matmul_precision, "highest"))
    elif isinstance(_get("torch.backends.cuda.matmul", "allow_tf32"), bool):
        out.append(("tf32", lambda: _get("torch.backends.cuda.matmul", "allow_tf32"),
                    lambda v: _set("torch.backends.cuda.matmul", "allow_tf32", v), False))
    if isinstance(_get("torch.backends.cudnn", "allow_tf32"), bool):
        out.append(("cudnn_tf32", lambda: _get("torch.backends.cudnn", "allow_tf32"),
                    lambda v: _set("torch.backends.cudnn", "allow_tf32", v), False))
    return out


def _set_matmul_precision(v):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_float32_matmul_precision(v)


_FLAGS = _flags()


def reference_mode():
    """What the judge's references run with, for each trace's `environment.libs.reference_mode`: each
    reduced-precision reduction and TF32 off, or n/a where this torch has no such flag."""
    have = {name for name, *_ in _FLAGS}
    parts = [f"{n}={'off' if n in have else 'n/a'}" for n, _, _ in _REDUCTIONS]
    parts.append(f"tf32={'off' if 'tf32' in have else 'n/a'}")
    return f"strict({','.join(parts)})"


@contextlib.contextmanager
def strict_reference():
    """Runs the body with reduced-precision reductions and TF32 off; restores the settings found before."""
    saved = []
    try:
        for name, get, put, strict in _FLAGS:
            saved.append((put, get()))
            put(strict)
        yield
    finally:
        for put, value in reversed(saved):
            put(value)


def current_flags():
    """{name: value} of the flags strict_reference() sets (tests)."""
    return {name: get() for name, get, _, _ in _FLAGS}
