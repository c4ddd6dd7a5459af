// tracepipe: batched causal GQA prefill over a paged KV cache (head_dim 128, bf16).
//   page_size 1 : run(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, sm_scale, output, lse)
//   page_size N : run(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last_page_len,
//                     sm_scale, output, lse)
//
// FlashAttention-2 style: a block owns kBM = 16*WARPS packed query rows (token i, head g of the
// kv head's group, row = i*G + g) of one sequence and one kv head, so the G query heads share each
// K/V tile; it streams K/V tiles of BLOCK_N tokens through a cp.async double buffer (paged: one
// page-table lookup per token) and runs QK^T and PV on tensor cores (mma.sync m16n8k16 bf16,
// ldmatrix from swizzled smem) with an online base-2 softmax in registers. Causal: query i of a
// sequence with qlen queries and kvlen keys sees keys j <= i + (kvlen - qlen); tiles past the
// block's last visible key are skipped, and only tiles crossing the diagonal are masked.
// Sequences and query tiles are found on the device (warp prefix scan over qo_indptr), so the
// launch needs no host sync. Rows that see no key (empty sequences, kvlen < qlen) get output 0
// and lse -inf, as FlashInfer writes them (the reference's lse there is -inf, its output NaN).
// Group sizes G = Hq/Hkv of 1..8 and 16. lse is the base-2 log-sum-exp of sm_scale * q.k. Parameters (tp_params.h): WARPS, BLOCK_N.
#include "tp_params.h"

#ifndef WARPS
#define WARPS 4
#endif
#ifndef BLOCK_N
#define BLOCK_N 64
#endif

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

namespace tp_prefill {

constexpr int kD = 128;
constexpr int kBM = 16 * WARPS;  // packed (token, head-of-group) rows per block
constexpr int kBN = BLOCK_N;     // kv tokens per tile
constexpr int kThreads = 32 * WARPS;
constexpr int kSmemBytes = (kBM + 4 * kBN) * kD * 2;  // Q + 2 stages x (K, V)
static_assert(kBN % 16 == 0 && kBN >= 16 && kBN <= 128, "BLOCK_N must be 16..128, multiple of 16");
static_assert((kBN * 16) % kThreads == 0 && (kBM * 16) % kThreads == 0, "tile/threads mismatch");

struct Args {
  const __nv_bfloat16* q;   // [total_q, Hq, 128]
  const __nv_bfloat16* k;   // ragged [total_kv, Hkv, 128]; paged [P, page, Hkv, 128]
  const __nv_bfloat16* v;
  const int32_t* qo_indptr;  // [B+1]
  const int32_t* kv_indptr;  // [B+1] (tokens for ragged, pages for paged)
  const int32_t* kv_indices; // paged only
  const int32_t* last_len;   // paged with page_size > 1 only (else null: full last page)
  __nv_bfloat16* out;        // [total_q, Hq, 128]
  float* lse;                // [total_q, Hq]
  int batch, hkv, page_size;  // page_size 0: ragged
  int num_pages;               // paged: pages in the cache (bounds for kv_indices)
  float scale_log2;           // sm_scale * log2(e)
};

// ---- PTX helpers -------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing is read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                        uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                          uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
// Swizzled element offset of 16-byte chunk `ch` (0..15) of row `r` (128 bf16 per row): the 8 rows
// an ldmatrix phase reads land in 8 distinct bank groups.
__device__ __forceinline__ int swz(int r, int ch) { return r * kD + ((ch ^ (r & 7)) << 3); }

// ---- tile scheduling ---------------------------------------------------------------------------
// Block `idx` (over all sequences) -> (sequence b, query tile t). Sequence b has
// ceil(qlen_b * G / kBM) tiles; tiles are numbered from the last (heaviest under the causal mask)
// so that long tiles start first. Warp-cooperative prefix scan, done by every warp.
__device__ __forceinline__ bool find_tile(const Args& a, int G, int idx, int& b, int& t) {
  const int lane = threadIdx.x & 31;
  int base = 0;
  for (int b0 = 0; b0 < a.batch; b0 += 32) {
    const int bb = b0 + lane;
    int nt = 0;
    if (bb < a.batch) {
      const int ql = a.qo_indptr[bb + 1] - a.qo_indptr[bb];
      nt = ql > 0 ? (ql * G + kBM - 1) / kBM : 0;
    }
    int inc = nt;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += y;
    }
    const int total = __shfl_sync(0xffffffffu, inc, 31);
    if (idx < base + total) {
      const unsigned ball = __ballot_sync(0xffffffffu, base + inc > idx);
      const int L = __ffs(ball) - 1;
      const int exc = base + __shfl_sync(0xffffffffu, inc - nt, L);
      const int ntL = __shfl_sync(0xffffffffu, nt, L);
      b = b0 + L;
      t = ntL - 1 - (idx - exc);
      return true;
    }
    base += total;
  }
  return false;
}

