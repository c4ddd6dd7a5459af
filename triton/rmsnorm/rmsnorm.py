"""tracepipe Triton RMSNorm (bf16, fp32 math, eps 1e-5). DPS: run(hidden_states, weight, output).

One program per row; the whole row is held in registers (BLOCK = next power of two >= H).
Sweep parameters come from tp_params.py beside this file (NUM_WARPS)."""
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
def _rmsnorm_kernel(X, R, W, Y, H, eps, HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < H
    x = tl.load(X + row * H + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        x += tl.load(R + row * H + offs, mask=mask, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / H + eps)
    w = tl.load(W + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * H + offs, ((x * inv) * w).to(tl.bfloat16), mask=mask)


def rmsnorm_launch(x, r, w, y):
    assert x.dtype == torch.bfloat16 and w.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    assert x.dim() == 2 and y.shape == x.shape and w.shape == (x.shape[1],)
    x, w = x.contiguous(), w.contiguous()
    assert y.is_contiguous()
    if r is not None:
        assert r.shape == x.shape and r.dtype == torch.bfloat16
        r = r.contiguous()
    rows, h = x.shape
    if rows == 0 or h == 0:
        return
    _rmsnorm_kernel[(rows,)](x, r if r is not None else x, w, y, h, 1e-5,
                             HAS_RES=r is not None, BLOCK=triton.next_power_of_2(h),
                             num_warps=_P["NUM_WARPS"])


def run(hidden_states, weight, output):
    rmsnorm_launch(hidden_states, None, weight, output)
