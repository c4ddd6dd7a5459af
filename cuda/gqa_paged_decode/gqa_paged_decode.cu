// tracepipe: batched GQA decode over a paged KV cache (head_dim 128, bf16), split-KV
// ("flash-decoding"). Serves both definition families:
//   page_size 1 : run(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale, output, lse)
//   page_size N : run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale,
//                     output, lse)
// lse is the base-2 log-sum-exp of the scaled logits; an empty sequence gives output 0 and
// lse -inf, like the definitions' reference.
//
// Kernel 1 (grid splits x kv_heads x batch): each half-warp owns one token at a time (16 lanes x
// 8 dims = 128), computes the G = qo_heads/kv_heads scores of that token with shuffles, and keeps
// an online softmax per head. The block merges its half-warps and writes either the final output
// (one split) or a partial (output, lse) pair. Kernel 2 merges the partials.
#include "tp_params.h"

#ifndef THREADS
#define THREADS 128
#endif
#ifndef UNROLL
#define UNROLL 2
#endif
#ifndef MIN_CHUNK
#define MIN_CHUNK 256
#endif
#ifndef BLOCKS_PER_SM
#define BLOCKS_PER_SM 4
#endif

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

namespace tp_decode {

constexpr int kD = 128;
constexpr int kNW = THREADS / 32;
constexpr int kNHW = THREADS / 16;

struct Args {
  const __nv_bfloat16* q;    // [B, Hq, 128]
  const __nv_bfloat16* k;    // [P, page, Hkv, 128]
  const __nv_bfloat16* v;
  const int32_t* indptr;     // [B+1]
  const int32_t* indices;    // [nnz]
  const int32_t* last_len;   // [B] or null (page_size 1 family)
  __nv_bfloat16* out;        // [B, Hq, 128]
  float* lse;                // [B, Hq]
  float* o_part;             // [B, max_splits, Hq, 128]
  float* lse_part;           // [B, max_splits, Hq]
  int batch, hkv, page_size, max_splits;
  float scale_log2;          // sm_scale * log2(e)
};

__device__ __forceinline__ void seq_split(const Args& a, int b, int& p0, int& len, int& nsplit,
                                          int& chunk) {
  p0 = a.indptr[b];
  const int np = a.indptr[b + 1] - p0;
  if (np <= 0) {
    len = 0;
  } else {
    const int last = a.last_len ? a.last_len[b] : a.page_size;
    len = (np - 1) * a.page_size + last;
    if (len < 0) len = 0;
  }
  int n0 = (len + MIN_CHUNK - 1) / MIN_CHUNK;
  if (n0 < 1) n0 = 1;
  if (n0 > a.max_splits) n0 = a.max_splits;
  chunk = (len + n0 - 1) / n0;
  if (chunk < 1) chunk = 1;
  nsplit = len > 0 ? (len + chunk - 1) / chunk : 1;
}

__device__ __forceinline__ void bf8_to_f(const uint4& u, float* f) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <int G>
__global__ void __launch_bounds__(THREADS) decode_split_kernel(Args a) {
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  int p0, len, nsplit, chunk;
  seq_split(a, b, p0, len, nsplit, chunk);
  if (split >= nsplit) return;
  const int t0 = split * chunk;
  const int t1 = min(len, t0 + chunk);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int l16 = lane & 15;
  const int hq = a.hkv * G;

  float qf[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const uint4 u = *reinterpret_cast<const uint4*>(
        a.q + ((int64_t)b * hq + kvh * G + g) * kD + l16 * 8);
    bf8_to_f(u, qf[g]);
#pragma unroll
    for (int j = 0; j < 8; ++j) qf[g][j] *= a.scale_log2;
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[g][j] = 0.f;
  }

  const int64_t tok_stride = (int64_t)a.hkv * kD;  // elements between consecutive tokens
  // The loop bound is warp-uniform (the shuffles below need all 32 lanes); a half-warp whose
  // token is past t1 carries score -inf for it.
  for (int tw = t0 + warp * 2; tw < t1; tw += kNHW * UNROLL) {
    const int t = tw + (lane >> 4);
    uint4 ku[UNROLL], vu[UNROLL];
    bool valid[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int tt = t + u * kNHW;
      valid[u] = tt < t1;
      if (valid[u]) {
        const int page = a.indices[p0 + tt / a.page_size];
        const int slot = tt - (tt / a.page_size) * a.page_size;
        const int64_t off = ((int64_t)page * a.page_size + slot) * tok_stride + kvh * kD + l16 * 8;
        ku[u] = __ldg(reinterpret_cast<const uint4*>(a.k + off));
        vu[u] = __ldg(reinterpret_cast<const uint4*>(a.v + off));
      }
    }
    float s[UNROLL][G];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      float kf[8];
      bf8_to_f(ku[u], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j) d = fmaf(qf[g][j], kf[j], d);
        d += __shfl_xor_sync(0xffffffffu, d, 8);
        d += __shfl_xor_sync(0xffffffffu, d, 4);
        d += __shfl_xor_sync(0xffffffffu, d, 2);
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        s[u][g] = valid[u] ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mn = m[g];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) mn = fmaxf(mn, s[u][g]);
      const float sc = (mn == -INFINITY) ? 1.f : exp2f(m[g] - mn);  // m = -inf first: 0
      l[g] *= sc;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[g][j] *= sc;
      m[g] = mn;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      float vf[8];
      bf8_to_f(vu[u], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float p = (s[u][g] == -INFINITY) ? 0.f : exp2f(s[u][g] - m[g]);
        l[g] += p;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[g][j] = fmaf(p, vf[j], acc[g][j]);
      }
    }
  }

  // merge the two half-warps of each warp
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float mo = __shfl_xor_sync(0xffffffffu, m[g], 16);
    const float lo = __shfl_xor_sync(0xffffffffu, l[g], 16);
    const float mn = fmaxf(m[g], mo);
    const float sa = (m[g] == -INFINITY) ? 0.f : exp2f(m[g] - mn);
    const float sb = (mo == -INFINITY) ? 0.f : exp2f(mo - mn);
    l[g] = l[g] * sa + lo * sb;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float ao = __shfl_xor_sync(0xffffffffu, acc[g][j], 16);
      acc[g][j] = acc[g][j] * sa + ao * sb;
    }
    m[g] = mn;
  }

  __shared__ float sm_acc[kNW][G][kD];
  __shared__ float sm_m[kNW][G], sm_l[kNW][G];
  if (lane < 16) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int j = 0; j < 8; ++j) sm_acc[warp][g][l16 * 8 + j] = acc[g][j];
      if (lane == 0) {
        sm_m[warp][g] = m[g];
        sm_l[warp][g] = l[g];
      }
    }
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < G * kD; idx += THREADS) {
    const int g = idx / kD, d = idx - g * kD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kNW; ++w) M = fmaxf(M, sm_m[w][g]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kNW; ++w) {
        const float mw = sm_m[w][g];
        const float e = (mw == -INFINITY) ? 0.f : exp2f(mw - M);
        L += sm_l[w][g] * e;
        O += sm_acc[w][g][d] * e;
      }
    }
    const float o = L > 0.f ? O / L : 0.f;
    const float ls = L > 0.f ? M + log2f(L) : -INFINITY;
    const int h = kvh * G + g;
    if (nsplit == 1) {
      a.out[((int64_t)b * hq + h) * kD + d] = __float2bfloat16_rn(o);
      if (d == 0) a.lse[(int64_t)b * hq + h] = ls;
    } else {
      const int64_t row = ((int64_t)b * a.max_splits + split) * hq + h;
      a.o_part[row * kD + d] = o;
      if (d == 0) a.lse_part[row] = ls;
    }
  }
}

