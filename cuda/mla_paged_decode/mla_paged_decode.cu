// tracepipe: MLA (DeepSeek-V3 multi-head latent attention) decode over a paged compressed KV cache:
// ckv 512 + kpe 64 dims, bf16, 16 (or 8) query heads sharing one latent KV. Serves both families:
//   page_size 1 : run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, sm_scale,
//                     output, lse)
//   page_size N : run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices,
//                     kv_last_page_len, sm_scale, output, lse)
// lse is the base-2 log-sum-exp of the scaled logits; an empty sequence gives output 0 and lse -inf.
//
// Scheduling (no host sync, no planning kernel; every block finds its work with a block-wide scan
// over the sequence lengths):
//   BALANCED 0 (default): each sequence is cut into chunks of `chunk` tokens (a multiple of the
//     tile, chosen on the host from kv_indices.numel() for about ITEMS_PER_SM chunks per SM); one
//     block per (sequence, chunk).
//   BALANCED 1: the concatenated KV of the whole batch is cut into num_sms * BAL_CTAS equal pieces;
//     a block walks the (possibly several) sequence segments of its piece.
// One block = 4 warps: tiles of KV_TILE tokens ([ckv | kpe] rows, 576 bf16, padded to 584) are
// streamed into shared memory with cp.async (STAGES-deep ring); S[16 x T] = Q[16 x 576] K^T with
// mma.sync m16n8k16 (each warp a quarter of the tokens), an online softmax across the 4 warps
// through shared memory, then O[16 x 512] += P[16 x T] V[T x 512] (each warp 128 output dims,
// V = the ckv part of the same tile, read with ldmatrix.trans). A sequence in one piece writes
// output and lse; otherwise the block writes an fp32 partial (o, lse) and a merge kernel
// combines them. 8 query heads run as 16 with zero rows.
#include "tp_params.h"

// PIPE: 0 = 64-token tiles x 2 stages, 1 = 32 x 4, 2 = 32 x 5, 3 = 32 x 2 (KV_TILE / STAGES
// override). PIPE 3 needs 95 KB of shared memory, so two blocks share an SM (8 warps issuing
// mma.sync and cp.async instead of 4); the others hold one block per SM.
#ifndef PIPE
#define PIPE 0
#endif
#ifndef KV_TILE
#if PIPE == 0
#define KV_TILE 64
#else
#define KV_TILE 32
#endif
#endif
#ifndef STAGES
#if PIPE == 0
#define STAGES 2
#elif PIPE == 1
#define STAGES 4
#elif PIPE == 2
#define STAGES 5
#else
#define STAGES 2
#endif
#endif
// BALANCED 1: the concatenated KV of all sequences is cut into equal pieces, one per block
// (num_sms * BAL_CTAS blocks, a piece may span several sequences); 0: per-sequence chunks.
#ifndef BALANCED
#define BALANCED 0
#endif
#ifndef BAL_CTAS
#define BAL_CTAS 1
#endif
#ifndef ITEMS_PER_SM
#define ITEMS_PER_SM 2
#endif
#ifndef MIN_CHUNK
#define MIN_CHUNK 256
#endif

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <algorithm>

