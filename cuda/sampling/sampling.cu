// tracepipe: top-k / top-p / top-k-top-p sampling from probabilities (float32 [B, V]) -> int64 [B].
// One entry point serves the three definition families:
//   run(probs, top_k:int32[B], samples)            top_k_sampling_from_probs_v*
//   run(probs, top_p:float32[B], samples)          top_p_sampling_from_probs_v*   (dispatch on dtype)
//   run(probs, top_k, top_p, samples)              top_k_top_p_sampling_from_probs_v*
//
// Semantics (the definitions' references): k is ignored unless 0 < k < V; p <= 0 gives the argmax
// (first index), p >= 1 (or NaN) no top-p filter; top-p after top-k works on the top-k-renormalised
// row; the kept top-p set is the sorted prefix whose exclusive cumulative mass is <= p.
//
// A thread-block cluster per row (CLUSTER blocks; block r owns a contiguous slice of the row).
// Keys are the float bits of the (positive) probabilities, which order like the values. A threshold
// is found by a 3-level radix descent (bits 30..20, 19..10, 9..0): each level is one pass over the
// slice building a count and a mass histogram of the elements that match the prefix fixed so far
// (shared-memory atomics), summed over the cluster through distributed shared memory (every block
// gets bit-identical totals, so all take the same decisions), then a block scan over the bins picks
// the digit where the descending cumulative count (top-k) or mass (top-p) crosses the target. The
// result is the exact boundary key T, the mass G strictly above it and the tie count c at T. Ties
// at the boundary are kept as r "copies" (r = how many of the tied elements the reference's sort
// keeps); each of the c tied elements gets weight T*r/c, which is the reference's distribution
// marginalised over the order its sort leaves ties in. Finally every block sums its slice's kept
// mass, u ~ U(0, M) is drawn (the same Philox4x32-10 draw in every block: key = a 64-bit seed drawn
// per call from torch's default CPU generator, counter = row), and the block whose slice holds u
// finds the token by a block-wide prefix scan in index order (early exit).
// Passes over a slice: top-k 5, top-p 5, top-k-top-p 7 (the top-k level-0 histogram is reused;
// CLUSTER 1 skips the slice-mass pass).
#include "tp_params.h"

#ifndef THREADS
#define THREADS 512
#endif
#ifndef UNROLL
#define UNROLL 4
#endif
#ifndef CLUSTER
#define CLUSTER 4
#endif

#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace tp_sampling {

namespace cg = cooperative_groups;
constexpr int kThreads = THREADS;
constexpr int kCluster = CLUSTER;
static_assert(CLUSTER == 1 || CLUSTER == 2 || CLUSTER == 4 || CLUSTER == 8, "CLUSTER");
constexpr int kWarps = THREADS / 32;
constexpr int kNB0 = 2048;  // level 0: key bits 30..20
constexpr int kNB1 = 1024;  // levels 1, 2: key bits 19..10, 9..0
static_assert(THREADS >= 64 && THREADS <= 1024 && THREADS % 32 == 0, "THREADS");
static_assert(kNB1 % THREADS == 0 || THREADS > kNB1, "bins per thread");

struct Smem {
  uint32_t c0[kNB0];
  float m0[kNB0];
  uint32_t c1[kNB1];
  float m1[kNB1];
  float wsum_a[kWarps];
  float wsum_b[kWarps];
  int cand;
  float A_cnt, A_mass;
  uint32_t cnt_d;
  unsigned long long found;
  int last_pos;
  float Mb;
};