// grid (Hq, B), 128 threads: one thread per head dim.
__global__ void __launch_bounds__(kD) decode_merge_kernel(Args a, int hq) {
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  int p0, len, nsplit, chunk;
  seq_split(a, b, p0, len, nsplit, chunk);
  if (nsplit <= 1) return;
  const int64_t base = (int64_t)b * a.max_splits * hq + h;
  float M = -INFINITY;
  for (int s = 0; s < nsplit; ++s) M = fmaxf(M, a.lse_part[base + (int64_t)s * hq]);
  float L = 0.f, O = 0.f;
  if (M != -INFINITY) {
    for (int s = 0; s < nsplit; ++s) {
      const float ls = a.lse_part[base + (int64_t)s * hq];
      const float e = (ls == -INFINITY) ? 0.f : exp2f(ls - M);
      L += e;
      O += e * a.o_part[(base + (int64_t)s * hq) * kD + d];
    }
  }
  a.out[((int64_t)b * hq + h) * kD + d] = __float2bfloat16_rn(L > 0.f ? O / L : 0.f);
  if (d == 0) a.lse[(int64_t)b * hq + h] = L > 0.f ? M + log2f(L) : -INFINITY;
}

// Number of split slots per (sequence, kv head); each sequence uses at most this many.
inline int choose_max_splits(int batch, int hkv, int64_t nnz, int page_size, int num_sms) {
  const int64_t work = (int64_t)batch * hkv;
  if (work <= 0) return 1;
  int64_t target = ((int64_t)num_sms * BLOCKS_PER_SM + work - 1) / work;
  const int64_t by_len = (nnz * page_size + MIN_CHUNK - 1) / MIN_CHUNK;
  if (target > by_len) target = by_len;
  if (target > 256) target = 256;
  if (target < 1) target = 1;
  return (int)target;
}