namespace tp_mla {

constexpr int kCkv = 512;
constexpr int kKpe = 64;
constexpr int kD = kCkv + kKpe;   // 576
constexpr int kStride = kD + 8;   // 584 elements = 1168 B = 73 x 16 B: ldmatrix conflict-free
constexpr int kT = KV_TILE;
constexpr int kStages = STAGES;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kTW = kT / kWarps;   // tokens per warp (QK and loads): 8 or 16
constexpr int kPStride = kT + 8;   // P row stride (elements); 16 B multiple, odd in 16 B units
constexpr int kNT = kCkv / kWarps / 8;  // output n-tiles (of 8 dims) per warp: 16
static_assert(kT == 32 || kT == 64, "KV_TILE must be 32 or 64");
static_assert(kStages >= 2, "STAGES must be >= 2");

constexpr int kSmemKV = kStages * kT * kStride * 2;
constexpr int kSmemQ = 16 * kStride * 2;
constexpr int kSmemP = 16 * kPStride * 2;
constexpr int kSmemRed = 2 * kWarps * 16 * 4;
constexpr int kSmemBytes = kSmemKV + kSmemQ + kSmemP + kSmemRed;
[[maybe_unused]] constexpr int kMaxB = 1024;  // sequences per launch in BALANCED mode (the host splits larger batches)
// Blocks resident per SM: the H100 has 228 KB of shared memory per SM and reserves 1 KB per block;
// BALANCED adds the static sequence-start table.
constexpr int kStaticSmem = BALANCED ? (kMaxB + 1) * 4 : 0;
constexpr int kBlocksPerSm = 2 * (kSmemBytes + kStaticSmem + 1024) <= 228 * 1024 ? 2 : 1;

struct Args {
  const __nv_bfloat16* q_nope;  // [B, H, 512]
  const __nv_bfloat16* q_pe;    // [B, H, 64]
  const __nv_bfloat16* ckv;     // [P, ps, 512]
  const __nv_bfloat16* kpe;     // [P, ps, 64]
  const int32_t* indptr;        // [B+1]
  const int32_t* indices;       // [nnz]
  const int32_t* last_len;      // [B] or null (page_size 1 family)
  __nv_bfloat16* out;           // [B, H, 512]
  float* lse;                   // [B, H]
  float* o_part;                // [cap, H, 512]
  float* lse_part;              // [cap, H]
  int* seq_info;                // [B, 2]: first item, number of items
  int batch, H, page_size, chunk;  // chunk: per-sequence chunk (BALANCED 0)
  int grid;                         // number of blocks (BALANCED 1)
  float scale_log2;             // sm_scale * log2(e)
};

__device__ __forceinline__ void seq_len(const Args& a, int i, int& p0, int& len) {
  p0 = a.indptr[i];
  const int np = a.indptr[i + 1] - p0;
  if (np <= 0) {
    len = 0;
    return;
  }
  int last = a.page_size;
  if (a.last_len) {
    last = a.last_len[i];
    last = last < 0 ? 0 : (last > a.page_size ? a.page_size : last);
  }
  len = (np - 1) * a.page_size + last;
  if (len < 0) len = 0;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                        const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x2(uint32_t& r0, uint32_t& r1, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                          const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void mma16816(float* c, uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Page of the token this lane stages (token tok of the sequence), 0 when past the chunk.
__device__ __forceinline__ int load_page(const Args& a, int p0, int tok, int t1) {
  return tok < t1 ? __ldg(a.indices + p0 + tok / a.page_size) : 0;
}

// Stage one tile (tokens tile0 .. tile0+kT-1 of the sequence) into dst. Warp w stages its kTW
// tokens; lane l holds the page of token w*kTW + (l % kTW) in `page`.
__device__ __forceinline__ void issue_tile(const Args& a, __nv_bfloat16* dst, int tile0, int t1,
                                           int page, int warp, int lane) {
  const int tok_l = tile0 + warp * kTW + (lane % kTW);
  const long long row_l = (long long)page * a.page_size + (tok_l % a.page_size);
#pragma unroll
  for (int j = 0; j < kTW; ++j) {
    const long long row = __shfl_sync(0xffffffffu, row_l, j);
    const bool v = tile0 + warp * kTW + j < t1;
    __nv_bfloat16* d = dst + (warp * kTW + j) * kStride;
    const __nv_bfloat16* s = a.ckv + row * kCkv;
    cp_async16(d + lane * 8, s + lane * 8, v);
    cp_async16(d + 256 + lane * 8, s + 256 + lane * 8, v);
  }
#pragma unroll
  for (int q = 0; q < kTW / 4; ++q) {
    const int j = q * 4 + (lane >> 3);
    const long long row = __shfl_sync(0xffffffffu, row_l, j);
    const bool v = tile0 + warp * kTW + j < t1;
    cp_async16(dst + (warp * kTW + j) * kStride + kCkv + (lane & 7) * 8,
               a.kpe + row * kKpe + (lane & 7) * 8, v);
  }
}

// One (sequence b, tokens [t0, t1)) segment: the pipelined tile loop and the epilogue. nsplit == 1
// writes output and lse; otherwise the fp32 partial goes to slot `slot`.
__device__ __forceinline__ void process_segment(const Args& a, unsigned char* smem, int b, int p0,
                                                int t0, int t1, int nsplit, int slot) {
  __nv_bfloat16* s_kv = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem + kSmemKV);
  __nv_bfloat16* s_p = reinterpret_cast<__nv_bfloat16*>(smem + kSmemKV + kSmemQ);
  float* s_rmax = reinterpret_cast<float*>(smem + kSmemKV + kSmemQ + kSmemP);
  float* s_rsum = s_rmax + kWarps * 16;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int item = slot;
  const int ntiles = t1 > t0 ? (t1 - t0 + kT - 1) / kT : 0;
  const int H = a.H;

  // ---- Q (rows >= H zero) and the first tiles
  for (int c = tid; c < 16 * (kD / 8); c += kThreads) {
    const int r = c / (kD / 8), k = c - r * (kD / 8);
    const bool v = r < H;
    const int rr = v ? r : 0;
    const __nv_bfloat16* src = k < kCkv / 8
                                   ? a.q_nope + ((long long)b * H + rr) * kCkv + k * 8
                                   : a.q_pe + ((long long)b * H + rr) * kKpe + (k - kCkv / 8) * 8;
    cp_async16(s_q + r * kStride + k * 8, src, v);
  }
  int pf = load_page(a, p0, t0 + warp * kTW + (lane % kTW), t1);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ntiles) {
      issue_tile(a, s_kv + s * kT * kStride, t0 + s * kT, t1, pf, warp, lane);
      pf = load_page(a, p0, t0 + (s + 1) * kT + warp * kTW + (lane % kTW), t1);
    }
    cp_async_commit();
  }

  const int g = lane >> 2, c4 = lane & 3;
  float acc[kNT][4];
#pragma unroll
  for (int i = 0; i < kNT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    {
      const int nt = it + kStages - 1;
      if (nt < ntiles) {
        issue_tile(a, s_kv + (nt % kStages) * kT * kStride, t0 + nt * kT, t1, pf, warp, lane);
        pf = load_page(a, p0, t0 + (nt + 1) * kT + warp * kTW + (lane % kTW), t1);
      }
      cp_async_commit();
    }
    const __nv_bfloat16* kb = s_kv + (it % kStages) * kT * kStride;
    const int nvalid = t1 - (t0 + it * kT);  // tokens of this tile that exist (>= 1)

    // ---- S = Q K^T for this warp's kTW tokens. The 36 k-steps alternate between two
    // accumulators per n-tile, so consecutive mma.sync are independent (a single chain of 36
    // dependent steps bounds a tile's latency); the two are summed afterwards.
    constexpr int kQN = kTW / 8;
    float sacc[kQN][4], sacc2[kQN][4];
#pragma unroll
    for (int i = 0; i < kQN; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) sacc[i][e] = sacc2[i][e] = 0.f;
    const __nv_bfloat16* qa = s_q + (lane & 15) * kStride + (lane >> 4) * 8;
    static_assert((kD / 16) % 4 == 0, "the k loop is unrolled by 4 and alternates accumulators");
#pragma unroll 4
    for (int kk = 0; kk < kD / 16; ++kk) {
      float(&acc_k)[kQN][4] = (kk & 1) ? sacc2 : sacc;
      uint32_t a0, a1, a2, a3;
      ldsm_x4(a0, a1, a2, a3, qa + kk * 16);
      if constexpr (kQN == 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3,
                kb + (warp * kTW + (lane & 7) + ((lane >> 4) << 3)) * kStride + kk * 16 +
                    ((lane >> 3) & 1) * 8);
        mma16816(acc_k[0], a0, a1, a2, a3, b0, b1);
        mma16816(acc_k[1], a0, a1, a2, a3, b2, b3);
      } else {
        uint32_t b0, b1;
        ldsm_x2(b0, b1,
                kb + (warp * kTW + (lane & 7)) * kStride + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816(acc_k[0], a0, a1, a2, a3, b0, b1);
      }
    }
#pragma unroll
    for (int i = 0; i < kQN; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) sacc[i][e] += sacc2[i][e];
    // scale to log2 domain, mask, per-warp row max (rows g and g+8)
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int i = 0; i < kQN; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int tok = warp * kTW + i * 8 + 2 * c4 + (e & 1);
        const float s = tok < nvalid ? sacc[i][e] * a.scale_log2 : -INFINITY;
        sacc[i][e] = s;
        if (e < 2) mx0 = fmaxf(mx0, s);
        else mx1 = fmaxf(mx1, s);
      }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    if (c4 == 0) {
      s_rmax[warp * 16 + g] = mx0;
      s_rmax[warp * 16 + g + 8] = mx1;
    }
    __syncthreads();
    float tm0 = -INFINITY, tm1 = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      tm0 = fmaxf(tm0, s_rmax[w * 16 + g]);
      tm1 = fmaxf(tm1, s_rmax[w * 16 + g + 8]);
    }
    const float mn0 = fmaxf(m0, tm0), mn1 = fmaxf(m1, tm1);  // finite: nvalid >= 1
    float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
    for (int i = 0; i < kQN; ++i) {
      const float p0v = exp2f(sacc[i][0] - mn0), p1v = exp2f(sacc[i][1] - mn0);
      const float p2v = exp2f(sacc[i][2] - mn1), p3v = exp2f(sacc[i][3] - mn1);
      ps0 += p0v + p1v;
      ps1 += p2v + p3v;
      const int col = warp * kTW + i * 8 + 2 * c4;
      *reinterpret_cast<uint32_t*>(s_p + g * kPStride + col) = pack_bf16(p0v, p1v);
      *reinterpret_cast<uint32_t*>(s_p + (g + 8) * kPStride + col) = pack_bf16(p2v, p3v);
    }
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 1);
    ps0 += __shfl_xor_sync(0xffffffffu, ps0, 2);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 1);
    ps1 += __shfl_xor_sync(0xffffffffu, ps1, 2);
    if (c4 == 0) {
      s_rsum[warp * 16 + g] = ps0;
      s_rsum[warp * 16 + g + 8] = ps1;
    }
    __syncthreads();
    const float al0 = exp2f(m0 - mn0), al1 = exp2f(m1 - mn1);  // m = -inf first: 0
    float ts0 = 0.f, ts1 = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      ts0 += s_rsum[w * 16 + g];
      ts1 += s_rsum[w * 16 + g + 8];
    }
    l0 = l0 * al0 + ts0;
    l1 = l1 * al1 + ts1;
    m0 = mn0;
    m1 = mn1;