// Sums a histogram over the blocks of the cluster (distributed shared memory); every block ends
// with the same totals (same summation order everywhere).
__device__ void cluster_reduce(uint32_t* hc, float* hm, int nb) {
  if constexpr (kCluster > 1) {
    constexpr int kMaxPer = kNB0 / kThreads > 0 ? kNB0 / kThreads : 1;
    cg::cluster_group cl = cg::this_cluster();
    const int per = nb / kThreads;
    uint32_t c[kMaxPer];
    float m[kMaxPer];
    cl.sync();
#pragma unroll
    for (int j = 0; j < kMaxPer; ++j) {
      c[j] = 0;
      m[j] = 0.f;
      if (j < per) {
        const int bin = threadIdx.x * per + j;
        for (int r = 0; r < kCluster; ++r) {
          c[j] += cl.map_shared_rank(hc, r)[bin];
          m[j] += cl.map_shared_rank(hm, r)[bin];
        }
      }
    }
    cl.sync();
#pragma unroll
    for (int j = 0; j < kMaxPer; ++j)
      if (j < per) {
        hc[threadIdx.x * per + j] = c[j];
        hm[threadIdx.x * per + j] = m[j];
      }
    __syncthreads();
  }
}

__device__ __forceinline__ uint4 philox(uint32_t k0, uint32_t k1, uint4 c) {
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    const uint32_t lo0 = 0xD2511F53u * c.x, hi0 = __umulhi(0xD2511F53u, c.x);
    const uint32_t lo1 = 0xCD9E8D57u * c.z, hi1 = __umulhi(0xCD9E8D57u, c.z);
    c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// Loads 4 consecutive elements starting at i (i % 4 == 0); out-of-range elements read as 0.
__device__ __forceinline__ float4 load4(const float* __restrict__ row, int i, int V, bool vec) {
  if (vec && i + 3 < V) return __ldg(reinterpret_cast<const float4*>(row + i));
  float4 r;
  r.x = i < V ? __ldg(row + i) : 0.f;
  r.y = i + 1 < V ? __ldg(row + i + 1) : 0.f;
  r.z = i + 2 < V ? __ldg(row + i + 2) : 0.f;
  r.w = i + 3 < V ? __ldg(row + i + 3) : 0.f;
  return r;
}

// Is v a usable probability (positive, finite)? Its key is then its bit pattern (< 0x7f800000).
__device__ __forceinline__ bool usable(float v) { return v > 0.f && v < __int_as_float(0x7f800000); }

// Weight of an element under a boundary (T, tie weight): key > T -> v, key == T -> tie_w, else 0.
struct Boundary {
  uint32_t T;   // keys > T are kept with their value
  float tie_w;  // weight of each element whose key == T
};

__device__ __forceinline__ float weight(float v, const Boundary& b) {
  if (!usable(v)) return 0.f;
  const uint32_t key = __float_as_uint(v);
  return key > b.T ? v : (key == b.T ? b.tie_w : 0.f);
}

// Inclusive block scan of (a, b) over thread index; returns totals too.
__device__ __forceinline__ void block_scan2(float& a, float& b, float& ta, float& tb, Smem& sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float xa = __shfl_up_sync(0xffffffffu, a, o), xb = __shfl_up_sync(0xffffffffu, b, o);
    if (lane >= o) { a += xa; b += xb; }
  }
  if (lane == 31) { sh.wsum_a[w] = a; sh.wsum_b[w] = b; }
  __syncthreads();
  float pa = 0.f, pb = 0.f;
  ta = 0.f;
  tb = 0.f;
  for (int i = 0; i < kWarps; ++i) {
    if (i < w) { pa += sh.wsum_a[i]; pb += sh.wsum_b[i]; }
    ta += sh.wsum_a[i];
    tb += sh.wsum_b[i];
  }
  a += pa;
  b += pb;
  __syncthreads();
}

