"""tracepipe Triton fused add + RMSNorm: x = hidden + residual (fp32), y = rmsnorm(x) * weight.
The residual is not written back (the definition's reference has only `output`).
DPS: run(hidden_states, residual, weight, output). Parameters: tp_params.py (NUM_WARPS)."""
import os

import torch
import triton
import triton.language as tl


def _params():
    ns = {"NUM_WARPS": 8}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tp_params.py")
    if os.path.exists(path):
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    return ns


_P = _params()


@triton.jit
def _add_rmsnorm_kernel(X, R, W, Y, H, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < H
    x = tl.load(X + row * H + offs, mask=mask, other=0.0).to(tl.float32)
    x += tl.load(R + row * H + offs, mask=mask, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / H + eps)
    w = tl.load(W + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * H + offs, ((x * inv) * w).to(tl.bfloat16), mask=mask)


def run(hidden_states, residual, weight, output):
    x, r, w, y = hidden_states, residual, weight, output
    assert x.dtype == r.dtype == w.dtype == y.dtype == torch.bfloat16
    assert x.dim() == 2 and r.shape == x.shape and y.shape == x.shape and w.shape == (x.shape[1],)
    assert y.is_contiguous()
    x, r, w = x.contiguous(), r.contiguous(), w.contiguous()
    rows, h = x.shape
    if rows == 0 or h == 0:
        return
    _add_rmsnorm_kernel[(rows,)](x, r, w, y, h, 1e-5, BLOCK=triton.next_power_of_2(h),
                                 num_warps=_P["NUM_WARPS"])
