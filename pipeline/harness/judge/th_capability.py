"""What this machine's torch cannot do, and whether a failure was caused by it.

A failure caused by what the machine lacks (an old torch without `torch.nn.functional.rms_norm`, a CPU
build without a Half kernel for addmm) is no verdict on a solution: its cell is not runnable here, with the
reason, as a solution that needs a missing flashinfer is. The judge decides that only from its own probes,
never from what an error message claims (a candidate could raise any message): each capability below is
tried here, once per device, and an error counts as the machine's only when it names a capability the probe
found missing (the same missing torch attribute, or the same message as the probe's own 2x2 call of a
kernel and dtype).

    capabilities(device) -> {"device", "torch", "checked", "missing": [{"capability", "kind", "reason"}]}
    machine_lacks(error_text, device) -> the reason, or None
"""

import importlib
import re

import torch

# Attributes that old torch builds lack and that solutions and references call (dotted, from `torch`).
ATTRIBUTES = [
    "torch.nn.functional.rms_norm", "torch.nn.functional.scaled_dot_product_attention",
    "torch.float8_e4m3fn", "torch.float8_e5m2", "torch.float4_e2m1fn_x2", "torch.uint32", "torch.uint64",
    "torch.compile", "torch.library.custom_op", "torch.nn.attention",
]


def _mat(dt, dev, n=2):
    return torch.ones(n, n, dtype=dt, device=dev)


# Op x dtype probes: small calls whose kernels solutions and references reach (matmuls, norms, softmax,
# sampling, indexing). A dtype's kernel missing on the device shows as "<kernel>" not implemented for '<dtype>'
# (the probe keeps the first line of what torch said; a failure saying the same is the machine's).
OPS = {
    "addmm": lambda dt, dev: torch.addmm(_mat(dt, dev), _mat(dt, dev), _mat(dt, dev)),
    "mm": lambda dt, dev: torch.mm(_mat(dt, dev), _mat(dt, dev)),
    "bmm": lambda dt, dev: torch.bmm(_mat(dt, dev)[None], _mat(dt, dev)[None]),
    "baddbmm": lambda dt, dev: torch.baddbmm(_mat(dt, dev)[None], _mat(dt, dev)[None], _mat(dt, dev)[None]),
    "matmul": lambda dt, dev: torch.matmul(_mat(dt, dev), _mat(dt, dev)[0]),
    "linear": lambda dt, dev: torch.nn.functional.linear(_mat(dt, dev), _mat(dt, dev), _mat(dt, dev)[0]),
    "einsum": lambda dt, dev: torch.einsum("bij,bjk->bik", _mat(dt, dev)[None], _mat(dt, dev)[None]),
    "layer_norm": lambda dt, dev: torch.nn.functional.layer_norm(_mat(dt, dev), (2,)),
    "softmax": lambda dt, dev: torch.softmax(_mat(dt, dev), -1),
    "log_softmax": lambda dt, dev: torch.log_softmax(_mat(dt, dev), -1),
    "logsumexp": lambda dt, dev: torch.logsumexp(_mat(dt, dev), -1),
    "exp": lambda dt, dev: torch.exp(_mat(dt, dev)),
    "rsqrt": lambda dt, dev: torch.rsqrt(_mat(dt, dev)),
    "pow": lambda dt, dev: _mat(dt, dev).pow(2),
    "mean": lambda dt, dev: _mat(dt, dev).mean(-1),
    "sum": lambda dt, dev: _mat(dt, dev).sum(-1),
    "amax": lambda dt, dev: _mat(dt, dev).amax(-1),
    "cumsum": lambda dt, dev: _mat(dt, dev).cumsum(-1),
    "sigmoid": lambda dt, dev: torch.sigmoid(_mat(dt, dev)),
    "silu": lambda dt, dev: torch.nn.functional.silu(_mat(dt, dev)),
    "gelu": lambda dt, dev: torch.nn.functional.gelu(_mat(dt, dev)),
    "tanh": lambda dt, dev: torch.tanh(_mat(dt, dev)),
    "topk": lambda dt, dev: torch.topk(_mat(dt, dev), 1, -1),
    "sort": lambda dt, dev: torch.sort(_mat(dt, dev), -1),
    "argmax": lambda dt, dev: torch.argmax(_mat(dt, dev), -1),
    "multinomial": lambda dt, dev: torch.multinomial(_mat(dt, dev), 1),
    "index_add": lambda dt, dev: _mat(dt, dev).index_add_(0, torch.tensor([0, 1], device=dev), _mat(dt, dev)),
    "scatter_add": lambda dt, dev: _mat(dt, dev).scatter_add_(
        0, torch.zeros(2, 2, dtype=torch.int64, device=dev), _mat(dt, dev)),
    "embedding": lambda dt, dev: torch.nn.functional.embedding(torch.tensor([0, 1], device=dev), _mat(dt, dev)),
}
DTYPES = {"float16": "Half", "bfloat16": "BFloat16"}  # probed dtypes and their names in torch's messages