// Histogram pass: elements with (key >> pshift) == prefix go to bin (key >> dshift) & (nb - 1),
// counting 1 and adding their weight (value, or the top-k weight when wb is given).
__device__ void hist_pass(const float* __restrict__ row, int s0, int V, bool vec, int pshift,
                          uint32_t prefix, int dshift, int nb, uint32_t* hc, float* hm,
                          const Boundary* wb, Smem& sh) {
  for (int i = threadIdx.x; i < nb; i += kThreads) { hc[i] = 0; hm[i] = 0.f; }
  __syncthreads();
  const int step = 4 * kThreads;
  for (int base = s0 + 4 * threadIdx.x; base < V; base += step * UNROLL) {
    float4 x[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int i = base + u * step;
      x[u] = i < V ? load4(row, i, V, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const float vs[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float v = vs[e];
        if (!usable(v)) continue;
        const uint32_t key = __float_as_uint(v);
        if ((key >> pshift) != prefix) continue;
        const int d = (key >> dshift) & (nb - 1);
        atomicAdd(&hc[d], 1u);
        atomicAdd(&hm[d], wb ? weight(v, *wb) : v);
      }
    }
  }
  __syncthreads();
  cluster_reduce(hc, hm, nb);
}

// Picks the largest digit d with A + S(d) > target, S(d) = sum of bins >= d of the count (by_count)
// or mass histogram. Falls back to the lowest non-empty bin (float rounding). Adds the bins above
// d to A_cnt / A_mass and returns d; cnt_d = count at d.
__device__ int find_digit(const uint32_t* hc, const float* hm, int nb, bool by_count, float target,
                          float& A_cnt, float& A_mass, uint32_t& cnt_d, Smem& sh) {
  const int per = nb >= kThreads ? nb / kThreads : 1;
  const int lo = threadIdx.x * per;
  const bool owns = lo < nb;
  float lc = 0.f, lm = 0.f;
  if (owns)
    for (int j = 0; j < per; ++j) { lc += (float)hc[lo + j]; lm += hm[lo + j]; }
  if (threadIdx.x == 0) sh.cand = -1;
  float ic = lc, im = lm, tc, tm;
  block_scan2(ic, im, tc, tm, sh);  // contains __syncthreads (sh.cand visible)
  const float base = by_count ? A_cnt : A_mass;
  if (owns) {
    float s = by_count ? tc - ic : tm - im;  // sum of bins above this thread's range
    for (int j = per - 1; j >= 0; --j) {
      s += by_count ? (float)hc[lo + j] : hm[lo + j];
      if (base + s > target) { atomicMax(&sh.cand, lo + j); break; }
    }
  }
  __syncthreads();
  if (sh.cand < 0) {  // rounding: keep the whole prefix (lowest non-empty bin)
    __syncthreads();
    if (threadIdx.x == 0) sh.cand = nb;
    __syncthreads();
    if (owns)
      for (int j = 0; j < per; ++j)
        if (by_count ? hc[lo + j] > 0 : hm[lo + j] > 0.f) { atomicMin(&sh.cand, lo + j); break; }
    __syncthreads();
    if (threadIdx.x == 0 && sh.cand >= nb) sh.cand = 0;
    __syncthreads();
  }
  const int d = sh.cand;
  if (owns && d >= lo && d < lo + per) {
    float sc = tc - ic, sm = tm - im;
    for (int j = per - 1; lo + j > d; --j) { sc += (float)hc[lo + j]; sm += hm[lo + j]; }
    sh.A_cnt = A_cnt + sc;
    sh.A_mass = A_mass + sm;
    sh.cnt_d = hc[d];
  }
  __syncthreads();
  A_cnt = sh.A_cnt;
  A_mass = sh.A_mass;
  cnt_d = sh.cnt_d;
  __syncthreads();
  return d;
}

struct Desc {
  uint32_t T;   // boundary key
  float G;      // mass strictly above T (under the pass weights)
  float cnt_gt; // count strictly above T
  uint32_t c;   // elements with key == T
  int d0;       // level-0 digit
  float A0_mass;// mass of level-0 bins above d0
};

// Radix descent; level 0 uses the histogram already in sh.c0/sh.m0.
__device__ Desc descend(const float* __restrict__ row, int s0, int V, bool vec, bool by_count, float target,
                        const Boundary* wb, Smem& sh) {
  Desc r;
  float A_cnt = 0.f, A_mass = 0.f;
  uint32_t cd;
  const int d0 = find_digit(sh.c0, sh.m0, kNB0, by_count, target, A_cnt, A_mass, cd, sh);
  r.d0 = d0;
  r.A0_mass = A_mass;
  hist_pass(row, s0, V, vec, 20, (uint32_t)d0, 10, kNB1, sh.c1, sh.m1, wb, sh);
  const int d1 = find_digit(sh.c1, sh.m1, kNB1, by_count, target, A_cnt, A_mass, cd, sh);
  const uint32_t p1 = ((uint32_t)d0 << 10) | (uint32_t)d1;
  hist_pass(row, s0, V, vec, 10, p1, 0, kNB1, sh.c1, sh.m1, wb, sh);
  const int d2 = find_digit(sh.c1, sh.m1, kNB1, by_count, target, A_cnt, A_mass, cd, sh);
  r.T = (p1 << 10) | (uint32_t)d2;
  r.G = A_mass;
  r.cnt_gt = A_cnt;
  r.c = cd;
  return r;
}

__global__ void __launch_bounds__(THREADS) __cluster_dims__(CLUSTER, 1, 1)
    sampling_kernel(const float* __restrict__ probs, int V, const int32_t* __restrict__ top_k,
                    const float* __restrict__ top_p, int64_t* __restrict__ out,
                    unsigned long long seed, bool vec) {
  __shared__ Smem sh;
  const int b = blockIdx.x / kCluster;
  const int rank = blockIdx.x % kCluster;  // == cluster block rank for a 1-D cluster
  const float* row = probs + (size_t)b * V;
  // This block's slice [s0, s1) of the row, a multiple of 4 long.
  const int chunk = ((V + kCluster - 1) / kCluster + 3) & ~3;
  const int s0 = min(V, rank * chunk), s1 = min(V, s0 + chunk);
  const int k = top_k ? top_k[b] : 0;
  const float p = top_p ? top_p[b] : 1.f;

  if (top_p && p <= 0.f) {  // argmax, first index of the maximum
    if (threadIdx.x == 0) sh.found = 0ull;
    __syncthreads();
    unsigned long long best = 0ull;
    for (int i = s0 + 4 * threadIdx.x; i < s1; i += 4 * kThreads) {
      const float4 x = load4(row, i, s1, vec);
      const float vs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (!usable(vs[e]) || i + e >= s1) continue;
        const unsigned long long pk =
            ((unsigned long long)__float_as_uint(vs[e]) << 32) | (0xffffffffu - (uint32_t)(i + e));
        best = pk > best ? pk : best;
      }
    }
    atomicMax(&sh.found, best);
    __syncthreads();
    unsigned long long f = sh.found;
    if constexpr (kCluster > 1) {
      cg::cluster_group cl = cg::this_cluster();
      cl.sync();
      if (rank == 0 && threadIdx.x == 0)
        for (int r = 1; r < kCluster; ++r) {
          const unsigned long long o = *cl.map_shared_rank(&sh.found, r);
          f = o > f ? o : f;
        }
      cl.sync();
    }
    if (rank == 0 && threadIdx.x == 0)
      out[b] = f ? (int64_t)(0xffffffffu - (uint32_t)(f & 0xffffffffull)) : 0;
    return;
  }

  // Level-0 histogram of the whole row (raw values).
  hist_pass(row, s0, s1, vec, 31, 0u, 20, kNB0, sh.c0, sh.m0, nullptr, sh);
  float tot_c = 0.f, tot_m = 0.f;
  {
    float lc = 0.f, lm = 0.f;
    for (int i = threadIdx.x; i < kNB0; i += kThreads) { lc += (float)sh.c0[i]; lm += sh.m0[i]; }
    float tc, tm;
    block_scan2(lc, lm, tc, tm, sh);
    tot_c = tc;
    tot_m = tm;
  }

  Boundary bd{0u, 0.f};  // no filter: every usable element keeps its value
  float M = tot_m;       // total kept mass
  bool have_k = false;
  float SK = tot_m;
  if (top_k && k > 0 && k < V && (float)k < tot_c) {
    const Desc dk = descend(row, s0, s1, vec, true, (float)(k - 1), nullptr, sh);
    const float Tv = __uint_as_float(dk.T);
    const float r = (float)k - dk.cnt_gt;  // tied elements the reference keeps, 1..c
    bd.T = dk.T;
    bd.tie_w = dk.c > 0 ? Tv * r / (float)dk.c : 0.f;
    SK = dk.G + r * Tv;
    M = SK;
    have_k = true;
    if (top_p && p < 1.f) {
      // Level-0 histogram under the top-k weights: bins below d0 drop out, bin d0 keeps what is
      // left of the top-k mass.
      for (int i = threadIdx.x; i < kNB0; i += kThreads) {
        if (i < dk.d0) sh.m0[i] = 0.f;
        else if (i == dk.d0) sh.m0[i] = fmaxf(SK - dk.A0_mass, 0.f);
      }
      __syncthreads();
    }
  }
  if (top_p && p < 1.f) {
    const float P = have_k ? p * SK : p;
    if (P < M) {
      const Boundary wk = bd;
      const Desc dp = descend(row, s0, s1, vec, false, P, have_k ? &wk : nullptr, sh);
      const float Tv = __uint_as_float(dp.T);
      const float mult = (have_k && dp.T == bd.T) ? (bd.tie_w > 0.f ? (float)dp.c * bd.tie_w / Tv : 0.f)
                                                  : (float)dp.c;
      float r = floorf((P - dp.G) / Tv) + 1.f;
      r = fminf(fmaxf(r, 1.f), fmaxf(rintf(mult), 1.f));
      bd.T = dp.T;
      bd.tie_w = dp.c > 0 ? Tv * r / (float)dp.c : 0.f;
      M = dp.G + r * Tv;
    }
  }

  // u ~ U(0, M): the same draw in every block of the cluster.
  const uint4 rnd = philox((uint32_t)seed, (uint32_t)(seed >> 32), make_uint4((uint32_t)b, 0x5eedu, 0u, 0u));
  float u = (float)(rnd.x >> 8) * (1.f / 16777216.f) * M;
  bool owner = true;
  if constexpr (kCluster > 1) {
    // Kept mass of every slice, then the slice that holds u.
    float loc = 0.f;
    for (int i = s0 + 4 * threadIdx.x; i < s1; i += 4 * kThreads) {
      const float4 x = load4(row, i, s1, vec);
      loc += weight(x.x, bd) + weight(x.y, bd) + weight(x.z, bd) + weight(x.w, bd);
    }
    float dummy = 0.f, tot, tdummy;
    block_scan2(loc, dummy, tot, tdummy, sh);
    if (threadIdx.x == 0) sh.Mb = tot;
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    float mr[kCluster];
    float Mt = 0.f;
#pragma unroll
    for (int r = 0; r < kCluster; ++r) {
      mr[r] = *cl.map_shared_rank(&sh.Mb, r);
      Mt += mr[r];
    }
    cl.sync();  // nobody reads remote shared memory after this point
    u = (float)(rnd.x >> 8) * (1.f / 16777216.f) * Mt;
    float pre = 0.f, cum = 0.f;
    int own = -1, lastnz = -1;
#pragma unroll
    for (int r = 0; r < kCluster; ++r) {
      cum += mr[r];
      if (mr[r] > 0.f) {
        lastnz = r;
        if (own < 0 && u < cum) own = r;
      }
      if (r < rank) pre += mr[r];
    }
    if (own < 0) own = lastnz < 0 ? 0 : lastnz;
    owner = own == rank;
    u -= pre;
  }
  if (!owner) return;

  // Find the token by a prefix scan of this slice in index order.
  if (threadIdx.x == 0) { sh.found = ~0ull; sh.last_pos = -1; }
  __syncthreads();
  float base = 0.f;
  int last = -1;
  for (int t0 = s0; t0 < s1; t0 += 4 * kThreads) {
    const int i = t0 + 4 * threadIdx.x;
    float w[4] = {0.f, 0.f, 0.f, 0.f};
    if (i < s1) {
      const float4 x = load4(row, i, s1, vec);
      w[0] = weight(x.x, bd);
      w[1] = weight(x.y, bd);
      w[2] = weight(x.z, bd);
      w[3] = weight(x.w, bd);
    }
    float loc = w[0] + w[1] + w[2] + w[3];
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (w[e] > 0.f) last = i + e;
    float incl = loc, dummy = 0.f, tot, tdummy;
    block_scan2(incl, dummy, tot, tdummy, sh);
    if (loc > 0.f && u < base + incl) {
      float run = base + (incl - loc);
      int pick = -1, lastp = -1;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (w[e] <= 0.f) continue;
        lastp = i + e;
        run += w[e];
        if (pick < 0 && u < run) pick = i + e;
      }
      if (pick < 0) pick = lastp;
      atomicMin(&sh.found, (unsigned long long)pick);
    }
    __syncthreads();
    if (sh.found != ~0ull) break;
    base += tot;
  }
  if (sh.found == ~0ull) atomicMax(&sh.last_pos, last);
  __syncthreads();
  if (threadIdx.x == 0) {
    long long res = sh.found != ~0ull ? (long long)sh.found : (long long)sh.last_pos;
    out[b] = res < 0 ? 0 : res;
  }
}