#pragma unroll
    for (int i = 0; i < kNT; ++i) {
      acc[i][0] *= al0;
      acc[i][1] *= al0;
      acc[i][2] *= al1;
      acc[i][3] *= al1;
    }
    // ---- O += P V for this warp's 128 output dims
#pragma unroll
    for (int ks = 0; ks < kT / 16; ++ks) {
      uint32_t a0, a1, a2, a3;
      ldsm_x4(a0, a1, a2, a3, s_p + (lane & 15) * kPStride + ks * 16 + (lane >> 4) * 8);
      const __nv_bfloat16* vb =
          kb + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + warp * (kNT * 8) +
          (lane >> 4) * 8;
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, vb + np * 16);
        mma16816(acc[2 * np], a0, a1, a2, a3, b0, b1);
        mma16816(acc[2 * np + 1], a0, a1, a2, a3, b2, b3);
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue: rows g (regs 0,1) and g+8 (regs 2,3)
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
  const float ls0 = l0 > 0.f ? m0 + log2f(l0) : -INFINITY;
  const float ls1 = l1 > 0.f ? m1 + log2f(l1) : -INFINITY;
  const int r0 = g, r1 = g + 8;
  const int colb = warp * (kNT * 8) + 2 * c4;
  if (nsplit == 1) {
    __nv_bfloat16* o0 = a.out + ((long long)b * H + r0) * kCkv + colb;
    __nv_bfloat16* o1 = a.out + ((long long)b * H + r1) * kCkv + colb;
#pragma unroll
    for (int i = 0; i < kNT; ++i) {
      if (r0 < H)
        *reinterpret_cast<uint32_t*>(o0 + i * 8) = pack_bf16(acc[i][0] * inv0, acc[i][1] * inv0);
      if (r1 < H)
        *reinterpret_cast<uint32_t*>(o1 + i * 8) = pack_bf16(acc[i][2] * inv1, acc[i][3] * inv1);
    }
    if (warp == 0 && c4 == 0) {
      if (r0 < H) a.lse[(long long)b * H + r0] = ls0;
      if (r1 < H) a.lse[(long long)b * H + r1] = ls1;
    }
  } else {
    float* o0 = a.o_part + ((long long)item * H + r0) * kCkv + colb;
    float* o1 = a.o_part + ((long long)item * H + r1) * kCkv + colb;
#pragma unroll
    for (int i = 0; i < kNT; ++i) {
      if (r0 < H)
        *reinterpret_cast<float2*>(o0 + i * 8) = make_float2(acc[i][0] * inv0, acc[i][1] * inv0);
      if (r1 < H)
        *reinterpret_cast<float2*>(o1 + i * 8) = make_float2(acc[i][2] * inv1, acc[i][3] * inv1);
    }
    if (warp == 0 && c4 == 0) {
      if (r0 < H) a.lse_part[(long long)item * H + r0] = ls0;
      if (r1 < H) a.lse_part[(long long)item * H + r1] = ls1;
    }
  }
}

