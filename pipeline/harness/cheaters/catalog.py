"""Cheating solutions (one per buildable exploit family of evaluation-rigor.md §5) and honest controls.

Each case is a FlashInfer Solution for one of the small test definitions below, plus what the harness must
report. `python3 catalog.py --dump DIR` writes definitions/ and solutions/ as FlashInfer JSON files.
Definitions and solutions here are this project's own test material.
"""

import json
import os
import sys


def _axes(**kw):
    return {k: ({"type": "var"} if v is None else {"type": "const", "value": v}) for k, v in kw.items()}


DEFS = {
    "tp_relu_f32": {
        "name": "tp_relu_f32", "op_type": "activation", "axes": _axes(n=None, d=256),
        "inputs": {"x": {"shape": ["n", "d"], "dtype": "float32"}},
        "outputs": {"y": {"shape": ["n", "d"], "dtype": "float32"}},
        "reference": "import torch\n\ndef run(x):\n    return torch.relu(x)\n",
    },
    "tp_copy_f32": {
        "name": "tp_copy_f32", "op_type": "copy", "axes": _axes(n=None),
        "inputs": {"x": {"shape": ["n"], "dtype": "float32"}},
        "outputs": {"y": {"shape": ["n"], "dtype": "float32"}},
        "reference": "import torch\n\ndef run(x):\n    return x.clone()\n",
    },
    "tp_rmsnorm_bf16": {
        "name": "tp_rmsnorm_bf16", "op_type": "rmsnorm", "axes": _axes(batch_size=None, hidden_size=64),
        "inputs": {"hidden_states": {"shape": ["batch_size", "hidden_size"], "dtype": "bfloat16"},
                   "weight": {"shape": ["hidden_size"], "dtype": "bfloat16"}},
        "outputs": {"output": {"shape": ["batch_size", "hidden_size"], "dtype": "bfloat16"}},
        "reference": ("import torch\n\ndef run(hidden_states, weight):\n    x = hidden_states.float()\n"
                      "    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)\n"
                      "    return (x * r * weight.float()).to(hidden_states.dtype)\n"),
    },
    "tp_scale_moe_f32": {
        "name": "tp_scale_moe_f32", "op_type": "moe", "axes": _axes(n=None),
        "inputs": {"x": {"shape": ["n"], "dtype": "float32"}, "s": {"shape": None, "dtype": "float32"}},
        "outputs": {"y": {"shape": ["n"], "dtype": "float32"}},
        "reference": "import torch\n\ndef run(x, s):\n    return x * s\n",
    },
    "tp_sampling_top_k": {
        "name": "tp_sampling_top_k", "op_type": "sampling", "axes": _axes(batch_size=None, vocab=32),
        "inputs": {"probs": {"shape": ["batch_size", "vocab"], "dtype": "float32"},
                   "top_k": {"shape": None, "dtype": "int32"}},
        "outputs": {"samples": {"shape": ["batch_size"], "dtype": "int64"}},
        "reference": ("import torch\n\ndef run(probs, top_k):\n"
                      "    kth = torch.topk(probs, top_k, -1).values[:, -1:]\n"
                      "    p = torch.where(probs >= kth, probs, torch.zeros_like(probs))\n"
                      "    return torch.multinomial(p / p.sum(-1, keepdim=True), 1).squeeze(-1)\n"),
    },
    # A nucleus of thousands of tokens: the full TVD of a right sampler is near the threshold by chance,
    # so the evaluator bins (th_tvd.py).
    "tp_sampling_top_p_big": {
        "name": "tp_sampling_top_p_big", "op_type": "sampling", "axes": _axes(batch_size=None, vocab=4000),
        "inputs": {"probs": {"shape": ["batch_size", "vocab"], "dtype": "float32"},
                   "top_p": {"shape": None, "dtype": "float32"}},
        "outputs": {"samples": {"shape": ["batch_size"], "dtype": "int64"}},
        "reference": ("import torch\n\ndef run(probs, top_p):\n"
                      "    sp, idx = torch.sort(probs, -1, descending=True)\n"
                      "    sp = torch.where(torch.cumsum(sp, -1) - sp < top_p, sp, torch.zeros_like(sp))\n"
                      "    return idx.gather(-1, torch.multinomial(sp, 1)).squeeze(-1)\n"),
    },
}