inline cudaError_t launch(const float* probs, int B, int V, const int32_t* top_k, const float* top_p,
                          int64_t* out, unsigned long long seed, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;
  const bool vec = (V % 4 == 0) && ((reinterpret_cast<uintptr_t>(probs) & 15) == 0);
  sampling_kernel<<<B * kCluster, kThreads, 0, stream>>>(probs, V, top_k, top_p, out, seed, vec);
  return cudaGetLastError();
}

}  // namespace tp_sampling

#ifndef TP_KERNEL_ONLY
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <mutex>

static unsigned long long tp_fresh_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

static void tp_sampling_run(const torch::Tensor& probs, const torch::Tensor* top_k,
                            const torch::Tensor* top_p, torch::Tensor& samples) {
  TORCH_CHECK(probs.is_cuda() && samples.is_cuda(), "tensors must be on CUDA");
  TORCH_CHECK(probs.scalar_type() == torch::kFloat32 && probs.dim() == 2 && probs.is_contiguous(),
              "probs must be contiguous float32 [batch, vocab]");
  TORCH_CHECK(samples.scalar_type() == torch::kInt64 && samples.is_contiguous(),
              "samples must be contiguous int64");
  const int64_t B = probs.size(0), V = probs.size(1);
  TORCH_CHECK(samples.numel() == B, "samples must have batch_size elements");
  TORCH_CHECK(V > 0 && V < (1ll << 30) && B < (1ll << 31), "unsupported shape");
  if (top_k) {
    TORCH_CHECK(top_k->is_cuda() && top_k->scalar_type() == torch::kInt32 && top_k->numel() == B &&
                    top_k->is_contiguous(),
                "top_k must be contiguous int32 [batch]");
  }
  if (top_p) {
    TORCH_CHECK(top_p->is_cuda() && top_p->scalar_type() == torch::kFloat32 && top_p->numel() == B &&
                    top_p->is_contiguous(),
                "top_p must be contiguous float32 [batch]");
  }
  if (B == 0) return;
  const c10::cuda::CUDAGuard guard(probs.device());
  cudaError_t e = tp_sampling::launch(
      probs.data_ptr<float>(), (int)B, (int)V, top_k ? top_k->data_ptr<int32_t>() : nullptr,
      top_p ? top_p->data_ptr<float>() : nullptr, samples.data_ptr<int64_t>(), tp_fresh_seed(),
      at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(e == cudaSuccess, "sampling launch failed: ", cudaGetErrorString(e));
}

// (probs, top_k | top_p, samples): top-k or top-p by the dtype of the second input.
void run_one(torch::Tensor probs, torch::Tensor param, torch::Tensor samples) {
  if (param.scalar_type() == torch::kInt32) {
    tp_sampling_run(probs, &param, nullptr, samples);
  } else {
    TORCH_CHECK(param.scalar_type() == torch::kFloat32, "second input must be int32 top_k or float32 top_p");
    tp_sampling_run(probs, nullptr, &param, samples);
  }
}

void run_kp(torch::Tensor probs, torch::Tensor top_k, torch::Tensor top_p, torch::Tensor samples) {
  tp_sampling_run(probs, &top_k, &top_p, samples);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("run", &run_kp, "top-k top-p sampling from probs (DPS)");
  m.def("run", &run_one, "top-k or top-p sampling from probs, by the dtype of the 2nd input (DPS)");
}
#endif
