// tracepipe: batched GQA decode over a paged KV cache (head_dim 128, bf16), split-KV
// ("flash-decoding"). Serves both definition families:
//   page_size 1 : run(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale, output, lse)
//   page_size N : run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale,
//                     output, lse)
// lse is the base-2 log-sum-exp of the scaled logits; an empty sequence gives output 0 and
// lse -inf, like the definitions' reference.
//
// Grid (splits x kv_heads x batch), 4 warps per block; each warp walks its own token tiles with
// an online softmax for the G = qo_heads / kv_heads query heads of the kv head, the block merges
// its warps and writes either the final output (one split) or a partial (output, lse) pair; a
// second kernel merges the partials. Two split kernels (DEC_IMPL):
//   DEC_IMPL 0: CUDA cores, a half-warp per token (16 lanes x 8 dims), shuffle-reduced dot products.
//   DEC_IMPL 1/2: tensor cores (mma.sync m16n8k16 bf16): per 16-token tile, S = Q K^T with Q padded
//     to 16 rows (G <= 8 real rows) and O += P V with P taken straight from the S accumulators.
//     K and V are loaded from global memory into registers with 16-byte loads, in a permuted
//     order that makes the loaded words the mma fragments (K: head dims permuted, V: token
//     pairs packed with byte_perm); DEC_IMPL 2 loads two tiles (32 tokens) per warp step.
// The split count is chosen on the host from the occupancy of the split kernel so that
// splits x kv_heads x batch fills the SMs in whole waves (cost model: waves x (chunk + overhead)).
#include "tp_params.h"

#ifndef THREADS
#define THREADS 128
#endif
#ifndef UNROLL
#define UNROLL 2
#endif
#ifndef MIN_CHUNK
#define MIN_CHUNK 128
#endif
#ifndef DEC_IMPL
#define DEC_IMPL 1
#endif
#ifndef SPLIT_OVH
#define SPLIT_OVH 32
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
  // every split s < nsplit has s * chunk < len, so no split is empty
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

// Block epilogue shared by the split kernels: each warp w left its unnormalised accumulator
// sm_acc[w][g][:], its running max sm_m[w][g] and its sum sm_l[w][g] (a warp that saw no token
// has m = -inf, l = 0, acc = 0). Merges the warps and writes the output (one split) or the
// partial of this split.
template <int G>
__device__ __forceinline__ void block_finish(const Args& a, int b, int kvh, int split, int nsplit,
                                             const float (*sm_acc)[G][kD],
                                             const float (*sm_m)[G], const float (*sm_l)[G]) {
  const int hq = a.hkv * G;
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

// ------------------------------------------------------------------ DEC_IMPL 0: CUDA cores
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
  // token is past t1 carries score -inf and p = 0 for it.
  for (int tw = t0 + warp * 2; tw < t1; tw += kNHW * UNROLL) {
    const int t = tw + (lane >> 4);
    uint4 ku[UNROLL], vu[UNROLL];
    bool valid[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int tt = t + u * kNHW;
      valid[u] = tt < t1;
      // Invalid tokens must hold finite values: p = 0 multiplies V below, and 0 * (NaN/Inf
      // garbage of an unloaded register) is NaN (the h5_kv1 NaN bug).
      ku[u] = make_uint4(0u, 0u, 0u, 0u);
      vu[u] = make_uint4(0u, 0u, 0u, 0u);
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
  block_finish<G>(a, b, kvh, split, nsplit, sm_acc, sm_m, sm_l);
}

// ------------------------------------------------------------------ DEC_IMPL 1/2: tensor cores
#if DEC_IMPL == 2
constexpr int kNT = 2;  // 16-token tiles per warp step
#ifndef MMA_MINB
#define MMA_MINB 2
#endif
#else
constexpr int kNT = 1;
#ifndef MMA_MINB
#define MMA_MINB 3      // <= 168 registers: 3 blocks (12 warps) per SM
#endif
#endif
constexpr int kTW = 16 * kNT;  // tokens per warp step
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ uint32_t u4w(const uint4& u, int w) {
  return w == 0 ? u.x : (w == 1 ? u.y : (w == 2 ? u.z : u.w));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (low 16 bits) = lo
  return *reinterpret_cast<uint32_t*>(&h);
}

// (d0, d1) += rows 0..7 of A(16x16) B(16x8), A rows 8..15 zero (A regs 1 and 3): lane
// (g = lane/4, c = lane%4) holds a0 = A[g][2c,2c+1], a2 = A[g][2c+8,2c+9], b0 = B[2c,2c+1][g],
// b1 = B[2c+8,2c+9][g], d0/d1 = D[g][2c], D[g][2c+1]. Rows 8..15 of D are discarded.
__device__ __forceinline__ void mma_top(float& d0, float& d1, uint32_t a0, uint32_t a2,
                                        uint32_t b0, uint32_t b1) {
  float x2, x3;  // rows 8..15: discarded
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%10,%11};\n"
      : "+f"(d0), "+f"(d1), "=f"(x2), "=f"(x3)
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1), "f"(0.f), "f"(0.f));
}

