"""Definitions made from their names, for shapes no dataset holds yet: the families the adapters and
the paged decoder call (the official definitions' layout, axes, constraints and reference, with the
constants of the name). Tracing writes them beside the workloads it records, so a traced TraceSet
is complete; the pinned mode uses them when its folder carries solutions but no definitions.
"""

import re

_RMS = """import torch


@torch.no_grad()
def run(hidden_states, weight):
    batch_size, hidden_size = hidden_states.shape
    assert hidden_size == {H}
    EPS = 1e-5
    x = hidden_states.to(torch.float32)
    inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + EPS)
    y = (x * inv_rms) * weight.to(torch.float32)
    return y.to(hidden_states.dtype)
"""

_FUSED = """import torch


@torch.no_grad()
def run(hidden_states, residual, weight):
    _, hidden_size = hidden_states.shape
    assert hidden_size == {H}
    EPS = 1e-5
    x = hidden_states.to(torch.float32) + residual.to(torch.float32)
    inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + EPS)
    y = (x * inv_rms) * weight.to(torch.float32)
    return y.to(hidden_states.dtype)
"""

_GEMM = """import torch


def run(A, B):
    return torch.matmul(A, B.T)
"""

# One reference for decode and prefill, page size 1 or larger: per sequence, gather its KV tokens
# (full pages, then the used part of the last page), causal with the queries at the end.
_ATTN = """import math

import torch


@torch.no_grad()
def run({args}):
    total_q, num_qo_heads, head_dim = q.shape
    _, page_size, num_kv_heads, _ = k_cache.shape
    assert num_qo_heads == {H} and num_kv_heads == {KV} and head_dim == {D} and page_size == {PS}
    qo = {QO}
    out = torch.zeros((total_q, num_qo_heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.full((total_q, num_qo_heads), -float("inf"), dtype=torch.float32, device=q.device)
    g = num_qo_heads // num_kv_heads
    for b in range(kv_indptr.shape[0] - 1):
        qs, qe = int(qo[b]), int(qo[b + 1])
        ps, pe = int(kv_indptr[b]), int(kv_indptr[b + 1])
        if qs >= qe or ps >= pe:
            continue
        pages = kv_indices[ps:pe].to(torch.long)
        last = {LAST}
        k = torch.cat([k_cache[pages[:-1]].reshape(-1, num_kv_heads, head_dim), k_cache[pages[-1], :last]])
        v = torch.cat([v_cache[pages[:-1]].reshape(-1, num_kv_heads, head_dim), v_cache[pages[-1], :last]])
        k = k.to(torch.float32).permute(1, 0, 2).repeat_interleave(g, dim=0)
        v = v.to(torch.float32).permute(1, 0, 2).repeat_interleave(g, dim=0)
        qb = q[qs:qe].to(torch.float32).permute(1, 0, 2)
        logits = torch.bmm(qb, k.transpose(1, 2)) * sm_scale
        n_kv, n_q = k.shape[1], qe - qs
        mask = torch.arange(n_kv, device=q.device)[None, :] > torch.arange(n_q, device=q.device)[:, None] + (n_kv - n_q)
        logits.masked_fill_(mask[None], -float("inf"))
        lse[qs:qe] = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).permute(1, 0)
        out[qs:qe] = torch.bmm(torch.softmax(logits, dim=-1), v).permute(1, 0, 2).to(q.dtype)
    return out, lse
"""


def _t(shape, dtype):
    return {"shape": shape, "dtype": dtype}


def _defn(name, op_type, axes, inputs, outputs, reference, constraints=(), description=None):
    d = {"name": name, "op_type": op_type, "tags": ["status:synthesized", "source:tracepipe_apply"],
         "axes": axes, "constraints": list(constraints), "inputs": inputs, "outputs": outputs,
         "reference": reference}
    if description:
        d["description"] = description
    return d


def _var():
    return {"type": "var"}


def _const(v):
    return {"type": "const", "value": v}


def rmsnorm(h, dtype="bfloat16", fused=False):
    name = f"{'fused_add_' if fused else ''}rmsnorm_h{h}"
    ins = {"hidden_states": _t(["batch_size", "hidden_size"], dtype)}
    if fused:
        ins["residual"] = _t(["batch_size", "hidden_size"], dtype)
    ins["weight"] = _t(["hidden_size"], dtype)
    return _defn(name, "rmsnorm", {"batch_size": _var(), "hidden_size": _const(h)}, ins,
                 {"output": _t(["batch_size", "hidden_size"], dtype)},
                 (_FUSED if fused else _RMS).replace("{H}", str(h)),
                 description="RMSNorm (eps 1e-5)" + (" of hidden_states + residual" if fused else ""))