WORKLOADS = {
    "tp_relu_f32": [{"uuid": "relu-a", "axes": {"n": 33}, "inputs": {"x": {"type": "random"}}},
                    {"uuid": "relu-b", "axes": {"n": 7}, "inputs": {"x": {"type": "random"}}}],
    "tp_copy_f32": [{"uuid": "copy-a", "axes": {"n": 1000}, "inputs": {"x": {"type": "random"}}}],
    "tp_rmsnorm_bf16": [{"uuid": "rms-a", "axes": {"batch_size": 17},
                         "inputs": {"hidden_states": {"type": "random"}, "weight": {"type": "random"}}}],
    "tp_scale_moe_f32": [{"uuid": "moe-a", "axes": {"n": 4000},
                          "inputs": {"x": {"type": "random"}, "s": {"type": "scalar", "value": 3.0}}}],
    "tp_sampling_top_k": [{"uuid": "samp-a", "axes": {"batch_size": 4},
                           "inputs": {"probs": {"type": "random"}, "top_k": {"type": "scalar", "value": 5}}},
                          # an empty batch (real extracted workloads have them): only the shape is checked
                          {"uuid": "samp-empty", "axes": {"batch_size": 0},
                           "inputs": {"probs": {"type": "random"}, "top_k": {"type": "scalar", "value": 5}}}],
    "tp_sampling_top_p_big": [{"uuid": "samp-big", "axes": {"batch_size": 2},
                               "inputs": {"probs": {"type": "random"}, "top_p": {"type": "scalar", "value": 0.9}}}],
}


def sol(name, definition, code, dps=False, language="python", entry="main.py::run", extra_sources=None,
        binding=None, author="tracepipe-cheaters"):
    spec = {"language": language, "target_hardware": ["cpu", "cuda"], "entry_point": entry,
            "destination_passing_style": dps}
    if binding:
        spec["binding"] = binding
    sources = [{"path": entry.split("::")[0], "content": code}] + (extra_sources or [])
    return {"name": name, "definition": definition, "author": author, "spec": spec, "sources": sources}


RELU_VR = "import torch\n\ndef run(x):\n    return torch.relu(x)\n"
RELU_DPS = "import torch\n\ndef run(x, y):\n    torch.clamp(x, min=0, out=y)\n"

CABI_RELU = r"""
#include "tracepipe_cabi.h"
extern "C" int relu_entry(const TPTensor* a, int32_t n, void* stream) {
  if (n != 2 || a[0].dtype != TP_FLOAT32 || a[0].device != TP_CPU) return 1;
  long long numel = 1;
  for (int i = 0; i < a[0].ndim; ++i) numel *= a[0].shape[i];
  const float* x = (const float*)a[0].data;
  float* y = (float*)a[1].data;
  for (long long i = 0; i < numel; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
  return 0;
}
"""

# (case id, family / checklist row, solution, expected statuses per workload, expected rigor tag or None)
CASES = []


def case(cid, family, s, expect, rigor=None, config=None, cpu=True, gpu=True):
    CASES.append({"id": cid, "family": family, "solution": s, "expect": expect, "rigor": rigor,
                  "config": config or {}, "cpu": cpu, "gpu": gpu})