// Cache row (page * page_size + slot) of token t of the sequence starting at page p0, or -1
// when t >= t1.
__device__ __forceinline__ int tok_row(const Args& a, int p0, int t, int t1) {
  if (t >= t1) return -1;
  if (a.page_size == 1) return __ldg(a.indices + p0 + t);
  const int pg = t / a.page_size;
  return __ldg(a.indices + p0 + pg) * a.page_size + (t - pg * a.page_size);
}

// Fragment bookkeeping for one 16-token tile (tokens tb + 0..15), lane (g, c):
//  S = Q K^T, two n-tiles of 8 tokens. k (head dim) is permuted, identically for Q and K: k-step
//   j, logical k 2c+e / 2c+8+e (e = 0,1) -> physical dim 32(j/2) + 8c + 4(j%2) + e / + 2 + e, so
//   one 16-byte load of dims 32q + 8c .. +7 gives words (x, y) for step 2q and (z, w) for 2q+1.
//   n-tile nt column n is token 4(n/2) + 2nt + n%2: lane (g, c) loads K of token
//   4(g/2) + 2nt + g%2 (column g) and receives S of tokens 4c + 2nt, 4c + 2nt + 1 (cols 2c, 2c+1).
//  O += P V, one k-step over the 16 tokens: logical k 2c, 2c+1, 2c+8, 2c+9 -> tokens 4c .. 4c+3,
//   so P's A fragment is (pack(S n-tile 0), pack(S n-tile 1)) of the same lane. n-tile nd
//   (16 of them) column n is head dim 8n + nd (nd < 8) or 64 + 8n + nd - 8: lane (g, c) loads V
//   of tokens 4c .. 4c+3 at dims 8g .. 8g+7 and 64 + 8g .. +7 and packs token pairs with
//   byte_perm; it receives O at dims 16c + nd, 16c + 8 + nd (nd < 8; + 64 - 8 for nd >= 8).
template <int G>
__global__ void __launch_bounds__(THREADS, MMA_MINB) decode_mma_kernel(Args a) {
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  int p0, len, nsplit, chunk;
  seq_split(a, b, p0, len, nsplit, chunk);
  if (split >= nsplit) return;
  const int t0 = split * chunk;
  const int t1 = min(len, t0 + chunk);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int hq = a.hkv * G;
  const int64_t tok_stride = (int64_t)a.hkv * kD;  // elements between consecutive cache rows
  const __nv_bfloat16* kb = a.k + kvh * kD;
  const __nv_bfloat16* vb = a.v + kvh * kD;
  const uint4 z4 = make_uint4(0u, 0u, 0u, 0u);

  // Q rows (heads) as A fragments; rows g >= G are zero.
  uint4 qa[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) qa[j] = z4;
  if (g < G) {
    const uint4* qp = reinterpret_cast<const uint4*>(a.q + ((int64_t)b * hq + kvh * G + g) * kD);
#pragma unroll
    for (int j = 0; j < 4; ++j) qa[j] = __ldg(qp + 4 * j + c);
  }

  float m = -INFINITY;  // running max (log2 domain) of row g, equal over the lane quad
  float l = 0.f;        // this lane's part of the running sum of row g
  float o[16][2];
#pragma unroll
  for (int nd = 0; nd < 16; ++nd) o[nd][0] = o[nd][1] = 0.f;

  int tb = t0 + warp * kTW;
  int row = tok_row(a, p0, tb + (lane % kTW), t1);
  // tb is warp-uniform, so every lane runs the same iterations (the shuffles need all 32).
  for (; tb < t1; tb += kNW * kTW) {
    const int row_next = tok_row(a, p0, tb + kNW * kTW + (lane % kTW), t1);  // prefetch
    uint4 kr[kNT][2][4], vr[kNT][4][2];
#pragma unroll
    for (int tl = 0; tl < kNT; ++tl) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const int r = __shfl_sync(kFull, row, 16 * tl + 4 * (g >> 1) + 2 * nt + (g & 1));
        const uint4* p = reinterpret_cast<const uint4*>(kb + (int64_t)(r < 0 ? 0 : r) * tok_stride);
#pragma unroll
        for (int j = 0; j < 4; ++j) kr[tl][nt][j] = (r >= 0) ? __ldg(p + 4 * j + c) : z4;
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = __shfl_sync(kFull, row, 16 * tl + 4 * c + i);
        const uint4* p = reinterpret_cast<const uint4*>(vb + (int64_t)(r < 0 ? 0 : r) * tok_stride);
        // invalid tokens get V = 0: p = 0 there, and 0 * NaN garbage would poison O
        vr[tl][i][0] = (r >= 0) ? __ldg(p + g) : z4;
        vr[tl][i][1] = (r >= 0) ? __ldg(p + 8 + g) : z4;
      }
    }

    // S = Q K^T (two accumulator chains per n-tile: even / odd k-steps)
    float s[kNT][4];