__global__ void __launch_bounds__(kThreads, kBlocksPerSm) mla_decode_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int s_work[6];
  __shared__ int s_tot[kWarps];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
#if BALANCED
  __shared__ int s_start[kMaxB + 1];
  const int g = blockIdx.x;
  // exclusive prefix of the sequence lengths
  int running = 0;
  for (int base = 0; base < a.batch; base += kThreads) {
    const int i = base + tid;
    int len = 0, p0 = 0;
    if (i < a.batch) seq_len(a, i, p0, len);
    int x = len;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) s_tot[warp] = x;
    __syncthreads();
    int woff = 0, btot = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const int t = s_tot[w];
      if (w < warp) woff += t;
      btot += t;
    }
    if (i < a.batch) s_start[i] = running + woff + x - len;
    running += btot;
    __syncthreads();
  }
  const int total = running;
  if (tid == 0) {
    s_start[a.batch] = total;
    s_work[0] = 0x7fffffff;
    s_work[1] = -1;
  }
  int C = (total + a.grid - 1) / a.grid;
  if (C < MIN_CHUNK) C = MIN_CHUNK;
  C = (C + kT - 1) / kT * kT;
  const int geff = total > 0 ? (total + C - 1) / C : 1;
  if (g >= geff) return;  // uniform
  const int lo = g * C, hi = min(lo + C, total);
  __syncthreads();
  // the sequences of this piece form a contiguous range [b_lo, b_hi]; an empty sequence belongs
  // to the piece holding its start position
  for (int i = tid; i < a.batch; i += kThreads) {
    const int st = s_start[i], en = s_start[i + 1];
    const bool mem = en > st ? (st < hi && en > lo) : (min(st / C, geff - 1) == g);
    if (mem) {
      atomicMin(&s_work[0], i);
      atomicMax(&s_work[1], i);
    }
  }
  __syncthreads();
  const int b_lo = s_work[0], b_hi = s_work[1];
  for (int b = b_lo; b <= b_hi; ++b) {
    const int st = s_start[b], en = s_start[b + 1], len = en - st;
    int t0 = 0, t1 = 0, gfirst, nsplit;
    if (len > 0) {
      t0 = max(lo, st) - st;
      t1 = min(hi, en) - st;
      gfirst = st / C;
      nsplit = (en - 1) / C - gfirst + 1;
    } else {
      gfirst = min(st / C, geff - 1);
      nsplit = 1;
    }
    if (g == gfirst && tid == 0 && a.seq_info) {
      a.seq_info[2 * b] = gfirst + b;
      a.seq_info[2 * b + 1] = nsplit;
    }
    __syncthreads();  // the previous segment's readers of shared memory are done
    process_segment(a, smem, b, a.indptr[b], t0, t1, nsplit, g + b);
  }
