// tracepipe: C = A @ B^T, fp16 in/out, fp32 accumulate. A [M,K], B [N,K], C [M,N], row-major.
// Entry point (DPS): run(A, B, C).
// M > SMALL_M : tiled tensor-core kernel (mma.sync m16n8k16 + ldmatrix, cp.async multi-stage
//               pipeline, padded shared-memory rows); M, N tails predicated, K % 8 == 0.
// M <= SMALL_M: streaming kernel for decode-sized M: each warp owns NR rows of B and reads them
//               once with 16-byte loads (memory-bound regime).
#include "tp_params.h"

#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef BK
#define BK 32
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef WARPS_M
#define WARPS_M 2
#endif
#ifndef WARPS_N
#define WARPS_N 4
#endif
#ifndef SMALL_M
#define SMALL_M 16
#endif

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace tp_gemm {

constexpr int kThreads = WARPS_M * WARPS_N * 32;
constexpr int kWM = BM / WARPS_M;  // warp tile
constexpr int kWN = BN / WARPS_N;
constexpr int kMT = kWM / 16;      // m16 tiles per warp
constexpr int kNT = kWN / 8;       // n8 tiles per warp
constexpr int kLd = BK + 8;        // padded row (halfs): conflict-free ldmatrix
constexpr int kStageHalfs = (BM + BN) * kLd;
constexpr size_t kSmemBytes = (size_t)STAGES * kStageHalfs * sizeof(__half);
static_assert(kWM % 16 == 0 && kWN % 16 == 0, "warp tile must be a multiple of 16");
static_assert(BK % 16 == 0, "BK multiple of 16");

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  const int n = pred ? 16 : 0;  // zero-fill when out of bounds
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                        uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void load_stage(__half* sA, __half* sB, const __half* A,
                                           const __half* B, int M, int N, int K, int m0, int n0,
                                           int k0) {
  constexpr int kChunksRow = BK / 8;
  for (int i = threadIdx.x; i < (BM + BN) * kChunksRow; i += kThreads) {
    const int r = i / kChunksRow, c = (i % kChunksRow) * 8;
    const int kk = k0 + c;
    if (r < BM) {
      const int gm = m0 + r;
      const bool p = gm < M && kk < K;
      const __half* src = p ? A + (int64_t)gm * K + kk : A;
      cp_async16(smem_u32(sA + r * kLd + c), src, p);
    } else {
      const int rb = r - BM, gn = n0 + rb;
      const bool p = gn < N && kk < K;
      const __half* src = p ? B + (int64_t)gn * K + kk : B;
      cp_async16(smem_u32(sB + rb * kLd + c), src, p);
    }
  }
}

__global__ void __launch_bounds__(kThreads) gemm_tc_kernel(const __half* __restrict__ A,
                                                           const __half* __restrict__ B,
                                                           __half* __restrict__ C, int M, int N,
                                                           int K) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* smem = reinterpret_cast<__half*>(smem_raw);
  // grouped rasterisation along M for L2 reuse of B
  const int tiles_m = (M + BM - 1) / BM;
  const int bid = blockIdx.x;
  constexpr int kGroup = 8;
  const int tiles_n = (N + BN - 1) / BN;
  const int group = bid / (kGroup * tiles_n);
  const int first_m = group * kGroup;
  const int gsize = min(tiles_m - first_m, kGroup);
  const int tm = first_m + (bid % (kGroup * tiles_n)) % gsize;
  const int tn = (bid % (kGroup * tiles_n)) / gsize;
  const int m0 = tm * BM, n0 = tn * BN;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;

  float acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const int ktiles = (K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) {
      __half* st = smem + s * kStageHalfs;
      load_stage(st, st + BM * kLd, A, B, M, N, K, m0, n0, s * BK);
    }
    cp_commit();
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    cp_wait<STAGES - 2>();
    __syncthreads();
    {  // prefetch tile kt + STAGES - 1 into the slot freed at iteration kt - 1
      const int nk = kt + STAGES - 1;
      if (nk < ktiles) {
        __half* st = smem + (nk % STAGES) * kStageHalfs;
        load_stage(st, st + BM * kLd, A, B, M, N, K, m0, n0, nk * BK);
      }
      cp_commit();
    }
    const __half* sA = smem + (kt % STAGES) * kStageHalfs;
    const __half* sB = sA + BM * kLd;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[kMT][4], bfr[kNT][2];
#pragma unroll
      for (int i = 0; i < kMT; ++i) {
        const int row = wm * kWM + i * 16 + (lane & 15);
        const int col = kk + (lane >> 4) * 8;
        ldsm_x4(smem_u32(sA + row * kLd + col), af[i][0], af[i][1], af[i][2], af[i][3]);
      }
#pragma unroll
      for (int j = 0; j < kNT; j += 2) {
        // x4: matrices (n 0-7,k 0-7), (n 0-7,k 8-15), (n 8-15,k 0-7), (n 8-15,k 8-15)
        const int row = wn * kWN + j * 8 + (lane & 7) + ((lane >> 4) << 3);
        const int col = kk + ((lane >> 3) & 1) * 8;
        ldsm_x4(smem_u32(sB + row * kLd + col), bfr[j][0], bfr[j][1], bfr[j + 1][0],
                bfr[j + 1][1]);
      }
#pragma unroll
      for (int i = 0; i < kMT; ++i)
#pragma unroll
        for (int j = 0; j < kNT; ++j) mma16816(acc[i][j], af[i], bfr[j]);
    }
  }
  cp_wait<0>();

  // epilogue: fp32 -> fp16, predicated stores of half2
  const int g = lane >> 2, tq = lane & 3;