#pragma unroll
    for (int tl = 0; tl < kNT; ++tl) {
      float e0 = 0.f, e1 = 0.f, f0 = 0.f, f1 = 0.f;  // n-tile 0: even / odd steps
      float h0 = 0.f, h1 = 0.f, i0 = 0.f, i1 = 0.f;  // n-tile 1
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        mma_top(e0, e1, qa[j].x, qa[j].y, kr[tl][0][j].x, kr[tl][0][j].y);
        mma_top(f0, f1, qa[j].z, qa[j].w, kr[tl][0][j].z, kr[tl][0][j].w);
        mma_top(h0, h1, qa[j].x, qa[j].y, kr[tl][1][j].x, kr[tl][1][j].y);
        mma_top(i0, i1, qa[j].z, qa[j].w, kr[tl][1][j].z, kr[tl][1][j].w);
      }
      s[tl][0] = e0 + f0;  // token 4c
      s[tl][1] = e1 + f1;  // token 4c + 1
      s[tl][2] = h0 + i0;  // token 4c + 2
      s[tl][3] = h1 + i1;  // token 4c + 3
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s[tl][e] = (tb + 16 * tl + 4 * c + e < t1) ? s[tl][e] * a.scale_log2 : -INFINITY;
    }

    // online softmax of row g over this step's tokens
    float mx = -INFINITY;
#pragma unroll
    for (int tl = 0; tl < kNT; ++tl)
#pragma unroll
      for (int e = 0; e < 4; ++e) mx = fmaxf(mx, s[tl][e]);
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
    const float mn = fmaxf(m, mx);
    const float alpha = (mn == -INFINITY) ? 1.f : exp2f(m - mn);  // m = -inf: 0
    uint32_t pa0[kNT], pa2[kNT];
    float psum = 0.f;
#pragma unroll
    for (int tl = 0; tl < kNT; ++tl) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = (mn == -INFINITY) ? 0.f : exp2f(s[tl][e] - mn);  // s = -inf: 0
        psum += p[e];
      }
      pa0[tl] = pack_bf16(p[0], p[1]);
      pa2[tl] = pack_bf16(p[2], p[3]);
    }
    l = l * alpha + psum;
    m = mn;
#pragma unroll
    for (int nd = 0; nd < 16; ++nd) {
      o[nd][0] *= alpha;
      o[nd][1] *= alpha;
    }

    // O += P V
#pragma unroll
    for (int tl = 0; tl < kNT; ++tl) {
#pragma unroll
      for (int nd = 0; nd < 16; ++nd) {
        const int hi = nd >> 3, e = nd & 7, w = e >> 1;
        const uint32_t sel = (e & 1) ? 0x7632u : 0x5410u;
        const uint32_t b0 = __byte_perm(u4w(vr[tl][0][hi], w), u4w(vr[tl][1][hi], w), sel);
        const uint32_t b1 = __byte_perm(u4w(vr[tl][2][hi], w), u4w(vr[tl][3][hi], w), sel);
        mma_top(o[nd][0], o[nd][1], pa0[tl], pa2[tl], b0, b1);
      }
    }
    row = row_next;
  }

  l += __shfl_xor_sync(kFull, l, 1);
  l += __shfl_xor_sync(kFull, l, 2);

  __shared__ float sm_acc[kNW][G][kD];
  __shared__ float sm_m[kNW][G], sm_l[kNW][G];
  if (g < G) {
#pragma unroll
    for (int nd = 0; nd < 16; ++nd) {
      const int d = (nd < 8) ? (16 * c + nd) : (64 + 16 * c + nd - 8);
      sm_acc[warp][g][d] = o[nd][0];
      sm_acc[warp][g][d + 8] = o[nd][1];
    }
    if (c == 0) {
      sm_m[warp][g] = m;
      sm_l[warp][g] = l;
    }
  }
  __syncthreads();
  block_finish<G>(a, b, kvh, split, nsplit, sm_acc, sm_m, sm_l);
}