#else
  const int item = blockIdx.x;

  // ---- find this block's (sequence, chunk): block-wide scan of the per-sequence chunk counts
  if (tid == 0) s_work[0] = -1;
  int running = 0;
  for (int base = 0; base < a.batch; base += kThreads) {
    const int i = base + tid;
    int n = 0, len = 0, p0 = 0;
    if (i < a.batch) {
      seq_len(a, i, p0, len);
      n = len > 0 ? (len + a.chunk - 1) / a.chunk : 1;
    }
    int x = n;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) s_tot[warp] = x;
    __syncthreads();
    int woff = 0, btot = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const int t = s_tot[w];
      if (w < warp) woff += t;
      btot += t;
    }
    const int incl = running + woff + x;
    const int excl = incl - n;
    if (n > 0 && item >= excl && item < incl) {
      s_work[0] = i;
      s_work[1] = item - excl;
      s_work[2] = n;
      s_work[3] = p0;
      s_work[4] = len;
      s_work[5] = excl;
    }
    running += btot;
    __syncthreads();
    if (s_work[0] >= 0) break;
  }
  if (s_work[0] < 0) return;  // spare block (capacity is an upper bound)
  const int b = s_work[0], split = s_work[1], nsplit = s_work[2], p0 = s_work[3],
            len = s_work[4];
  if (split == 0 && tid == 0 && a.seq_info) {
    a.seq_info[2 * b] = s_work[5];
    a.seq_info[2 * b + 1] = nsplit;
  }
  const int t0 = split * a.chunk;
  const int t1 = min(len, t0 + a.chunk);
  process_segment(a, smem, b, p0, t0, t1, nsplit, item);