#pragma unroll
  for (int i = 0; i < kMT; ++i) {
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      const int col = n0 + wn * kWN + j * 8 + tq * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm * kWM + i * 16 + g + h * 8;
        if (row < M) {
          __half* dst = C + (int64_t)row * N + col;
          if (col + 1 < N && (N % 2 == 0)) {
            *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
          } else {
            if (col < N) dst[0] = __float2half_rn(acc[i][j][2 * h]);
            if (col + 1 < N) dst[1] = __float2half_rn(acc[i][j][2 * h + 1]);
          }
        }
      }
    }
  }
}

// Small M: each warp computes C[0:M, n:n+NR]; lanes stride K in 8-half (16-byte) chunks.
constexpr int kNR = 4;
template <int MT>
__global__ void __launch_bounds__(256) gemm_small_m_kernel(const __half* __restrict__ A,
                                                           const __half* __restrict__ B,
                                                           __half* __restrict__ C, int M, int N,
                                                           int K) {
  const int lane = threadIdx.x & 31;
  const int warp_global = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int n0 = warp_global * kNR;
  if (n0 >= N) return;
  float acc[MT][kNR];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < kNR; ++r) acc[m][r] = 0.f;
  for (int k = lane * 8; k < K; k += 32 * 8) {
    uint4 bv[kNR];
#pragma unroll
    for (int r = 0; r < kNR; ++r) {
      const int n = min(n0 + r, N - 1);
      bv[r] = __ldcs(reinterpret_cast<const uint4*>(B + (int64_t)n * K + k));
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      if (m < M) {
        const uint4 av = __ldg(reinterpret_cast<const uint4*>(A + (int64_t)m * K + k));
        const __half2* ah = reinterpret_cast<const __half2*>(&av);
#pragma unroll
        for (int r = 0; r < kNR; ++r) {
          const __half2* bh = reinterpret_cast<const __half2*>(&bv[r]);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 fa = __half22float2(ah[e]);
            const float2 fb = __half22float2(bh[e]);
            acc[m][r] = fmaf(fa.x, fb.x, acc[m][r]);
            acc[m][r] = fmaf(fa.y, fb.y, acc[m][r]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < kNR; ++r) {
      float v = acc[m][r];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      acc[m][r] = v;
    }
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < M)
#pragma unroll
        for (int r = 0; r < kNR; ++r)
          if (n0 + r < N) C[(int64_t)m * N + n0 + r] = __float2half_rn(acc[m][r]);
  }
}

static cudaError_t launch(const void* a, const void* b, void* c, int M, int N, int K,
                          cudaStream_t st) {
  if (M <= 0 || N <= 0) return cudaSuccess;
  auto A = static_cast<const __half*>(a);
  auto B = static_cast<const __half*>(b);
  auto C = static_cast<__half*>(c);
  if (K <= 0) return cudaMemsetAsync(C, 0, (size_t)M * N * sizeof(__half), st);
  if (M <= SMALL_M) {
    const int warps = (N + kNR - 1) / kNR;
    const int blocks = (warps + 7) / 8;
    for (int m0 = 0; m0 < M; m0 += 8) {  // chunks of up to 8 rows share one pass over B
      const int mc = M - m0 < 8 ? M - m0 : 8;
      const __half* Am = A + (int64_t)m0 * K;
      __half* Cm = C + (int64_t)m0 * N;
      if (mc <= 1) gemm_small_m_kernel<1><<<blocks, 256, 0, st>>>(Am, B, Cm, mc, N, K);
      else if (mc <= 2) gemm_small_m_kernel<2><<<blocks, 256, 0, st>>>(Am, B, Cm, mc, N, K);
      else if (mc <= 4) gemm_small_m_kernel<4><<<blocks, 256, 0, st>>>(Am, B, Cm, mc, N, K);
      else gemm_small_m_kernel<8><<<blocks, 256, 0, st>>>(Am, B, Cm, mc, N, K);
      cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  // `launch` has internal linkage: an inline function's static would be one GNU-unique object shared
  // by every sweep point loaded in a process, and later points would skip their own attribute call.
  static bool attr_set = false;
  if (!attr_set) {
    cudaError_t e = cudaFuncSetAttribute(gemm_tc_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)kSmemBytes);
    if (e != cudaSuccess) return e;
    attr_set = true;
  }
  const int tiles = ((M + BM - 1) / BM) * ((N + BN - 1) / BN);
  gemm_tc_kernel<<<tiles, kThreads, kSmemBytes, st>>>(A, B, C, M, N, K);
  return cudaGetLastError();
}

}  // namespace tp_gemm

#ifndef TP_KERNEL_ONLY
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

void run(torch::Tensor A, torch::Tensor B, torch::Tensor C) {
  TORCH_CHECK(A.is_cuda() && B.is_cuda() && C.is_cuda(), "tensors must be on CUDA");
  TORCH_CHECK(A.scalar_type() == torch::kHalf && B.scalar_type() == torch::kHalf &&
                  C.scalar_type() == torch::kHalf,
              "float16 expected");
  TORCH_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2 && A.size(1) == B.size(1) &&
                  C.size(0) == A.size(0) && C.size(1) == B.size(0),
              "shape mismatch");
  TORCH_CHECK(A.is_contiguous() && B.is_contiguous() && C.is_contiguous(), "contiguous expected");
  const int M = (int)A.size(0), N = (int)B.size(0), K = (int)A.size(1);
  TORCH_CHECK(K % 8 == 0, "K must be a multiple of 8 (16-byte rows)");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(A.data_ptr()) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(B.data_ptr()) % 16 == 0,
              "16-byte aligned operands expected");
  const c10::cuda::CUDAGuard guard(A.device());
  cudaError_t e = tp_gemm::launch(A.data_ptr(), B.data_ptr(), C.data_ptr(), M, N, K,
                                  at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(e == cudaSuccess, "gemm launch failed: ", cudaGetErrorString(e));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run, "tracepipe gemm C = A @ B^T (DPS)"); }
#endif