# ---- honest controls -------------------------------------------------------------------------------
case("ok_relu_value_returning", "control", sol("ok_relu_vr", "tp_relu_f32", RELU_VR), "PASSED")
case("ok_relu_dps", "control", sol("ok_relu_dps", "tp_relu_f32", RELU_DPS, dps=True), "PASSED")
case("ok_copy", "control", sol("ok_copy", "tp_copy_f32", "def run(x):\n    return x.clone()\n"), "PASSED")
case("ok_rmsnorm_bf16", "control", sol("ok_rmsnorm", "tp_rmsnorm_bf16",
     "import torch\n\ndef run(h, w):\n    x = h.float()\n"
     "    return (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w.float()).bfloat16()\n"), "PASSED")
case("ok_multi_file_python", "control", sol("ok_multi_file", "tp_relu_f32",
     "from .helpers import relu\n\ndef run(x):\n    return relu(x)\n",
     extra_sources=[{"path": "helpers.py", "content": "import torch\n\ndef relu(x):\n    return x.clamp(min=0)\n"}]),
     "PASSED")
case("ok_cabi_cpp_relu", "control", sol("ok_cabi_cpp", "tp_relu_f32", CABI_RELU, dps=True, language="cpp",
     entry="relu.cpp::relu_entry", binding="c-abi"), "PASSED", gpu=False)
case("ok_moe_ratio_0_95", "control: moe matched-ratio 0.95 override",
     sol("ok_moe_98pct", "tp_scale_moe_f32",
         "import torch\n\ndef run(x, s):\n    y = x * s\n    y[::50] += 1.0  # 2% of elements off\n    return y\n"),
     "PASSED")
case("ok_sampling_top_k", "control: sampling evaluator", sol("ok_sampling", "tp_sampling_top_k",
     "import torch\n\ndef run(probs, top_k):\n    kth = torch.topk(probs, top_k, -1).values[:, -1:]\n"
     "    p = torch.where(probs >= kth, probs, torch.zeros_like(probs))\n"
     "    return torch.multinomial(p, 1).squeeze(-1)\n"), "PASSED")

# ---- statuses of the format ----------------------------------------------------------------------
case("bad_shape", "status", sol("bad_shape", "tp_relu_f32", "import torch\n\ndef run(x):\n    return torch.relu(x)[:-1]\n"),
     "INCORRECT_SHAPE")
case("bad_dtype", "status", sol("bad_dtype", "tp_relu_f32", "import torch\n\ndef run(x):\n    return torch.relu(x).double()\n"),
     "INCORRECT_DTYPE")
case("nan_output", "status", sol("nan_output", "tp_relu_f32",
     "import torch\n\ndef run(x):\n    y = torch.relu(x)\n    y[0, 0] = float('nan')\n    return y\n"), "INCORRECT_NUMERICAL")
case("raises", "status", sol("raises", "tp_relu_f32", "def run(x):\n    raise RuntimeError('boom')\n"), "RUNTIME_ERROR")
case("syntax_error", "status", sol("syntax_error", "tp_relu_f32", "def run(x) return x\n"), "COMPILE_ERROR")
case("import_error", "status", sol("import_error", "tp_relu_f32", "import not_a_module_tp\n\ndef run(x):\n    return x\n"),
     "COMPILE_ERROR")
case("wrong_arity", "status: signature check", sol("wrong_arity", "tp_relu_f32", "def run(x, y, z):\n    return x\n"),
     "COMPILE_ERROR")
case("cabi_compile_error", "status", sol("cabi_bad", "tp_relu_f32", "int relu_entry( {", dps=True, language="cpp",
     entry="relu.cpp::relu_entry", binding="c-abi"), "COMPILE_ERROR")
case("moe_ratio_not_for_other_ops", "status: ratio 1.0 outside moe",
     sol("moe_like_relu", "tp_relu_f32",
         "import torch\n\ndef run(x):\n    y = torch.relu(x)\n    y.view(-1)[::50] += 1.0\n    return y\n"),
     "INCORRECT_NUMERICAL")