#endif
}

// grid (H, B), 128 threads x 4 dims: combine the partials of sequences split into several chunks.
__global__ void __launch_bounds__(128) mla_merge_kernel(Args a) {
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x * 4;
  const int start = a.seq_info[2 * b], ns = a.seq_info[2 * b + 1];
  if (ns <= 1) return;
  const int H = a.H;
  float M = -INFINITY;
  for (int s = 0; s < ns; ++s) M = fmaxf(M, a.lse_part[(long long)(start + s) * H + h]);
  float L = 0.f;
  float4 O = make_float4(0.f, 0.f, 0.f, 0.f);
  if (M != -INFINITY) {
    for (int s = 0; s < ns; ++s) {
      const long long row = (long long)(start + s) * H + h;
      const float ls = a.lse_part[row];
      const float w = ls == -INFINITY ? 0.f : exp2f(ls - M);
      const float4 o = *reinterpret_cast<const float4*>(a.o_part + row * kCkv + d);
      L += w;
      O.x += w * o.x;
      O.y += w * o.y;
      O.z += w * o.z;
      O.w += w * o.w;
    }
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;
  uint2 pk;
  pk.x = pack_bf16(O.x * inv, O.y * inv);
  pk.y = pack_bf16(O.z * inv, O.w * inv);
  *reinterpret_cast<uint2*>(a.out + ((long long)b * H + h) * kCkv + d) = pk;
  if (threadIdx.x == 0) a.lse[(long long)b * H + h] = L > 0.f ? M + log2f(L) : -INFINITY;
}

// Host-side plan, from kv_indices.numel() only (no host sync). BALANCED: grid = num_sms *
// BAL_CTAS blocks, partial slots grid + batch (slot = block + sequence is unique). Otherwise: chunk
// length (tokens, multiple of the tile) and a capacity >= sum over sequences of
// max(1, ceil(len / chunk)). A sequence is split only if the total length exceeds MIN_CHUNK.
inline void plan(long long nnz, int page_size, int batch, int num_sms, int& chunk, int& grid,
                 int& cap, bool& need_merge) {
  const long long total = nnz * (long long)page_size;  // >= sum of lengths
#if BALANCED
  chunk = MIN_CHUNK;
  grid = num_sms * BAL_CTAS * kBlocksPerSm;
  cap = grid + batch;
  need_merge = total > MIN_CHUNK;
#else
  const long long target = (long long)num_sms * ITEMS_PER_SM * kBlocksPerSm;
  long long c = (total + target - 1) / target;
  if (c < MIN_CHUNK) c = MIN_CHUNK;
  c = (c + kT - 1) / kT * kT;
  if (c > (1 << 30)) c = 1 << 30;
  chunk = (int)c;
  grid = (int)((total + c - 1) / c) + batch;
  cap = grid;
  need_merge = total > c;
#endif
}

inline cudaError_t launch(const Args& a, bool need_merge, cudaStream_t st) {
  static bool attr_set = false;
  if (!attr_set) {
    cudaError_t e = cudaFuncSetAttribute(mla_decode_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) return e;
    attr_set = true;
  }
  mla_decode_kernel<<<a.grid, kThreads, kSmemBytes, st>>>(a);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || !need_merge) return e;
  mla_merge_kernel<<<dim3(a.H, a.batch), 128, 0, st>>>(a);
  return cudaGetLastError();
}

}  // namespace tp_mla