// ---- main kernel -------------------------------------------------------------------------------
// grid (Hkv, tiles upper bound). A block owns kBM packed rows (query token i, group head g) ->
// row i*G + g of one kv head, so the G query heads share every K/V tile. Each warp owns 16 rows.
template <int G, bool PAGED>
__global__ void __launch_bounds__(kThreads) prefill_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* sK = sQ + kBM * kD;       // [2][kBN][128]
  __nv_bfloat16* sV = sK + 2 * kBN * kD;   // [2][kBN][128]

  const int kvh = blockIdx.x;
  int b, tile;
  if (!find_tile(a, G, blockIdx.y, b, tile)) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hq = a.hkv * G;
  const int q0 = a.qo_indptr[b];
  const int qlen = a.qo_indptr[b + 1] - q0;
  int kv0 = 0, kvlen;
  if (PAGED) {
    kv0 = a.kv_indptr[b];  // first page slot in kv_indices
    const int np = a.kv_indptr[b + 1] - kv0;
    const int last = a.last_len ? a.last_len[b] : a.page_size;
    kvlen = np > 0 ? (np - 1) * a.page_size + last : 0;
  } else {
    kv0 = a.kv_indptr[b];
    kvlen = a.kv_indptr[b + 1] - kv0;
  }
  if (kvlen < 0) kvlen = 0;
  const int delta = kvlen - qlen;  // query i sees kv j <= i + delta
  const int m0 = tile * kBM;
  const int tok_min = m0 / G;
  const int tok_max = min((m0 + kBM - 1) / G, qlen - 1);
  const int kv_end = max(0, min(kvlen, tok_max + delta + 1));   // kv tokens any row needs
  const int kv_full = max(0, min(kvlen, tok_min + delta + 1));  // kv tokens every row sees
  const int n_tiles = (kv_end + kBN - 1) / kBN;

  // Q tile -> smem (zero rows past the sequence)