inline cudaError_t launch(const Args& a, int G, cudaStream_t st) {
  if (a.batch <= 0 || a.hkv <= 0) return cudaSuccess;
  dim3 grid(a.max_splits, a.hkv, a.batch);
  switch (G) {
    case 1: decode_split_kernel<1><<<grid, THREADS, 0, st>>>(a); break;
    case 2: decode_split_kernel<2><<<grid, THREADS, 0, st>>>(a); break;
    case 3: decode_split_kernel<3><<<grid, THREADS, 0, st>>>(a); break;
    case 4: decode_split_kernel<4><<<grid, THREADS, 0, st>>>(a); break;
    case 5: decode_split_kernel<5><<<grid, THREADS, 0, st>>>(a); break;
    case 6: decode_split_kernel<6><<<grid, THREADS, 0, st>>>(a); break;
    case 7: decode_split_kernel<7><<<grid, THREADS, 0, st>>>(a); break;
    case 8: decode_split_kernel<8><<<grid, THREADS, 0, st>>>(a); break;
    default: return cudaErrorInvalidValue;
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || a.max_splits <= 1) return e;
  decode_merge_kernel<<<dim3(a.hkv * G, a.batch), kD, 0, st>>>(a, a.hkv * G);
  return cudaGetLastError();
}

}  // namespace tp_decode

#ifndef TP_KERNEL_ONLY
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

static void tp_decode_run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& indptr, const torch::Tensor& indices,
                          const c10::optional<torch::Tensor>& last_len, double sm_scale,
                          torch::Tensor& out, torch::Tensor& lse) {
  TORCH_CHECK(q.is_cuda() && k.is_cuda() && v.is_cuda() && indptr.is_cuda() && indices.is_cuda() &&
                  out.is_cuda() && lse.is_cuda(),
              "tensors must be on CUDA");
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 && k.scalar_type() == torch::kBFloat16 &&
                  v.scalar_type() == torch::kBFloat16 && out.scalar_type() == torch::kBFloat16 &&
                  lse.scalar_type() == torch::kFloat32,
              "dtype mismatch");
  TORCH_CHECK(indptr.scalar_type() == torch::kInt32 && indices.scalar_type() == torch::kInt32,
              "int32 index tensors expected");
  TORCH_CHECK(q.dim() == 3 && k.dim() == 4 && q.size(2) == 128 && k.size(3) == 128 &&
                  v.sizes() == k.sizes(),
              "shape mismatch");
  TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous() &&
                  indptr.is_contiguous() && indices.is_contiguous() && out.is_contiguous() &&
                  lse.is_contiguous(),
              "contiguous tensors expected");
  const int B = (int)q.size(0), hq = (int)q.size(1), hkv = (int)k.size(2);
  TORCH_CHECK(hkv > 0 && hq % hkv == 0 && hq / hkv >= 1 && hq / hkv <= 8,
              "group size 1..8 supported");
  TORCH_CHECK(indptr.numel() == B + 1, "len(kv_indptr) must be batch_size + 1");
  const c10::cuda::CUDAGuard guard(q.device());
  tp_decode::Args a{};
  a.q = reinterpret_cast<const __nv_bfloat16*>(q.data_ptr());
  a.k = reinterpret_cast<const __nv_bfloat16*>(k.data_ptr());
  a.v = reinterpret_cast<const __nv_bfloat16*>(v.data_ptr());
  a.indptr = indptr.data_ptr<int32_t>();
  a.indices = indices.data_ptr<int32_t>();
  if (last_len.has_value()) {
    TORCH_CHECK(last_len->is_cuda() && last_len->scalar_type() == torch::kInt32 &&
                    last_len->numel() == B && last_len->is_contiguous(),
                "kv_last_page_len must be int32[batch_size]");
    a.last_len = last_len->data_ptr<int32_t>();
  }
  a.out = reinterpret_cast<__nv_bfloat16*>(out.data_ptr());
  a.lse = lse.data_ptr<float>();
  a.batch = B;
  a.hkv = hkv;
  a.page_size = (int)k.size(1);
  a.scale_log2 = (float)(sm_scale * 1.4426950408889634);
  if (B == 0) return;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  a.max_splits = tp_decode::choose_max_splits(B, hkv, indices.numel(), a.page_size, sms);
  torch::Tensor o_part, lse_part;
  if (a.max_splits > 1) {
    auto opt = q.options().dtype(torch::kFloat32);
    o_part = torch::empty({(int64_t)B * a.max_splits * hq * 128}, opt);
    lse_part = torch::empty({(int64_t)B * a.max_splits * hq}, opt);
    a.o_part = o_part.data_ptr<float>();
    a.lse_part = lse_part.data_ptr<float>();
  }
  cudaError_t e = tp_decode::launch(a, hq / hkv, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(e == cudaSuccess, "gqa decode launch failed: ", cudaGetErrorString(e));
}

void run_ps1(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache, torch::Tensor kv_indptr,
             torch::Tensor kv_indices, double sm_scale, torch::Tensor output, torch::Tensor lse) {
  tp_decode_run(q, k_cache, v_cache, kv_indptr, kv_indices, c10::nullopt, sm_scale, output, lse);
}

void run_paged(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
               torch::Tensor kv_indptr, torch::Tensor kv_indices, torch::Tensor kv_last_page_len,
               double sm_scale, torch::Tensor output, torch::Tensor lse) {
  tp_decode_run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale, output,
                lse);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // One name, two arities: pybind11 picks the overload by argument count.
  m.def("run", &run_paged, "GQA paged decode, page_size > 1 (DPS)");
  m.def("run", &run_ps1, "GQA paged decode, page_size 1 (DPS)");
}
#endif