#ifndef TP_KERNEL_ONLY
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

static void tp_mla_run(const torch::Tensor& q_nope, const torch::Tensor& q_pe,
                       const torch::Tensor& ckv, const torch::Tensor& kpe,
                       const torch::Tensor& indptr, const torch::Tensor& indices,
                       const c10::optional<torch::Tensor>& last_len, double sm_scale,
                       torch::Tensor& out, torch::Tensor& lse) {
  TORCH_CHECK(q_nope.is_cuda() && q_pe.is_cuda() && ckv.is_cuda() && kpe.is_cuda() &&
                  indptr.is_cuda() && indices.is_cuda() && out.is_cuda() && lse.is_cuda(),
              "tensors must be on CUDA");
  TORCH_CHECK(q_nope.scalar_type() == torch::kBFloat16 && q_pe.scalar_type() == torch::kBFloat16 &&
                  ckv.scalar_type() == torch::kBFloat16 && kpe.scalar_type() == torch::kBFloat16 &&
                  out.scalar_type() == torch::kBFloat16 && lse.scalar_type() == torch::kFloat32,
              "dtype mismatch");
  TORCH_CHECK(indptr.scalar_type() == torch::kInt32 && indices.scalar_type() == torch::kInt32,
              "int32 index tensors expected");
  TORCH_CHECK(q_nope.dim() == 3 && q_pe.dim() == 3 && ckv.dim() == 3 && kpe.dim() == 3 &&
                  q_nope.size(2) == 512 && q_pe.size(2) == 64 && ckv.size(2) == 512 &&
                  kpe.size(2) == 64 && ckv.size(0) == kpe.size(0) && ckv.size(1) == kpe.size(1),
              "shape mismatch");
  TORCH_CHECK(q_nope.is_contiguous() && q_pe.is_contiguous() && ckv.is_contiguous() &&
                  kpe.is_contiguous() && indptr.is_contiguous() && indices.is_contiguous() &&
                  out.is_contiguous() && lse.is_contiguous(),
              "contiguous tensors expected");
  const int B = (int)q_nope.size(0), H = (int)q_nope.size(1);
  TORCH_CHECK(H >= 1 && H <= 16 && q_pe.size(1) == H, "1..16 query heads supported");
  TORCH_CHECK(indptr.numel() == B + 1, "len(kv_indptr) must be batch_size + 1");
  if (B == 0) return;
  const c10::cuda::CUDAGuard guard(q_nope.device());
  tp_mla::Args a{};
  a.q_nope = reinterpret_cast<const __nv_bfloat16*>(q_nope.data_ptr());
  a.q_pe = reinterpret_cast<const __nv_bfloat16*>(q_pe.data_ptr());
  a.ckv = reinterpret_cast<const __nv_bfloat16*>(ckv.data_ptr());
  a.kpe = reinterpret_cast<const __nv_bfloat16*>(kpe.data_ptr());
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
  a.H = H;
  a.page_size = (int)ckv.size(1);
  a.scale_log2 = (float)(sm_scale * 1.4426950408889634);
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  // Batches larger than kMaxB run as independent groups of kMaxB sequences (BALANCED keeps the
  // sequence starts in shared memory).
  const int group = BALANCED ? tp_mla::kMaxB : B;
  int cap = 0;
  bool need_merge = false;
  tp_mla::plan(indices.numel(), a.page_size, std::min(B, group), sms, a.chunk, a.grid, cap,
               need_merge);
  torch::Tensor o_part, lse_part, seq_info;
  if (need_merge) {
    auto opt = q_nope.options().dtype(torch::kFloat32);
    o_part = torch::empty({(int64_t)cap * H * 512}, opt);
    lse_part = torch::empty({(int64_t)cap * H}, opt);
    seq_info = torch::empty({(int64_t)B * 2}, q_nope.options().dtype(torch::kInt32));
  }
  const cudaStream_t st = at::cuda::getCurrentCUDAStream();
  for (int off = 0; off < B; off += group) {
    tp_mla::Args g = a;
    g.batch = std::min(group, B - off);
    g.q_nope = a.q_nope + (int64_t)off * H * 512;
    g.q_pe = a.q_pe + (int64_t)off * H * 64;
    g.indptr = a.indptr + off;
    if (a.last_len) g.last_len = a.last_len + off;
    g.out = a.out + (int64_t)off * H * 512;
    g.lse = a.lse + (int64_t)off * H;
    if (need_merge) {
      g.o_part = o_part.data_ptr<float>();
      g.lse_part = lse_part.data_ptr<float>();
      g.seq_info = seq_info.data_ptr<int>() + 2 * off;
    }
    cudaError_t e = tp_mla::launch(g, need_merge, st);
    TORCH_CHECK(e == cudaSuccess, "mla decode launch failed: ", cudaGetErrorString(e));
  }
}

void run_ps1(torch::Tensor q_nope, torch::Tensor q_pe, torch::Tensor ckv_cache,
             torch::Tensor kpe_cache, torch::Tensor kv_indptr, torch::Tensor kv_indices,
             double sm_scale, torch::Tensor output, torch::Tensor lse) {
  tp_mla_run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, c10::nullopt, sm_scale,
             output, lse);
}

void run_paged(torch::Tensor q_nope, torch::Tensor q_pe, torch::Tensor ckv_cache,
               torch::Tensor kpe_cache, torch::Tensor kv_indptr, torch::Tensor kv_indices,
               torch::Tensor kv_last_page_len, double sm_scale, torch::Tensor output,
               torch::Tensor lse) {
  tp_mla_run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, kv_last_page_len,
             sm_scale, output, lse);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // One name, two arities: pybind11 picks the overload by argument count.
  m.def("run", &run_paged, "MLA paged decode, page_size > 1 (DPS)");
  m.def("run", &run_ps1, "MLA paged decode, page_size 1 (DPS)");
}
#endif