case("moe_below_ratio", "status: moe below 0.95",
     sol("moe_90pct", "tp_scale_moe_f32",
         "import torch\n\ndef run(x, s):\n    y = x * s\n    y[::10] += 1.0\n    return y\n"), "INCORRECT_NUMERICAL")

# ---- cheaters (evaluation-rigor.md §5 rows in brackets) -----------------------------------------------
case("leftover_dps_output", "[1,18] relies on uninitialised/leftover DPS output",
     sol("cheat_leftover", "tp_relu_f32", "def run(x, y):\n    pass\n", dps=True), "INCORRECT_NUMERICAL")
case("partial_dps_output", "[18] writes only half of a DPS output",
     sol("cheat_partial", "tp_relu_f32",
         "import torch\n\ndef run(x, y):\n    h = x.shape[0] // 2\n    torch.clamp(x[:h], min=0, out=y[:h])\n", dps=True),
     "INCORRECT_NUMERICAL")
case("zero_inputs", "[2] zeroes its inputs and returns zeros",
     sol("cheat_zero_inputs", "tp_relu_f32", "import torch\n\ndef run(x):\n    x.zero_()\n    return x.clone()\n"),
     "RUNTIME_ERROR", "inputs_modified")
case("modify_input_in_place", "[2] computes in place on its input",
     sol("cheat_inplace", "tp_relu_f32", "import torch\n\ndef run(x):\n    torch.relu_(x)\n    return x.clone()\n"),
     "RUNTIME_ERROR", "inputs_modified")
case("return_input_alias", "[3] returns the input tensor itself",
     sol("cheat_alias", "tp_copy_f32", "def run(x):\n    return x\n"), "RUNTIME_ERROR", "output_aliases_input")
case("return_input_view", "[3] returns a view of the input",
     sol("cheat_view", "tp_copy_f32", "def run(x):\n    return x[:]\n"), "RUNTIME_ERROR", "output_aliases_input")
case("dps_output_set_to_input", "[3] DPS: re-points the output buffer at the input",
     sol("cheat_set", "tp_copy_f32", "def run(x, y):\n    y.set_(x)\n", dps=True), "RUNTIME_ERROR",
     "output_aliases_input")
case("cache_by_shape", "[4,5] caches the output keyed on shape and replays it",
     sol("cheat_cache_shape", "tp_relu_f32",
         "import torch\n_c = {}\n\ndef run(x):\n    k = tuple(x.shape)\n    if k not in _c:\n"
         "        _c[k] = torch.relu(x)\n    return _c[k].clone()\n"), "INCORRECT_NUMERICAL")
case("cache_by_pointer", "[4] caches keyed on data_ptr",
     sol("cheat_cache_ptr", "tp_relu_f32",
         "import torch\n_c = {}\n_n = [0]\n\ndef run(x):\n    _n[0] += 1\n    k = x.shape[0]\n"
         "    if k in _c and _n[0] > 1:\n        return _c[k].clone()\n    _c[k] = torch.relu(x)\n    return _c[k].clone()\n"),
     "INCORRECT_NUMERICAL")
case("predict_seed", "[12] re-creates common RNG seeds to predict inputs",
     sol("cheat_seed", "tp_relu_f32",
         "import torch\n\ndef run(x):\n    for s in range(64):\n        g = torch.Generator().manual_seed(s)\n"
         "        if torch.equal(torch.randn(x.shape, generator=g), x.cpu()):\n            return torch.relu(x)\n"
         "    return torch.zeros_like(x)\n"), "INCORRECT_NUMERICAL")
case("low_precision", "[14] quantises beyond tolerance",
     sol("cheat_lowprec", "tp_relu_f32", "import torch\n\ndef run(x):\n    return torch.relu(torch.round(x * 4) / 4)\n"),
     "INCORRECT_NUMERICAL")
case("flip_global_flags", "[14] flips global numerics flags",
     sol("cheat_flags", "tp_relu_f32",
         "import torch\n\ndef run(x):\n    torch.use_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled())\n"
         "    return torch.relu(x)\n"), "RUNTIME_ERROR", "global_flags_changed")