_CACHE = {}
_ATTR_ERR = re.compile(r"module '(torch[\w.]*)' has no attribute '(\w+)'|cannot import name '(\w+)' from '(torch[\w.]*)'")


def _resolve(dotted):
    """Whether `dotted` (torch.a.b) resolves in this torch: imports the longest module prefix, then getattr."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module (or not importable): try a shorter prefix
            continue
        try:
            for p in parts[cut:]:
                obj = getattr(obj, p)
            return True
        except Exception:  # noqa: BLE001 - torch.backends raises AssertionError for unknown names
            return False
    return False


def capabilities(device="cpu"):
    """The capability probes of this machine's torch on `device`: how many were checked and the missing ones,
    each `{capability, kind: "attribute" | "op_dtype", reason}` (the reason is what torch said). Cached."""
    if device in _CACHE:
        return _CACHE[device]
    missing, checked = [], 0
    for name in ATTRIBUTES:
        checked += 1
        if not _resolve(name):
            missing.append({"capability": name, "kind": "attribute",
                            "reason": f"this torch ({torch.__version__}) has no {name}"})
    for dname in DTYPES:
        dt = getattr(torch, dname, None)
        for op, fn in OPS.items():
            checked += 1
            try:
                with torch.no_grad():
                    fn(dt, device)
            except Exception as e:  # noqa: BLE001 - any failure of a 2x2 call is the machine's
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                missing.append({"capability": f"{op}:{dname}:{device}", "kind": "op_dtype", "reason": first})
    _CACHE[device] = {"device": device, "torch": torch.__version__, "checked": checked, "missing": missing}
    return _CACHE[device]


def machine_lacks(text, device="cpu"):
    """The reason a failure with this error text is the machine's, or None: it names a torch attribute the
    probe found missing, or a kernel and dtype that failed alike in the probe's own call on this device."""
    if not text:
        return None
    caps = capabilities(device)
    absent = {m["capability"]: m for m in caps["missing"] if m["kind"] == "attribute"}
    for m in _ATTR_ERR.finditer(text):
        g = m.groups()
        name = f"{g[0]}.{g[1]}" if g[0] else f"{g[3]}.{g[2]}"
        if name in absent:
            return absent[name]["reason"]
    for miss in caps["missing"]:
        # The same message as the probe's own call (`"addmm_impl_cpu_" not implemented for 'Half'`): the same
        # kernel and dtype, missing from this torch on this device.
        if miss["kind"] == "op_dtype" and len(miss["reason"]) >= 12 and miss["reason"] in text:
            return (f"torch {torch.__version__} on {device} cannot run {miss['capability'].split(':')[0]} "
                    f"of {miss['capability'].split(':')[1]} here: {miss['reason']}")
    return None