#pragma unroll
  for (int i = 0; i < kBM * 16 / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c >> 4, ch = c & 15;
    const int pr = m0 + r;
    const int tok = pr / G, g = pr - tok * G;
    const bool ok = tok < qlen;
    const __nv_bfloat16* src =
        ok ? a.q + ((int64_t)(q0 + tok) * hq + kvh * G + g) * kD + ch * 8 : a.q;
    cp_async16(smem_u32(sQ + swz(r, ch)), src, ok);
  }

  const int64_t tok_stride = (int64_t)a.hkv * kD;
  auto load_kv = [&](int stage, int n0) {
#pragma unroll
    for (int i = 0; i < kBN * 16 / kThreads; ++i) {
      const int c = tid + i * kThreads;
      const int r = c >> 4, ch = c & 15;
      const int t = n0 + r;
      bool ok = t < kv_end;
      int64_t row = 0;
      if (ok) {
        if (PAGED) {
          const int pi = t / a.page_size;
          const int page = a.kv_indices[kv0 + pi];
          ok = page >= 0 && page < a.num_pages;  // a bad page id reads nothing (zero K/V)
          row = (int64_t)page * a.page_size + (t - pi * a.page_size);
        } else {
          row = (int64_t)kv0 + t;
        }
      }
      const int64_t off = row * tok_stride + kvh * kD + ch * 8;
      // (a skipped chunk still names a valid address: q, never an empty cache's null pointer)
      cp_async16(smem_u32(sK + stage * kBN * kD + swz(r, ch)), ok ? a.k + off : a.q, ok);
      cp_async16(smem_u32(sV + stage * kBN * kD + swz(r, ch)), ok ? a.v + off : a.q, ok);
    }
  };

  if (n_tiles > 0) load_kv(0, 0);
  cp_commit();

  float o[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};
  uint32_t qf[8][4];

  // this thread's two rows (C-fragment rows lane/4 and lane/4 + 8 of the warp's 16)
  int row_tok[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) row_tok[h] = (m0 + warp * 16 + (lane >> 2) + h * 8) / G;

  for (int j = 0; j < n_tiles; ++j) {
    const int n0 = j * kBN;
    if (j + 1 < n_tiles) {
      load_kv((j + 1) & 1, n0 + kBN);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < 8; ++ks) {
        const int r = warp * 16 + (lane & 15);
        const int ch = ks * 2 + (lane >> 4);
        ldsm_x4(smem_u32(sQ + swz(r, ch)), qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3]);
      }
    }
    const __nv_bfloat16* k_s = sK + (j & 1) * kBN * kD;
    const __nv_bfloat16* v_s = sV + (j & 1) * kBN * kD;

    // S = Q K^T (16 x kBN per warp)
    float s[kBN / 8][4];
#pragma unroll
    for (int i = 0; i < kBN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        const int r = np * 16 + ((lane >> 4) & 1) * 8 + (lane & 7);
        const int ch = ks * 2 + ((lane >> 3) & 1);
        uint32_t b0, b1, b2, b3;
        ldsm_x4(smem_u32(k_s + swz(r, ch)), b0, b1, b2, b3);
        mma16816(s[2 * np], qf[ks], b0, b1);
        mma16816(s[2 * np + 1], qf[ks], b2, b3);
      }
    }
    const bool need_mask = n0 + kBN > kv_full;
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * a.scale_log2;
        if (need_mask) {
          const int col = n0 + nt * 8 + 2 * (lane & 3) + (e & 1);
          if (col > row_tok[e >> 1] + delta || col >= kvlen) x = -INFINITY;
        }
        s[nt][e] = x;
      }
    }
    // online softmax (base 2)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m_r[h];
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mu = (mx == -INFINITY) ? 0.f : mx;
      const float alpha = exp2f(m_r[h] - mu);  // m_r = -inf -> 0
      m_r[h] = mx;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) {
        const float p0 = exp2f(s[nt][2 * h] - mu), p1 = exp2f(s[nt][2 * h + 1] - mu);
        s[nt][2 * h] = p0;
        s[nt][2 * h + 1] = p1;
        sum += p0 + p1;
      }
      l_r[h] = l_r[h] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < 16; ++dt) {
        o[dt][2 * h] *= alpha;
        o[dt][2 * h + 1] *= alpha;
      }
    }
    // O += P V