case("timer_monkeypatch", "[10] monkey-patches the timers",
     sol("cheat_timer", "tp_relu_f32",
         "import time, torch\n_real = time.perf_counter_ns\ntime.perf_counter_ns = lambda: _real() // 1000\n"
         "time.perf_counter = lambda: 0.0\n\ndef run(x):\n    return torch.relu(x)\n"), "RUNTIME_ERROR", "timer_tampering")
case("background_thread", "[8] finishes the work on a background thread after returning",
     sol("cheat_thread", "tp_relu_f32",
         "import threading, time, torch\n\ndef run(x, y):\n    def w():\n        time.sleep(0.5)\n        torch.clamp(x, min=0, out=y)\n"
         "    threading.Thread(target=w).start()\n", dps=True), "RUNTIME_ERROR", "thread_leak")
case("tensor_subclass", "[9] returns a lazy tensor subclass",
     sol("cheat_subclass", "tp_relu_f32",
         "import torch\n\nclass Lazy(torch.Tensor):\n    pass\n\ndef run(x):\n    return torch.relu(x).as_subclass(Lazy)\n"),
     "RUNTIME_ERROR", "output_not_exact_tensor")
case("fake_result_channel", "[11] writes fake results to stdout and every open fd",
     sol("cheat_fd", "tp_relu_f32",
         "import os, json, torch\n\ndef run(x):\n    msg = (json.dumps({'ok': True, 'status': 'PASSED'}) + '\\n').encode()\n"
         "    print('PASSED latency_ms=0.0001')\n    for fd in range(3, 64):\n        try:\n            os.write(fd, msg)\n"
         "        except OSError:\n            pass\n    return torch.zeros_like(x)\n"), "RUNTIME_ERROR",
     "result_channel_tampering")
case("hang", "[26] hangs (infinite loop)",
     sol("cheat_hang", "tp_relu_f32", "def run(x):\n    while True:\n        pass\n"), "TIMEOUT", "timeout",
     config={"timeout_s": 4})
case("crash", "[22] crashes the process (SIGSEGV)",
     sol("cheat_crash", "tp_relu_f32", "import os, signal\n\ndef run(x):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"),
     "RUNTIME_ERROR", "worker_crashed")
case("exit_zero", "[22] exits cleanly mid-call",
     sol("cheat_exit", "tp_relu_f32", "import os\n\ndef run(x):\n    os._exit(0)\n"), "RUNTIME_ERROR", "worker_crashed")
case("constant_output", "[19] returns a constant", sol("cheat_const", "tp_relu_f32",
     "import torch\n\ndef run(x):\n    return torch.full_like(x, 0.4)\n"), "INCORRECT_NUMERICAL")
case("sampling_argmax", "[19] sampling: always returns the mode", sol("cheat_argmax", "tp_sampling_top_k",
     "import torch\n\ndef run(probs, top_k):\n    return probs.argmax(-1)\n"), ["INCORRECT_NUMERICAL", "PASSED"])
case("sampling_outside_mask", "sampling: ignores top-k", sol("cheat_nomask", "tp_sampling_top_k",
     "import torch\n\ndef run(probs, top_k):\n    return torch.multinomial(torch.ones_like(probs), 1).squeeze(-1)\n"),
     ["INCORRECT_NUMERICAL", "PASSED"])

# A large nucleus: the binned TVD passes a right sampler and fails one that flattens the distribution
# (uniform over the nucleus), where the full TVD would sit near the threshold for both. The tile is kept
# small so that the CPU runs it in seconds.
BIG_NUCLEUS = {"sampling_tile_max_bytes": 16_000_000}
case("ok_sampling_top_p_big", "control: sampling, a large nucleus (binned TVD)", sol("ok_top_p_big",
     "tp_sampling_top_p_big", DEFS["tp_sampling_top_p_big"]["reference"]), "PASSED", config=BIG_NUCLEUS)