def gemm(n, k, dtype="float16"):
    return _defn(f"gemm_n{n}_k{k}", "gemm", {"M": _var(), "N": _const(n), "K": _const(k)},
                 {"A": _t(["M", "K"], dtype), "B": _t(["N", "K"], dtype)}, {"C": _t(["M", "N"], dtype)},
                 _GEMM, description="C = A @ B.T (torch.nn.functional.linear without bias)")


def gqa_paged(kind, h, kv, d, ps, dtype="bfloat16"):
    """`kind` "decode" or "prefill" (causal): the official layout, kv_last_page_len when ps > 1."""
    decode = kind == "decode"
    name = f"gqa_paged_{'decode' if decode else 'prefill_causal'}_h{h}_kv{kv}_d{d}_ps{ps}"
    q_axis = "batch_size" if decode else "total_q"
    axes = {q_axis: _var(), "num_qo_heads": _const(h), "num_kv_heads": _const(kv), "head_dim": _const(d),
            "num_pages": _var(), "page_size": _const(ps), "len_indptr": _var(), "num_kv_indices": _var()}
    cache = ["num_pages", "page_size", "num_kv_heads", "head_dim"]
    ins = {"q": _t([q_axis, "num_qo_heads", "head_dim"], dtype), "k_cache": _t(cache, dtype),
           "v_cache": _t(cache, dtype)}
    if not decode:
        ins["qo_indptr"] = _t(["len_indptr"], "int32")
    ins["kv_indptr"] = _t(["len_indptr"], "int32")
    ins["kv_indices"] = _t(["num_kv_indices"], "int32")
    if ps > 1:
        if not decode:
            axes["batch_size"] = _var()
        ins["kv_last_page_len"] = _t(["batch_size"], "int32")
    ins["sm_scale"] = _t(None, "float32")
    cons = ["num_kv_indices == kv_indptr[-1].item()"]
    cons.insert(0, "len_indptr == batch_size + 1" if decode else "total_q == qo_indptr[-1].item()")
    ref = (_ATTN.replace("{args}", ", ".join(ins)).replace("{H}", str(h)).replace("{KV}", str(kv))
           .replace("{D}", str(d)).replace("{PS}", str(ps))
           .replace("{QO}", "torch.arange(total_q + 1)" if decode else "qo_indptr")
           .replace("{LAST}", "int(kv_last_page_len[b])" if ps > 1 else "1"))
    return _defn(name, "gqa_paged", axes, ins,
                 {"output": _t([q_axis, "num_qo_heads", "head_dim"], dtype),
                  "lse": _t([q_axis, "num_qo_heads"], "float32")},
                 ref, cons, description=f"GQA paged {'decode' if decode else 'causal prefill'} (2-based lse)")


_PATTERNS = [
    (re.compile(r"^rmsnorm_h(\d+)$"), lambda m, dt: rmsnorm(int(m[1]), dt or "bfloat16")),
    (re.compile(r"^fused_add_rmsnorm_h(\d+)$"), lambda m, dt: rmsnorm(int(m[1]), dt or "bfloat16", fused=True)),
    (re.compile(r"^gemm_n(\d+)_k(\d+)$"), lambda m, dt: gemm(int(m[1]), int(m[2]), dt or "float16")),
    (re.compile(r"^gqa_paged_decode_h(\d+)_kv(\d+)_d(\d+)_ps(\d+)$"),
     lambda m, dt: gqa_paged("decode", *map(int, m.groups()), dtype=dt or "bfloat16")),
    (re.compile(r"^gqa_paged_prefill_causal_h(\d+)_kv(\d+)_d(\d+)_ps(\d+)$"),
     lambda m, dt: gqa_paged("prefill", *map(int, m.groups()), dtype=dt or "bfloat16")),
]


def synthesize(name, dtype=None):
    """The definition JSON (a dict) a name stands for, or None when no family matches. `dtype` is the
    trace dtype of the float tensors (the official default of the family when None)."""
    for rx, make in _PATTERNS:
        m = rx.match(name)
        if m:
            return make(m, dtype)
    return None


TORCH_TO_TRACE = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16",
                  "torch.float8_e4m3fn": "float8_e4m3fn", "torch.float8_e5m2": "float8_e5m2",
                  "torch.int64": "int64", "torch.int32": "int32", "torch.int16": "int16",
                  "torch.int8": "int8", "torch.bool": "bool"}


def trace_dtype(torch_dtype):
    """The FlashInfer Trace dtype name of a torch dtype (None when the format has none)."""
    return TORCH_TO_TRACE.get(str(torch_dtype))