#pragma unroll
    for (int ks = 0; ks < kBN / 16; ++ks) {
      uint32_t pa[4];
      pa[0] = pack_bf16(s[2 * ks][0], s[2 * ks][1]);
      pa[1] = pack_bf16(s[2 * ks][2], s[2 * ks][3]);
      pa[2] = pack_bf16(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      pa[3] = pack_bf16(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
      for (int dp = 0; dp < 8; ++dp) {
        const int r = ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        const int ch = dp * 2 + (lane >> 4);
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(smem_u32(v_s + swz(r, ch)), b0, b1, b2, b3);
        mma16816(o[2 * dp], pa, b0, b1);
        mma16816(o[2 * dp + 1], pa, b2, b3);
      }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }
  cp_wait<0>();  // (no kv tile: the Q copies are still in flight)

  // epilogue: normalise, write output rows and lse
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = l_r[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int pr = m0 + warp * 16 + (lane >> 2) + h * 8;
    const int tok = pr / G, g = pr - tok * G;
    if (tok >= qlen) continue;
    const bool has = l > 0.f;
    const float inv = has ? 1.f / l : 0.f;
    const int64_t orow = (int64_t)(q0 + tok) * hq + kvh * G + g;
    __nv_bfloat16* op = a.out + orow * kD + 2 * (lane & 3);
#pragma unroll
    for (int dt = 0; dt < 16; ++dt) {
      *reinterpret_cast<__nv_bfloat162*>(op + dt * 8) =
          __floats2bfloat162_rn(o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
    }
    // A row that sees no kv token has lse -inf in the reference (and weight 0 in any merge).
    if ((lane & 3) == 0) a.lse[orow] = has ? m_r[h] + log2f(l) : -INFINITY;
  }
}

inline int tiles_upper_bound(int64_t total_q, int G, int batch) {
  return (int)((total_q * G + kBM - 1) / kBM + batch);
}

template <bool PAGED>
inline cudaError_t launch_g(const Args& a, int G, int tiles, cudaStream_t st) {
  dim3 grid(a.hkv, tiles);
  auto go = [&](auto kern) -> cudaError_t {
    static bool attr_set = false;  // one per kernel instantiation (single device assumed)
    if (!attr_set) {
      cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           kSmemBytes);
      if (e != cudaSuccess) return e;
      attr_set = true;
    }
    kern<<<grid, kThreads, kSmemBytes, st>>>(a);
    return cudaGetLastError();
  };
  switch (G) {
    case 1: return go(prefill_kernel<1, PAGED>);
    case 2: return go(prefill_kernel<2, PAGED>);
    case 3: return go(prefill_kernel<3, PAGED>);
    case 4: return go(prefill_kernel<4, PAGED>);
    case 5: return go(prefill_kernel<5, PAGED>);
    case 6: return go(prefill_kernel<6, PAGED>);
    case 7: return go(prefill_kernel<7, PAGED>);
    case 8: return go(prefill_kernel<8, PAGED>);
    case 16: return go(prefill_kernel<16, PAGED>);
    default: return cudaErrorInvalidValue;
  }
}

// Non-template entry (also instantiates every kernel when only the device code is compiled).
cudaError_t launch(const Args& a, int G, int tiles, cudaStream_t st) {
  return launch_g<true>(a, G, tiles, st);
}

}  // namespace tp_prefill

#ifndef TP_KERNEL_ONLY
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

static void tp_check_common(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& qo_indptr, const torch::Tensor& kv_indptr,
                            const torch::Tensor& out, const torch::Tensor& lse, int kv_dim) {
  TORCH_CHECK(q.is_cuda() && k.is_cuda() && v.is_cuda() && qo_indptr.is_cuda() &&
                  kv_indptr.is_cuda() && out.is_cuda() && lse.is_cuda(),
              "tensors must be on CUDA");
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 && k.scalar_type() == torch::kBFloat16 &&
                  v.scalar_type() == torch::kBFloat16 && out.scalar_type() == torch::kBFloat16 &&
                  lse.scalar_type() == torch::kFloat32,
              "dtype mismatch");
  TORCH_CHECK(qo_indptr.scalar_type() == torch::kInt32 && kv_indptr.scalar_type() == torch::kInt32,
              "int32 indptr expected");
  TORCH_CHECK(q.dim() == 3 && q.size(2) == 128 && k.dim() == kv_dim && k.size(kv_dim - 1) == 128 &&
                  v.sizes() == k.sizes() && out.sizes() == q.sizes() && lse.dim() == 2 &&
                  lse.size(0) == q.size(0) && lse.size(1) == q.size(1),
              "shape mismatch");
  TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous() &&
                  qo_indptr.is_contiguous() && kv_indptr.is_contiguous() && out.is_contiguous() &&
                  lse.is_contiguous(),
              "contiguous tensors expected");
  TORCH_CHECK(qo_indptr.numel() == kv_indptr.numel() && qo_indptr.numel() >= 1,
              "qo_indptr and kv_indptr must both have batch_size + 1 entries");
}