case("sampling_flat_nucleus", "sampling: uniform over the nucleus", sol("cheat_flat", "tp_sampling_top_p_big",
     "import torch\n\ndef run(probs, top_p):\n    sp, idx = torch.sort(probs, -1, descending=True)\n"
     "    keep = (torch.cumsum(sp, -1) - sp < top_p).float()\n"
     "    return idx.gather(-1, torch.multinomial(keep, 1)).squeeze(-1)\n"), "INCORRECT_NUMERICAL",
     config=BIG_NUCLEUS)

# ---- GPU-only cases (run by test_harness.py --device cuda) -------------------------------------------
TRITON_RELU = (
    "import torch\nimport triton\nimport triton.language as tl\n\n\n@triton.jit\n"
    "def _relu(x_ptr, y_ptr, n, BLOCK: tl.constexpr):\n    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
    "    m = offs < n\n    x = tl.load(x_ptr + offs, mask=m)\n    tl.store(y_ptr + offs, tl.maximum(x, 0.0), mask=m)\n\n\n"
    "def run(x, y):\n    n = x.numel()\n    _relu[(triton.cdiv(n, 1024),)](x, y, n, BLOCK=1024)\n")
CUDA_RELU = r"""
#include <cuda_runtime.h>
#include "tracepipe_cabi.h"
__global__ void relu_k(const float* x, float* y, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
extern "C" int relu_entry(const TPTensor* a, int32_t n, void* s) {
  long long numel = 1;
  for (int i = 0; i < a[0].ndim; ++i) numel *= a[0].shape[i];
  if (numel > 0) relu_k<<<(numel + 255) / 256, 256, 0, (cudaStream_t)s>>>((const float*)a[0].data, (float*)a[1].data, numel);
  return cudaGetLastError() == cudaSuccess ? 0 : 2;
}
"""
# Illegal address on the first workload (n = 33): a sticky CUDA error. The second workload must still be
# judged, correctly, in a fresh worker.
CUDA_ILLEGAL = CUDA_RELU.replace("if (i < n) y[i]", "if (n == 33 * 256 && i == 0) *(volatile float*)0x10 = 1.f;\n  if (i < n) y[i]")
CUDA_SPIN = CUDA_RELU.replace("if (i < n) y[i]", "while (n > 0) { __nanosleep(1000); }\n  if (i < n) y[i]")
case("ok_triton_relu", "control (GPU)", sol("ok_triton_relu", "tp_relu_f32", TRITON_RELU, dps=True, language="triton"),
     "PASSED", cpu=False)
case("ok_cuda_cabi_relu", "control (GPU)", sol("ok_cuda_cabi", "tp_relu_f32", CUDA_RELU, dps=True, language="cuda",
     entry="relu.cu::relu_entry", binding="c-abi"), "PASSED", cpu=False)
case("cuda_illegal_address", "[22] sticky CUDA error; next workload in a fresh worker",
     sol("cheat_illegal", "tp_relu_f32", CUDA_ILLEGAL, dps=True, language="cuda", entry="relu.cu::relu_entry",
         binding="c-abi"), ["RUNTIME_ERROR", "PASSED"], cpu=False)
case("cuda_spin_kernel", "[26] GPU spin kernel", sol("cheat_spin", "tp_relu_f32", CUDA_SPIN, dps=True, language="cuda",
     entry="relu.cu::relu_entry", binding="c-abi"), "TIMEOUT", "timeout", config={"timeout_s": 8}, cpu=False)

# Side-stream cheater for timing (GPU): the same work as HONEST_HEAVY, launched on another stream with no
# sync. The device-wide sync before the end event must keep it inside the measurement.
HONEST_HEAVY = sol("honest_heavy", "tp_relu_f32",
                   "import torch\n\ndef run(x):\n    y = x\n    for _ in range(200):\n        y = torch.relu(y)\n    return y.clone()\n")