// ------------------------------------------------------------------ merge of the splits
// grid (Hq, B), 128 threads: one thread per head dim. Every split s < nsplit of a sequence
// has tokens and wrote its partial (lse -inf only if all its scores were -inf).
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

#if DEC_IMPL == 0
#define TP_SPLIT_KERNEL decode_split_kernel
#else
#define TP_SPLIT_KERNEL decode_mma_kernel
#endif

typedef void (*SplitKernel)(Args);

inline SplitKernel split_kernel(int G) {
  switch (G) {
    case 1: return TP_SPLIT_KERNEL<1>;
    case 2: return TP_SPLIT_KERNEL<2>;
    case 3: return TP_SPLIT_KERNEL<3>;
    case 4: return TP_SPLIT_KERNEL<4>;
    case 5: return TP_SPLIT_KERNEL<5>;
    case 6: return TP_SPLIT_KERNEL<6>;
    case 7: return TP_SPLIT_KERNEL<7>;
    case 8: return TP_SPLIT_KERNEL<8>;
    default: return nullptr;
  }
}

// Resident split-kernel blocks per SM for group size G (cached per G). static, not inline: a
// function-local static of an inline function is one process-wide (GNU unique) object shared by
// every extension module that defines it, i.e. by all sweep points loaded in one process.
static int blocks_per_sm(int G) {
  static int cache[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  if (G < 1 || G > 8) return 1;
  if (cache[G] == 0) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, split_kernel(G), THREADS, 0) !=
            cudaSuccess ||
        n < 1) {
      cudaGetLastError();
      n = 2;
    }
    cache[G] = n;
  }
  return cache[G];
}

// Split slots per (sequence, kv head): the s that minimises waves(s) x (chunk(s) + SPLIT_OVH)
// for the average sequence, with chunks of at least MIN_CHUNK tokens. A sequence uses
// min(ceil(len / MIN_CHUNK), s) splits of equal size.
inline int choose_max_splits(int batch, int hkv, int64_t total_tokens, int slots) {
  const int64_t work = (int64_t)batch * hkv;
  if (work <= 0 || total_tokens <= 0) return 1;
  if (slots < 1) slots = 1;
  const int64_t avg = (total_tokens + batch - 1) / batch;
  int64_t smax = (avg + MIN_CHUNK - 1) / MIN_CHUNK;
  if (smax > 256) smax = 256;
  if (smax < 1) smax = 1;
  int best = 1;
  double best_cost = 1e300;
  for (int64_t s = 1; s <= smax; ++s) {
    const int64_t chunk = (avg + s - 1) / s;
    const int64_t waves = (work * s + slots - 1) / slots;
    const double cost = (double)waves * (double)(chunk + SPLIT_OVH);
    if (cost < best_cost) {
      best_cost = cost;
      best = (int)s;
    }
  }
  return best;
}

inline cudaError_t launch(const Args& a, int G, cudaStream_t st) {
  if (a.batch <= 0 || a.hkv <= 0) return cudaSuccess;
  SplitKernel k = split_kernel(G);
  if (!k) return cudaErrorInvalidValue;
  dim3 grid(a.max_splits, a.hkv, a.batch);
  k<<<grid, THREADS, 0, st>>>(a);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || a.max_splits <= 1) return e;
  decode_merge_kernel<<<dim3(a.hkv * G, a.batch), kD, 0, st>>>(a, a.hkv * G);
  return cudaGetLastError();
}

}  // namespace tp_decode

#ifndef TP_KERNEL_ONLY
// The tuning macros are spent: drop them before the torch headers (torch::Library::Kind has an
// enumerator IMPL, and short macro names can clash with other identifiers there).
#undef THREADS
#undef UNROLL
#undef MIN_CHUNK
#undef DEC_IMPL
#undef SPLIT_OVH
#undef MMA_MINB
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
  a.max_splits = tp_decode::choose_max_splits(B, hkv, (int64_t)indices.numel() * a.page_size,
                                              sms * tp_decode::blocks_per_sm(hq / hkv));
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