static void tp_launch(tp_prefill::Args& a, const torch::Tensor& q) {
  const int64_t total_q = q.size(0);
  const int hq = (int)q.size(1);
  TORCH_CHECK(a.hkv > 0 && hq % a.hkv == 0 && ((hq / a.hkv >= 1 && hq / a.hkv <= 8) || hq / a.hkv == 16),
              "group sizes 1..8 and 16 supported");
  const int G = hq / a.hkv;
  if (total_q == 0 || a.batch == 0) return;
  const int tiles = tp_prefill::tiles_upper_bound(total_q, G, a.batch);
  TORCH_CHECK(tiles <= 65535, "too many query tiles");
  const c10::cuda::CUDAGuard guard(q.device());
  cudaStream_t st = at::cuda::getCurrentCUDAStream();
  cudaError_t e = tp_prefill::launch(a, G, tiles, st);
  TORCH_CHECK(e == cudaSuccess, "gqa prefill launch failed: ", cudaGetErrorString(e));
}

static void tp_paged(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& qo_indptr, const torch::Tensor& kv_indptr,
                     const torch::Tensor& kv_indices, const c10::optional<torch::Tensor>& last_len,
                     double sm_scale, torch::Tensor& out, torch::Tensor& lse) {
  tp_check_common(q, k, v, qo_indptr, kv_indptr, out, lse, 4);
  TORCH_CHECK(kv_indices.is_cuda() && kv_indices.scalar_type() == torch::kInt32 &&
                  kv_indices.is_contiguous(),
              "kv_indices must be contiguous int32 on CUDA");
  tp_prefill::Args a{};
  a.q = reinterpret_cast<const __nv_bfloat16*>(q.data_ptr());
  a.k = reinterpret_cast<const __nv_bfloat16*>(k.data_ptr());
  a.v = reinterpret_cast<const __nv_bfloat16*>(v.data_ptr());
  a.qo_indptr = qo_indptr.data_ptr<int32_t>();
  a.kv_indptr = kv_indptr.data_ptr<int32_t>();
  a.kv_indices = kv_indices.data_ptr<int32_t>();
  a.batch = (int)qo_indptr.numel() - 1;
  if (last_len.has_value()) {
    TORCH_CHECK(last_len->is_cuda() && last_len->scalar_type() == torch::kInt32 &&
                    last_len->numel() == a.batch && last_len->is_contiguous(),
                "kv_last_page_len must be int32[batch_size]");
    a.last_len = last_len->data_ptr<int32_t>();
  }
  a.out = reinterpret_cast<__nv_bfloat16*>(out.data_ptr());
  a.lse = lse.data_ptr<float>();
  a.hkv = (int)k.size(2);
  a.page_size = (int)k.size(1);
  a.num_pages = (int)k.size(0);
  TORCH_CHECK(a.page_size >= 1, "page_size must be >= 1");
  a.scale_log2 = (float)(sm_scale * 1.4426950408889634);
  tp_launch(a, q);
}

void run_ps1(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache, torch::Tensor qo_indptr,
             torch::Tensor kv_indptr, torch::Tensor kv_indices, double sm_scale,
             torch::Tensor output, torch::Tensor lse) {
  tp_paged(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, c10::nullopt, sm_scale, output,
           lse);
}

void run_paged(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
               torch::Tensor qo_indptr, torch::Tensor kv_indptr, torch::Tensor kv_indices,
               torch::Tensor kv_last_page_len, double sm_scale, torch::Tensor output,
               torch::Tensor lse) {
  tp_paged(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last_page_len, sm_scale,
           output, lse);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // One name, two arities: pybind11 picks the overload by argument count.
  m.def("run", &run_paged, "GQA paged causal prefill, page_size > 1 (DPS)");
  m.def("run", &run_ps1, "GQA paged causal prefill, page_size 1 (DPS)");
}
#endif