SIDE_STREAM = sol("cheat_side_stream", "tp_relu_f32",
                  "import torch\n_s = []\n\ndef run(x):\n    if not _s:\n        _s.append(torch.cuda.Stream())\n"
                  "    out = torch.empty_like(x)\n    _s[0].wait_stream(torch.cuda.current_stream())\n"
                  "    with torch.cuda.stream(_s[0]):\n        y = x\n        for _ in range(200):\n            y = torch.relu(y)\n"
                  "        out.copy_(y)\n    return out\n")

# The same cheat with the hidden work on the GPU rather than in launches: about 1 ms of device time on a
# side stream after the call returns. The tail check must charge it (`async_work_after_return`).
SIDE_STREAM_SLEEP = sol("cheat_side_stream_sleep", "tp_relu_f32",
                        "import torch\n_s = []\n\ndef run(x):\n    if not _s:\n        _s.append(torch.cuda.Stream())\n"
                        "    out = torch.empty_like(x)\n    _s[0].wait_stream(torch.cuda.current_stream())\n"
                        "    with torch.cuda.stream(_s[0]):\n        torch.cuda._sleep(2_000_000)\n"
                        "        out.copy_(torch.relu(x))\n    return out\n")


# The timing gate (GPU). A call that spends `us` of host time before its one kernel: under the gate up to
# the hold (100 us) of it stays out of the sample, beyond it the excess is charged.
def host_delay(us):
    return sol(f"host_delay_{us}us", "tp_relu_f32",
               "import time, torch\n\ndef run(x):\n    t = time.perf_counter()\n"
               f"    while time.perf_counter() - t < {us}e-6:\n        pass\n    return torch.relu(x)\n")


# Does its work (about 75 us of device time at 2 GHz) on a side stream and waits for it on the host before
# returning a copy from the judge's stream: if any SM were free while the gate holds the stream, the work
# would be done before the measurement starts. The gate fills every SM, so it runs inside the sample.
GATE_SIDE_WORK = sol("cheat_work_during_gate", "tp_relu_f32",
                     "import torch\n_s = []\n\ndef run(x):\n    if not _s:\n        _s.append(torch.cuda.Stream())\n"
                     "    with torch.cuda.stream(_s[0]):\n        torch.cuda._sleep(150_000)\n        y = torch.relu(x)\n"
                     "    _s[0].synchronize()\n    return y.clone()\n")
# The same device work on the judge's stream: what the cheater must at least be charged.
GATE_SAME_WORK = sol("honest_work_on_stream", "tp_relu_f32",
                     "import torch\n\ndef run(x):\n    torch.cuda._sleep(150_000)\n    return torch.relu(x)\n")
# Copies its input to the host on a side stream while the gate holds the judge's stream (a copy needs no SM),
# computes on the CPU and copies the result back on the judge's stream, so that only that last copy would be
# timed. The gate writes the inputs only once it opens: what the cheater copies during the hold is poison.
GATE_HOST_OFFLOAD = sol("cheat_host_offload_during_gate", "tp_relu_f32",
                        "import torch\n_s = []\n\ndef run(x):\n    if not _s:\n        _s.append(torch.cuda.Stream())\n"
                        "    h = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)\n"
                        "    o = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)\n"
                        "    with torch.cuda.stream(_s[0]):\n        h.copy_(x, non_blocking=True)\n"
                        "    _s[0].synchronize()\n    torch.clamp(h, min=0, out=o)\n"
                        "    return o.to(x.device, non_blocking=True)\n")
# Synchronises with the device inside the call (reads a value): the gate's hold expires, nothing hangs.
GATE_SYNC_IN_CALL = sol("honest_sync_in_call", "tp_relu_f32",
                        "import torch\n\ndef run(x):\n    s = float(x.view(-1)[0])\n    return torch.relu(x) + 0 * s\n")


# Persisting-L2 carveout (pygpubench #49; nvbench PR #459), through the driver API with ctypes: each call
# reserves the largest persisting-L2 carveout and puts an access-policy window (hits persisting) over the
# addresses around its input on the judge's stream, so that the harness's next input copies on that stream
# would land in persisting lines that survive the L2 flush, and the next call would read "cold" inputs from
# L2. The worker sets the carveout back to 0 and resets persisting lines before each timed call (th_l2.py):
# the cheater must be timed like the honest relu, and the worker must report the carveouts it found.
L2_PERSIST = sol("cheat_l2_persist", "tp_relu_f32", r"""
import ctypes
import torch

_cu = ctypes.CDLL("libcuda.so.1")
_dev = {}


class _Window(ctypes.Structure):
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]


class _Value(ctypes.Union):
    _fields_ = [("accessPolicyWindow", _Window), ("pad", ctypes.c_char * 64)]


def _attr(a):
    d, v = ctypes.c_int(), ctypes.c_int()
    _cu.cuCtxGetDevice(ctypes.byref(d))
    _cu.cuDeviceGetAttribute(ctypes.byref(v), a, d)
    return v.value


def run(x):
    if not _dev:
        _dev["carveout"] = _attr(108)  # CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE
        _dev["window"] = _attr(109)  # CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE
    _cu.cuCtxSetLimit(6, ctypes.c_size_t(_dev["carveout"]))  # CU_LIMIT_PERSISTING_L2_CACHE_SIZE
    n = _dev["window"]
    w = _Window(max(0, x.data_ptr() - n // 2), n, min(1.0, _dev["carveout"] / max(1, n)), 2, 1)  # persisting hits
    v = _Value()
    v.accessPolicyWindow = w
    _cu.cuStreamSetAttribute(ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), 1, ctypes.byref(v))
    return torch.relu(x)
""")

# Timing-only cheater: correct outputs, but replays cached outputs keyed on a content fingerprint; the
# honest path costs >= 20 ms. Rotated + perturbed inputs must keep every timed call on the honest path.
FINGERPRINT_CACHE = sol("cheat_fingerprint_cache", "tp_relu_f32",
                        "import time, torch\n_c = {}\n\ndef run(x):\n    k = (tuple(x.shape), float(x.view(-1)[:8].sum()))\n"
                        "    if k in _c:\n        return _c[k].clone()\n    time.sleep(0.02)\n    _c[k] = torch.relu(x)\n"
                        "    return _c[k].clone()\n")
HONEST_SLEEP = sol("honest_sleep_20ms", "tp_relu_f32",
                   "import time, torch\n\ndef run(x):\n    time.sleep(0.02)\n    return torch.relu(x)\n")
# Returns a stale output from its 4th call on: caught by the post-timing recheck.
STALE_REPLAY = sol("cheat_stale_replay", "tp_relu_f32",
                   "import torch\n_last = []\n_n = [0]\n\ndef run(x):\n    _n[0] += 1\n    if _n[0] > 3 and _last:\n"
                   "        return _last[0].clone()\n    _last[:] = [torch.relu(x)]\n    return _last[0].clone()\n")


def dump(root):
    for d in DEFS.values():
        p = os.path.join(root, "definitions", d["op_type"], d["name"] + ".json")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            json.dump(d, f, indent=2)
    for c in CASES + [{"solution": s} for s in (FINGERPRINT_CACHE, HONEST_SLEEP, STALE_REPLAY, HONEST_HEAVY, SIDE_STREAM)]:
        s = c["solution"]
        op = DEFS[s["definition"]]["op_type"]
        p = os.path.join(root, "solutions", s["author"], op, s["definition"], s["name"] + ".json")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            json.dump(s, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        dump(sys.argv[2])
    else:
        print(f"{len(CASES)} cases; use --dump DIR to write FlashInfer JSON files")
