// tracepipe: C = A @ B^T on Hopper (sm_90a), fp16 in/out, fp32 accumulate.
// A [M,K], B [N,K], C [M,N], all row-major (A and B are both K-major, as wgmma wants).
// Entry point (DPS): run(A, B, C).
//
// One persistent, warp-specialised kernel template serves every shape:
//   warpgroup 0      : producer (one thread) issuing TMA (cp.async.bulk.tensor.2d) loads of
//                      128B-swizzled 64-wide K slices into a STAGES-deep ring (full/empty mbarriers)
//   warpgroups 1..2  : consumers, each owning 64 rows of the BM=128 tile, wgmma.mma_async
//                      m64nBNk16 with both operands read from shared memory via descriptors
// Paths (chosen on the host by a cost model fitted to H100 timings, see plan_cost):
//   tile 128 x 256 or 128 x 128, C tile = A rows x B rows
//   "swap AB" (M <= SM90_SWAP_MAX_M): computes C^T = B A^T so that N fills the 128-row wgmma side
//                          and M (in tiles of 8/16/32/64) is the wgmma N; memory bound on B.
// Split-K (every path) when there are too few tiles for the SMs, planned only when every unit has
// its own co-resident CTA: each split writes its fp32 partial to a workspace, waits on a per-tile
// arrival counter until all splits have, then reduces 1/splits of the tile and writes that part of C.
// Tails: TMA zero-fills out-of-bounds rows/columns of A and B (M, N and K tails); the epilogue
// predicates the stores on M and N.
#include "tp_params.h"

#ifndef SM90_SWAP_MAX_M
#define SM90_SWAP_MAX_M 256  // M <= this: the swap-AB widths are candidates too
#endif
#ifndef SM90_SMEM_BUDGET
#define SM90_SMEM_BUDGET 196608  // bytes of pipeline ring (H100 allows 227 KB per block)
#endif
#ifndef SM90_MAX_STAGES
#define SM90_MAX_STAGES 10
#endif
#ifndef SM90_GROUP_M
#define SM90_GROUP_M 8  // grouped tile order: tiles of GROUP_M tile-rows share B columns in L2
#endif
#ifndef SM90_MAX_SPLITS
#define SM90_MAX_SPLITS 16
#endif
#ifndef SM90_MIN_KT_PER_SPLIT
#define SM90_MIN_KT_PER_SPLIT 2  // k-tiles (of 64) per split at least
#endif
#ifndef SM90_SPLIT_US
#define SM90_SPLIT_US 8.19f  // cost model (us): a split-K launch's fixed cost (cooperative launch, sync)
#endif
#ifndef SM90_PARTIAL_US
#define SM90_PARTIAL_US 1.21f  // cost model (us): per fp32-partial-to-stage byte ratio of a split unit
#endif
#ifndef SM90_STREAMK
#define SM90_STREAMK 0  // 1: the planner also weighs stream-K plans (run_cfg with splits 0 forces one)
#endif
#ifndef SM90_PRODUCER_REGS
#define SM90_PRODUCER_REGS 40
#endif
#ifndef SM90_CONSUMER_REGS
#define SM90_CONSUMER_REGS 232
#endif

#include <cuda.h>  // CUtensorMap & enums (header only: the driver entry point is fetched at run time)
#include <cudaTypedefs.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace tp_sm90 {
namespace {  // internal linkage: every sweep point loaded in one process keeps its own statics

constexpr int kBK = 64;          // K slice per stage: 64 fp16 = 128 bytes = one 128B swizzle row
constexpr int kCons = 2;         // consumer warpgroups
constexpr int kBM = 64 * kCons;  // tile rows (wgmma M side)
constexpr int kThreads = (kCons + 1) * 128;
constexpr int kMaxCounters = 16384;

struct Params {
  __half* C;
  float* ws;      // split-K partials: [tile][cons][split][64*BN] floats
  int* counters;  // split-K arrive/depart counters: [tile][cons][2], zero between launches
  int R;          // rows of the P operand (M, or N when swapped)
  int Cc;         // rows of the Q operand (N, or M when swapped)
  int ldc;        // = N
  int kt;         // number of 64-wide k-tiles
  int splits;
  int tiles_r, tiles_c, units;
  // Stream-K (sk_grid > 0): CTA b owns the flat iterations [b*T/G, (b+1)*T/G) of the tile-major
  // (tile, k-tile) space, T = sk_iters = tiles * kt and G = sk_grid; a tile split between CTAs is
  // finished by the CTA holding its last k-tile, from the partials of the others (at most sk_slots).
  int sk_grid, sk_iters, sk_slots;
};

// ------------------------------------------------------------------ PTX wrappers
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void prefetch_tmap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
template <int NR>
__device__ __forceinline__ void fence_regs(float (&d)[NR]) {
#pragma unroll
  for (int i = 0; i < NR; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ int ld_acquire_gpu(const int* ptr) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(ptr) : "memory");
  return v;
}
__device__ __forceinline__ void named_bar(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

// wgmma shared-memory matrix descriptor, K-major operand in a 128B-swizzled tile (TMA SWIZZLE_128B):
//   bits  0-13 start address >> 4
//   bits 16-29 leading-dim byte offset >> 4 (unused for swizzled K-major when K per wgmma (32 B)
//              fits in the 128 B swizzle row; set to 1 by convention)
//   bits 32-45 stride-dim byte offset >> 4 = 1024 >> 4 (8 rows x 128 B between core-matrix groups)
//   bits 49-51 base offset = 0 (tiles are 1024-byte aligned)
//   bits 62-63 layout: 1 = 128B swizzle
// Advancing along K by 16 elements (32 B) inside the 128 B row adds 2 to the encoded address: the
// hardware applies the XOR swizzle to the final address bits [4:6]^[7:9], as TMA did when writing.
__device__ __forceinline__ uint64_t make_desc(uint32_t saddr) {
  uint64_t d = 0;
  d |= (uint64_t)((saddr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16;
  d |= (uint64_t)(1024 >> 4) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}

// ---------------------------------------------------------- generated wgmma wrappers
// GENERATED-BEGIN (gen_wgmma.py)
template <int N> struct Wgmma;
template <> struct Wgmma<8> {
  static __device__ __forceinline__ void mma(float (&d)[4], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0,%1,%2,%3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
template <> struct Wgmma<16> {
  static __device__ __forceinline__ void mma(float (&d)[8], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, %8, %9, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
template <> struct Wgmma<32> {
  static __device__ __forceinline__ void mma(float (&d)[16], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
template <> struct Wgmma<64> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
template <> struct Wgmma<128> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
template <> struct Wgmma<256> {
  static __device__ __forceinline__ void mma(float (&d)[128], uint64_t da, uint64_t db, uint32_t scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(scale_d));
  }
};
// GENERATED-END

// Store tile element pair (row, col), (row, col + 1) of the tile's coordinate system.
//   !SWAP: row = m, col = n: C[m, n], C[m, n+1] (one half2 store when in bounds and aligned)
//    SWAP: row = n, col = m: C[m, n], C[m+1, n]
template <bool SWAP>
__device__ __forceinline__ void store_pair(const Params& p, int row, int col, float v0, float v1) {
  if (row >= p.R) return;
  if (!SWAP) {
    __half* c = p.C + (size_t)row * p.ldc + col;
    if (col + 1 < p.Cc && (p.ldc & 1) == 0) {
      *reinterpret_cast<__half2*>(c) = __floats2half2_rn(v0, v1);
    } else {
      if (col < p.Cc) c[0] = __float2half_rn(v0);
      if (col + 1 < p.Cc) c[1] = __float2half_rn(v1);
    }
  } else {
    __half* c = p.C + (size_t)col * p.ldc + row;
    if (col < p.Cc) c[0] = __float2half_rn(v0);
    if (col + 1 < p.Cc) c[p.ldc] = __float2half_rn(v1);
  }
}

// A consumer warpgroup's 64 x BN fp32 accumulators to `dst` as thread-interleaved float4s (the layout
// the split-K reduction and the stream-K fix-up read back), then the warpgroup's barrier, after which
// thread 0 publishes them (a cumulative __threadfence, then its counter).
template <int NR>
__device__ __forceinline__ void store_partial(float* dst, const float (&acc)[NR], int tid, int cw) {
#pragma unroll
  for (int q = 0; q < NR / 4; ++q)
    __stcg(reinterpret_cast<float4*>(dst + (q * 128 + tid) * 4),
           make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]));
  __threadfence();
  named_bar(1 + cw, 128);
}

template <int BN>
struct Cfg {
  static constexpr int kPBytes = kBM * kBK * 2;
  static constexpr int kQBytes = BN * kBK * 2;
  static constexpr int kStageBytes = kPBytes + kQBytes;
  static constexpr int kStagesRaw = SM90_SMEM_BUDGET / kStageBytes;
  static constexpr int kStages = kStagesRaw > SM90_MAX_STAGES ? SM90_MAX_STAGES : kStagesRaw;
  // ring + 1024 alignment slack + barriers/flags
  static constexpr int kSmem = kStages * kStageBytes + 1024 + 2 * kStages * 8 + 64;
  static_assert(kStages >= 2, "need at least two stages");
  static_assert(kSmem <= 232448, "shared memory over the sm_90 per-block limit");
  static_assert(kPBytes % 1024 == 0 && kQBytes % 1024 == 0, "tiles must keep 1024-B alignment");
};

// The tile's row and column in grouped order: GROUP_M tile-rows share B columns in L2.
__host__ __device__ __forceinline__ void tile_coords(const Params& p, int tile, int& tr, int& tc) {
  const int group_size = SM90_GROUP_M * p.tiles_c;
  const int g = tile / group_size;
  const int first_r = g * SM90_GROUP_M;
  const int rem = p.tiles_r - first_r;  // (no min(): keep host/device overload lookup out of it)
  const int gsz = rem < SM90_GROUP_M ? rem : SM90_GROUP_M;
  const int in_g = tile - g * group_size;
  tr = first_r + in_g % gsz;
  tc = in_g / gsz;
}

// Stream-K: the first flat iteration of CTA b, and the CTA that owns flat iteration x (the largest b
// with sk_begin(b) <= x). Every CTA owns at least one iteration (the planner keeps G <= T).
__host__ __device__ __forceinline__ int sk_begin(const Params& p, int b) {
  return (int)(((long long)b * p.sk_iters) / p.sk_grid);
}
__host__ __device__ __forceinline__ int sk_owner(const Params& p, long long x) {
  return (int)(((x + 1) * p.sk_grid - 1) / p.sk_iters);
}

// One piece of a CTA's work: k-tiles [k0, k1) of a tile. Producer and consumers walk the same
// sequence. Uniform split-K: unit = tile * splits + split, every gridDim.x-th unit. Stream-K: the
// CTA's flat range from its end back to its start, so that the piece holding a tile's first k-tiles
// (published for a later CTA to finish) comes first, and the piece holding a tile's last k-tiles
// (which waits for the earlier CTAs' partials of that tile) comes last, when they are long done.
struct Work {
  int tile, split, k0, k1;
};
struct WorkIter {
  int pos, end;  // split-K: the next unit and the unit count; stream-K: the range [end, pos)
  __host__ __device__ explicit WorkIter(const Params& p, int cta) {
    if (p.sk_grid > 0) {
      pos = sk_begin(p, cta + 1);
      end = sk_begin(p, cta);
    } else {
      pos = cta;
      end = p.units;
    }
  }
  __host__ __device__ bool next(const Params& p, int step, Work& w) {
    if (p.sk_grid > 0) {
      if (pos <= end) return false;
      w.tile = (pos - 1) / p.kt;
      const int first = w.tile * p.kt;
      const int start = first > end ? first : end;
      w.split = 0;
      w.k0 = start - first;
      w.k1 = pos - first;
      pos = start;
      return true;
    }
    if (pos >= end) return false;
    w.tile = pos / p.splits;
    w.split = pos - w.tile * p.splits;
    w.k0 = (int)(((long long)w.split * p.kt) / p.splits);
    w.k1 = (int)(((long long)(w.split + 1) * p.kt) / p.splits);
    pos += step;
    return true;
  }
};

template <int BN, bool SWAP>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_sm90_kernel(const __grid_constant__ CUtensorMap tmP, const __grid_constant__ CUtensorMap tmQ,
                     const Params p) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  using CF = Cfg<BN>;
  constexpr int STAGES = CF::kStages;
  constexpr int NR = BN / 2;  // fp32 accumulators per thread (64 x BN per warpgroup)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sbase = (raw + 1023u) & ~1023u;  // swizzle-128B atoms need 1024-B alignment
  uint8_t* smem = smem_raw + (sbase - raw);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + STAGES * CF::kStageBytes);
  const uint32_t full0 = smem_u32(bars);
  const uint32_t empty0 = full0 + STAGES * 8;

  const int wg = threadIdx.x >> 7;
  const int tid = threadIdx.x & 127;

  if (threadIdx.x == 0) {
#pragma unroll 1
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full0 + 8 * s, 1);              // producer's arrive.expect_tx
      mbar_init(empty0 + 8 * s, kCons * 4);     // lane 0 of every consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // ------------------------------------------------------------------ producer
    setmaxnreg_dec<SM90_PRODUCER_REGS>();
    if (tid == 0) {
      prefetch_tmap(&tmP);
      prefetch_tmap(&tmQ);
      int s = 0;
      uint32_t ph = 0;
      WorkIter it(p, blockIdx.x);
      Work w;
#pragma unroll 1
      while (it.next(p, gridDim.x, w)) {
        int tr, tc;
        tile_coords(p, w.tile, tr, tc);
#pragma unroll 1
        for (int kt = w.k0; kt < w.k1; ++kt) {
          mbar_wait(empty0 + 8 * s, ph ^ 1);  // fresh barrier: parity 1 counts as completed
          const uint32_t fb = full0 + 8 * s;
          mbar_expect_tx(fb, CF::kStageBytes);  // full box bytes, OOB zero-fill included
          const uint32_t dst = sbase + s * CF::kStageBytes;
          tma_load_2d(dst, &tmP, kt * kBK, tr * kBM, fb);
          tma_load_2d(dst + CF::kPBytes, &tmQ, kt * kBK, tc * BN, fb);
          if (++s == STAGES) { s = 0; ph ^= 1; }
        }
      }
    }
  } else {
    // ------------------------------------------------------------------ consumers
    setmaxnreg_inc<SM90_CONSUMER_REGS>();
    const int cw = wg - 1;  // consumer index: rows [64*cw, 64*cw+64) of the tile
    const int warp = tid >> 5, lane = tid & 31;
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) acc[i] = 0.f;
    int s = 0;
    uint32_t ph = 0;
    WorkIter it(p, blockIdx.x);
    Work w;
#pragma unroll 1
    while (it.next(p, gridDim.x, w)) {
      const int tile = w.tile, split = w.split;
      int tr, tc;
      tile_coords(p, tile, tr, tc);
      const int nk = w.k1 - w.k0;
      int prev_s = 0;
#pragma unroll 1
      for (int i = 0; i < nk; ++i) {
        mbar_wait(full0 + 8 * s, ph);
        const uint32_t st = sbase + s * CF::kStageBytes;
        const uint64_t da = make_desc(st + cw * 64 * 128);
        const uint64_t db = make_desc(st + CF::kPBytes);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk)
          Wgmma<BN>::mma(acc, da + 2 * kk, db + 2 * kk, (i > 0 || kk > 0) ? 1u : 0u);
        wgmma_commit();
        wgmma_wait<1>();  // the group of iteration i-1 is done: its stage can be refilled
        if (i > 0 && lane == 0) mbar_arrive(empty0 + 8 * prev_s);
        prev_s = s;
        if (++s == STAGES) { s = 0; ph ^= 1; }
      }
      wgmma_wait<0>();
      fence_regs(acc);
      if (nk > 0 && lane == 0) mbar_arrive(empty0 + 8 * prev_s);
      if (nk == 0) {  // (cannot happen with the host planner; keep the output defined)
#pragma unroll
        for (int i = 0; i < NR; ++i) acc[i] = 0.f;
      }

      // ---------------------------------------------------------- stream-K fix-up
      // A piece without the tile's last k-tile publishes its fp32 partial in its slot (its CTA's
      // rank among the tile's contributors) and counts itself in; the piece with the last k-tile
      // waits for every earlier contributor, adds their partials in slot order (deterministic) and
      // stores the tile below. The finisher returns the count to 0 for the next launch. Waiting is
      // safe: the launch is cooperative, and a contributor never waits before it has published.
      if (p.sk_grid > 0 && !(w.k0 == 0 && w.k1 == p.kt)) {
        const int first = sk_owner(p, (long long)tile * p.kt);
        float* slots = p.ws + (size_t)(tile * kCons + cw) * p.sk_slots * (64 * BN);
        int* count = p.counters + (tile * kCons + cw);
        if (w.k1 < p.kt) {
          float* mine = slots + (size_t)(blockIdx.x - first) * (64 * BN);
          store_partial(mine, acc, tid, cw);
          if (tid == 0) {
            __threadfence();  // cumulative release of the warpgroup's stores, as in split-K below
            atomicAdd(count, 1);
          }
          continue;
        }
        const int contributors = blockIdx.x - first;
        if (tid == 0) {
          while (ld_acquire_gpu(count) < contributors) __nanosleep(64);
          *count = 0;
        }
        named_bar(1 + cw, 128);
        __threadfence();
#pragma unroll 1
        for (int j = 0; j < contributors; ++j) {
          const float* src = slots + (size_t)j * (64 * BN);
#pragma unroll
          for (int q = 0; q < NR / 4; ++q) {
            const float4 v = __ldcg(reinterpret_cast<const float4*>(src + (q * 128 + tid) * 4));
            acc[4 * q] += v.x;
            acc[4 * q + 1] += v.y;
            acc[4 * q + 2] += v.z;
            acc[4 * q + 3] += v.w;
          }
        }
        // (falls through to the epilogue with the tile's whole sum)
      }

      // ---------------------------------------------------------- split-K reduction
      // Only planned when every unit has its own CTA (units <= grid <= SMs, one CTA per SM), so
      // all splits of a tile are co-resident and may wait for each other. Each split publishes
      // its fp32 partial, waits until all splits of the tile have, then reduces its 1/splits share
      // of the 64 x BN slice and writes that share of C. arrive/depart counters return to 0.
      if (p.sk_grid == 0 && p.splits > 1) {
        float* slot0 = p.ws + (size_t)(tile * kCons + cw) * p.splits * (64 * BN);
        float* mine = slot0 + (size_t)split * (64 * BN);
        store_partial(mine, acc, tid, cw);
        int* arrive = p.counters + 2 * (tile * kCons + cw);
        if (tid == 0) {
          // Cumulative release by the publishing thread itself (the cooperative-groups grid.sync
          // pattern): bar.sync made the other 127 threads' partial stores visible to this thread.
          __threadfence();
          atomicAdd(arrive, 1);
          while (ld_acquire_gpu(arrive) < p.splits) __nanosleep(64);
        }
        named_bar(1 + cw, 128);
        __threadfence();
        constexpr int F = 16 * BN;  // float4 per 64 x BN slice
        const int f0 = (F * split) / p.splits, f1 = (F * (split + 1)) / p.splits;
        const int R0 = tr * kBM + cw * 64, C0 = tc * BN;
#pragma unroll 1
        for (int f = f0 + tid; f < f1; f += 128) {
          float4 sum = __ldcg(reinterpret_cast<const float4*>(slot0) + f);
#pragma unroll 1
          for (int sp = 1; sp < p.splits; ++sp) {
            const float4 v = __ldcg(reinterpret_cast<const float4*>(slot0 + (size_t)sp * (64 * BN)) + f);
            sum.x += v.x;
            sum.y += v.y;
            sum.z += v.z;
            sum.w += v.w;
          }
          // float4 f holds registers 4q..4q+3 of thread t: (h, e) = (0,0) (0,1) (1,0) (1,1)
          const int q = f >> 7, t = f & 127;
          const int row = R0 + (t >> 5) * 16 + ((t & 31) >> 2);
          const int col = C0 + 8 * q + 2 * (t & 3);
          store_pair<SWAP>(p, row, col, sum.x, sum.y);
          store_pair<SWAP>(p, row + 8, col, sum.z, sum.w);
        }
        if (tid == 0) {
          int* depart = arrive + 1;
          if (atomicAdd(depart, 1) == p.splits - 1) {  // everyone is past the wait: reset
            *arrive = 0;
            *depart = 0;
            __threadfence();
          }
        }
        continue;
      }

      // ---------------------------------------------------------- epilogue
      // accumulator layout (m64nN): warp w holds rows 16w + lane/4 (+8); register 4j + 2h + e
      // is row 16w + lane/4 + 8h, column 8j + 2(lane%4) + e.
      const int r0 = tr * kBM + cw * 64 + warp * 16 + (lane >> 2);
      const int c0 = tc * BN + (lane & 3) * 2;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        store_pair<SWAP>(p, r0, c0 + 8 * j, acc[4 * j], acc[4 * j + 1]);
        store_pair<SWAP>(p, r0 + 8, c0 + 8 * j, acc[4 * j + 2], acc[4 * j + 3]);
      }
    }
  }
#endif
}

// ------------------------------------------------------------------ host side
typedef CUresult (*EncodeTiledFn)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                  const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                  const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                  CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

static EncodeTiledFn get_encode() {
  static EncodeTiledFn fn = nullptr;
  if (!fn) {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<EncodeTiledFn>(ptr);
  }
  return fn;
}

// 2-D fp16 tensor [rows, K] row-major, box = 64 (K) x box_rows, 128-byte swizzle, OOB -> zeros.
static cudaError_t make_map(CUtensorMap* m, const void* ptr, int rows, int K, int box_rows) {
  EncodeTiledFn enc = get_encode();
  if (!enc) return cudaErrorNotSupported;
  cuuint64_t dims[2] = {(cuuint64_t)K, (cuuint64_t)rows};
  cuuint64_t strides[1] = {(cuuint64_t)K * 2};
  cuuint32_t box[2] = {(cuuint32_t)kBK, (cuuint32_t)box_rows};
  cuuint32_t es[2] = {1, 1};
  CUresult r = enc(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(ptr), dims, strides, box,
                   es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// Kernel variants. id: 0 = 128x256, 1 = 128x128, 2..5 = swap-AB with BN 8/16/32/64.
enum { kCfg256 = 0, kCfg128 = 1, kCfgSwap8 = 2, kCfgSwap16, kCfgSwap32, kCfgSwap64, kNumCfg };
static int cfg_bn(int id) {
  switch (id) {
    case kCfg256: return 256;
    case kCfg128: return 128;
    case kCfgSwap8: return 8;
    case kCfgSwap16: return 16;
    case kCfgSwap32: return 32;
    default: return 64;
  }
}
static bool cfg_swap(int id) { return id >= kCfgSwap8; }

struct Plan {
  int cfg = -1;
  int splits = 1;  // 0: stream-K over `grid` CTAs
  int tiles_r = 0, tiles_c = 0, units = 0, grid = 0;
  int sk_iters = 0, sk_slots = 0;
  bool coop = false;  // launch cooperatively even without splits (run_coop: what that launch costs)
  size_t ws_bytes = 0;
  float cost = 0.f;
};

static int num_sms() {
  static int cache[64] = {0};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (!cache[dev]) {
    int v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
    cache[dev] = v > 0 ? v : 132;
  }
  return cache[dev];
}

// Cost model, in microseconds on an H100 (132 SMs):
//   waves x (k-tiles per unit x kTileUs[cfg] + kUnitUs[cfg]) [+ SPLIT_US + PARTIAL_US x partial/stage]
// where partial/stage is the bytes of a unit's fp32 partial over those of one pipeline stage. The
// coefficients are a non-negative least-squares fit (relative error) to 1,310 timings of every
// distinct plan on 93 (N, K, M) cases (cuda/tools/wgmma/results/h100-2026-12-08-explore.json,
// `bench_gemm.py --explore`; fit_planner.py refits them). Against the best plan measured per case
// this planner's choice is 2.3 % slower on average and 11 % at most (cuda/tools/wgmma/wgmma_test.ts
// holds it to that; about 3 % with each shape left out of the fit in turn), where the first
// hand-set model was 9.2 % slower (up to 45 %: split-K at mid M where a swap-AB tile without
// splits was 1.3x faster). Split-K is only allowed when every unit gets its own CTA
// (units <= SMs): the in-kernel reduction waits for the sibling splits, which must be co-resident.
//                                  128x256 128x128 swap8  swap16 swap32 swap64
static const float kTileUs[kNumCfg] = {0.659f, 0.432f, 0.279f, 0.304f, 0.336f, 0.354f};
static const float kUnitUs[kNumCfg] = {7.987f, 3.162f, 1.411f, 1.279f, 1.203f, 1.596f};
// The split counts the planner chooses from: the ones the fit saw (a count between two of them
// differs little in cost and was never measured).
static const int kSplitChoices[] = {1, 2, 3, 4, 6, 8, 12, 16};

static float plan_cost(int cfg, int splits, long long units, int kt, int sms) {
  const int bn = cfg_bn(cfg);
  const long long waves = (units + sms - 1) / sms;
  const int ktu = (kt + splits - 1) / splits;
  float c = (float)waves * (ktu * kTileUs[cfg] + kUnitUs[cfg]);
  if (splits > 1) {
    const float partial = (float)kBM * bn * 4, stage = (float)(kBM + bn) * kBK * 2;
    c += SM90_SPLIT_US + SM90_PARTIAL_US * partial / stage;
  }
  return c;
}

// Stream-K's cost, by the same terms (not yet fitted: the explore data has no stream-K plan, so the
// planner weighs it only under SM90_STREAMK): each CTA's ceil(T/G) k-tiles, its pieces (at most
// one per tile it touches), and split-K's fixed and partial terms for the cooperative launch and
// the fix-up.
static float streamk_cost(int cfg, long long iters, int kt, int grid) {
  const int bn = cfg_bn(cfg);
  const long long per = (iters + grid - 1) / grid;
  const long long pieces = (per + kt - 1) / kt + 1;
  const float partial = (float)kBM * bn * 4, stage = (float)(kBM + bn) * kBK * 2;
  return per * kTileUs[cfg] + pieces * kUnitUs[cfg] + SM90_SPLIT_US + SM90_PARTIAL_US * partial / stage;
}

// A stream-K plan for `cfg`, or one without splits where stream-K cannot run (fewer k-tiles than
// two per CTA, or more tiles than the fix-up counters).
static Plan make_streamk_plan(Plan pl, int kt, int sms) {
  const long long tiles = (long long)pl.tiles_r * pl.tiles_c;
  const long long iters = tiles * kt;
  long long g = iters / SM90_MIN_KT_PER_SPLIT;
  if (g > sms) g = sms;
  if (g < 2 || tiles * kCons > kMaxCounters || iters > 0x7fffffffLL) return pl;
  Params q = {};
  q.kt = kt;
  q.sk_grid = (int)g;
  q.sk_iters = (int)iters;
  int slots = 0;
  for (long long t = 0; t < tiles; ++t) {
    const int n = sk_owner(q, t * kt + kt - 1) - sk_owner(q, t * kt);
    if (n > slots) slots = n;
  }
  pl.splits = 0;
  pl.grid = pl.units = (int)g;
  pl.sk_iters = (int)iters;
  pl.sk_slots = slots;
  pl.ws_bytes = slots > 0 ? (size_t)tiles * slots * kBM * cfg_bn(pl.cfg) * sizeof(float) : 0;
  pl.cost = streamk_cost(pl.cfg, iters, kt, (int)g);
  return pl;
}

// The plan of `cfg` with `splits_req` splits (< 0: the cheapest count; 0: stream-K).
static Plan make_plan_for(int cfg, int splits_req, int M, int N, int K, int sms) {
  Plan pl;
  pl.cfg = cfg;
  const int bn = cfg_bn(cfg);
  const bool swap = cfg_swap(cfg);
  const int R = swap ? N : M, Cc = swap ? M : N;
  const int kt = (K + kBK - 1) / kBK;
  pl.tiles_r = (R + kBM - 1) / kBM;
  pl.tiles_c = (Cc + bn - 1) / bn;
  const long long tiles = (long long)pl.tiles_r * pl.tiles_c;
  int smax = kt / SM90_MIN_KT_PER_SPLIT;
  if (smax > SM90_MAX_SPLITS) smax = SM90_MAX_SPLITS;
  if (smax > sms / (tiles > 0 ? tiles : 1)) smax = (int)(sms / (tiles > 0 ? tiles : 1));
  if (2 * tiles * kCons > kMaxCounters) smax = 1;
  if (smax < 1) smax = 1;
  int s = splits_req == 0 ? 1 : splits_req;  // stream-K (0) starts from the plan without splits
  if (s < 0) {
    float best = 1e30f;
    s = 1;
    for (const int c : kSplitChoices) {
      if (c > smax) break;
      const float cost = plan_cost(cfg, c, tiles * c, kt, sms);
      if (cost < best) { best = cost; s = c; }
    }
  }
  if (s > smax) s = smax;  // forced splits are clamped to what the kernel supports
  pl.splits = s;
  pl.units = (int)(tiles * s);
  pl.grid = pl.units < sms ? pl.units : sms;
  pl.ws_bytes = s > 1 ? (size_t)tiles * s * kBM * bn * sizeof(float) : 0;
  pl.cost = plan_cost(cfg, s, tiles * s, kt, sms);
  if (splits_req == 0 || (SM90_STREAMK && splits_req < 0)) {
    const Plan sk = make_streamk_plan(pl, kt, sms);
    if (splits_req == 0 || sk.cost < pl.cost) return sk;
  }
  return pl;
}

// Planner: the cheapest plan of every candidate tile shape (the swap-AB widths only where M is
// small). force_cfg/force_splits < 0: automatic.
static Plan plan_gemm(int M, int N, int K, int force_cfg = -1, int force_splits = -1) {
  const int sms = num_sms();
  if (force_cfg >= 0 && force_cfg < kNumCfg) return make_plan_for(force_cfg, force_splits, M, N, K, sms);
  Plan best;
  for (int cfg = 0; cfg < kNumCfg; ++cfg) {
    if (cfg_swap(cfg) && M > SM90_SWAP_MAX_M) continue;
    const Plan p = make_plan_for(cfg, force_splits, M, N, K, sms);
    if (best.cfg < 0 || p.cost < best.cost) best = p;
  }
  return best;
}

static int* get_counters() {
  static int* cache[64] = {nullptr};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (!cache[dev]) {
    int* p = nullptr;
    if (cudaMalloc(&p, kMaxCounters * sizeof(int)) != cudaSuccess) return nullptr;
    if (cudaMemset(p, 0, kMaxCounters * sizeof(int)) != cudaSuccess) return nullptr;
    if (cudaDeviceSynchronize() != cudaSuccess) return nullptr;
    cache[dev] = p;
  }
  return cache[dev];
}

// The kernel's geometry for a plan (pointers left null).
static Params plan_params(const Plan& pl, int M, int N, int K) {
  const bool swap = cfg_swap(pl.cfg);
  Params p = {};
  p.R = swap ? N : M;
  p.Cc = swap ? M : N;
  p.ldc = N;
  p.kt = (K + kBK - 1) / kBK;
  p.splits = pl.splits > 0 ? pl.splits : 1;
  p.tiles_r = pl.tiles_r;
  p.tiles_c = pl.tiles_c;
  p.units = pl.units;
  p.sk_grid = pl.splits == 0 ? pl.grid : 0;
  p.sk_iters = pl.sk_iters;
  p.sk_slots = pl.sk_slots;
  return p;
}

template <int BN, bool SWAP>
static cudaError_t launch_t(const Plan& pl, const void* A, const void* B, void* C, int M, int N,
                            int K, float* ws, cudaStream_t st) {
  using CF = Cfg<BN>;
  static bool attr_done[64] = {false};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (!attr_done[dev]) {
    cudaError_t e = cudaFuncSetAttribute(gemm_sm90_kernel<BN, SWAP>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, CF::kSmem);
    if (e != cudaSuccess) return e;
    attr_done[dev] = true;
  }
  CUtensorMap mp, mq;
  const void* P = SWAP ? B : A;
  const void* Q = SWAP ? A : B;
  cudaError_t e = make_map(&mp, P, SWAP ? N : M, K, kBM);
  if (e != cudaSuccess) return e;
  e = make_map(&mq, Q, SWAP ? M : N, K, BN);
  if (e != cudaSuccess) return e;
  Params p = plan_params(pl, M, N, K);
  p.C = static_cast<__half*>(C);
  p.ws = ws;
  if (pl.splits != 1) {
    p.counters = get_counters();
    if (!p.counters || (!ws && pl.ws_bytes > 0)) return cudaErrorMemoryAllocation;
  }
  if (pl.splits != 1 || pl.coop) {
    // The split-K reduction and the stream-K fix-up spin on sibling CTAs, so they must all be
    // resident at once. A cooperative launch guarantees that or fails with
    // cudaErrorCooperativeLaunchTooLarge (launch_plan then falls back to splits = 1) instead of
    // deadlocking. run_coop launches a plan without splits this way too, to time the launch alone.
    cudaLaunchConfig_t lc = {};
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    lc.gridDim = dim3(pl.grid);
    lc.blockDim = dim3(kThreads);
    lc.dynamicSmemBytes = CF::kSmem;
    lc.stream = st;
    lc.attrs = at;
    lc.numAttrs = 1;
    e = cudaLaunchKernelEx(&lc, gemm_sm90_kernel<BN, SWAP>, mp, mq, p);
    if (e != cudaSuccess) (void)cudaGetLastError();  // clear the (non-sticky) launch error
    return e;
  }
  gemm_sm90_kernel<BN, SWAP><<<pl.grid, kThreads, CF::kSmem, st>>>(mp, mq, p);
  return cudaGetLastError();
}

static cudaError_t launch_cfg(const Plan& pl, const void* A, const void* B, void* C, int M, int N,
                              int K, float* ws, cudaStream_t st) {
  switch (pl.cfg) {
    case kCfg256: return launch_t<256, false>(pl, A, B, C, M, N, K, ws, st);
    case kCfg128: return launch_t<128, false>(pl, A, B, C, M, N, K, ws, st);
    case kCfgSwap8: return launch_t<8, true>(pl, A, B, C, M, N, K, ws, st);
    case kCfgSwap16: return launch_t<16, true>(pl, A, B, C, M, N, K, ws, st);
    case kCfgSwap32: return launch_t<32, true>(pl, A, B, C, M, N, K, ws, st);
    case kCfgSwap64: return launch_t<64, true>(pl, A, B, C, M, N, K, ws, st);
    default: return cudaErrorInvalidValue;
  }
}

static cudaError_t launch_plan(const Plan& pl, const void* A, const void* B, void* C, int M, int N,
                               int K, float* ws, cudaStream_t st) {
  if (M <= 0 || N <= 0) return cudaSuccess;
  if (K <= 0) return cudaMemsetAsync(C, 0, (size_t)M * N * sizeof(__half), st);
  cudaError_t e = launch_cfg(pl, A, B, C, M, N, K, ws, st);
  if (pl.splits != 1 && (e == cudaErrorCooperativeLaunchTooLarge || e == cudaErrorNotSupported)) {
    // the split CTAs cannot all be co-resident (GPU shared with other work, MPS, ...): no split-K
    const Plan p1 = make_plan_for(pl.cfg, 1, M, N, K, num_sms());
    e = launch_cfg(p1, A, B, C, M, N, K, nullptr, st);
  }
  return e;
}

}  // namespace
}  // namespace tp_sm90

// Plain C entry (no torch): plans and launches on `stream`; `ws` must hold tp_sm90_ws_bytes(M,N,K)
// bytes (may be null when that is 0). Also keeps the kernels instantiated in -DTP_NO_TORCH builds.
extern "C" size_t tp_sm90_ws_bytes(int M, int N, int K) {
  return tp_sm90::plan_gemm(M, N, K).ws_bytes;
}
// The plan for (M, N, K) without launching anything: out = [cfg, splits, units, grid] (a planner
// test on a machine without a GPU, where the SM count falls back to the H100's 132).
extern "C" void tp_sm90_plan(int M, int N, int K, int* out) {
  const tp_sm90::Plan pl = tp_sm90::plan_gemm(M, N, K);
  out[0] = pl.cfg;
  out[1] = pl.splits;
  out[2] = pl.units;
  out[3] = pl.grid;
}
// The work the kernel walks for a forced plan (cfg, splits; 0 = stream-K), from the kernel's own
// WorkIter on the host: plan_out = [cfg, splits, units, grid, sk_slots, tiles, kt]; out holds, per
// CTA and in the order it runs them, its pieces as (cta, tile, k0, k1). Returns the piece count
// (at most cap are written). A CPU test checks coverage, slots and that no CTA can wait forever.
extern "C" int tp_sm90_schedule(int M, int N, int K, int cfg, int splits, int* plan_out, int* out,
                                int cap) {
  const tp_sm90::Plan pl = tp_sm90::plan_gemm(M, N, K, cfg, splits);
  tp_sm90::Params p = tp_sm90::plan_params(pl, M, N, K);
  const int v[7] = {pl.cfg, pl.splits, pl.units, pl.grid, pl.sk_slots, pl.tiles_r * pl.tiles_c, p.kt};
  for (int i = 0; i < 7; ++i) plan_out[i] = v[i];
  int n = 0;
  for (int cta = 0; cta < pl.grid; ++cta) {
    tp_sm90::WorkIter it(p, cta);
    tp_sm90::Work w;
    while (it.next(p, pl.grid, w)) {
      if (n < cap) {
        out[4 * n] = cta;
        out[4 * n + 1] = w.tile;
        out[4 * n + 2] = w.k0;
        out[4 * n + 3] = w.k1;
      }
      ++n;
    }
  }
  return n;
}
extern "C" int tp_sm90_gemm(const void* A, const void* B, void* C, int M, int N, int K, void* ws,
                            cudaStream_t stream) {
  const tp_sm90::Plan pl = tp_sm90::plan_gemm(M, N, K);
  return (int)tp_sm90::launch_plan(pl, A, B, C, M, N, K, static_cast<float*>(ws), stream);
}

#if !defined(TP_NO_TORCH) && !defined(TP_KERNEL_ONLY)  // TP_KERNEL_ONLY: kernels_test.ts, as the other kernels
// c10/cuda/CUDAStream.h rather than ATen/cuda/CUDAContext.h: the latter also pulls in cublas_v2.h,
// cublasLt.h, cusparse.h and cusolverDn.h, which a minimal CUDA toolkit does not ship.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>
#include <pybind11/stl.h>  // std::vector return of plan()

static void check_args(const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C) {
  TORCH_CHECK(A.is_cuda() && B.is_cuda() && C.is_cuda(), "tensors must be on CUDA");
  TORCH_CHECK(A.scalar_type() == torch::kHalf && B.scalar_type() == torch::kHalf &&
                  C.scalar_type() == torch::kHalf,
              "float16 expected");
  TORCH_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2 && A.size(1) == B.size(1) &&
                  C.size(0) == A.size(0) && C.size(1) == B.size(0),
              "shape mismatch");
  TORCH_CHECK(A.is_contiguous() && B.is_contiguous() && C.is_contiguous(), "contiguous expected");
  TORCH_CHECK(A.size(1) % 8 == 0, "K must be a multiple of 8 (TMA needs 16-byte row strides)");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(A.data_ptr()) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(B.data_ptr()) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(C.data_ptr()) % 4 == 0,
              "aligned operands expected (A, B 16-byte; C 4-byte)");
}

static void run_impl(torch::Tensor A, torch::Tensor B, torch::Tensor C, int force_cfg,
                     int force_splits, bool coop = false) {
  check_args(A, B, C);
  const int M = (int)A.size(0), N = (int)B.size(0), K = (int)A.size(1);
  if (M == 0 || N == 0) return;
  const c10::cuda::CUDAGuard guard(A.device());
  tp_sm90::Plan pl = tp_sm90::plan_gemm(M, N, K, force_cfg, force_splits);
  pl.coop = coop;
  torch::Tensor ws;
  float* wsp = nullptr;
  if (pl.ws_bytes > 0) {
    ws = torch::empty({(int64_t)(pl.ws_bytes / sizeof(float))},
                      A.options().dtype(torch::kFloat32));
    wsp = ws.data_ptr<float>();
  }
  cudaError_t e = tp_sm90::launch_plan(pl, A.data_ptr(), B.data_ptr(), C.data_ptr(), M, N, K, wsp,
                                       c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(e == cudaSuccess, "sm90 gemm launch failed: ", cudaGetErrorString(e));
}

void run(torch::Tensor A, torch::Tensor B, torch::Tensor C) { run_impl(A, B, C, -1, -1); }

// Testing hook: the planner's plan launched cooperatively whatever its splits, so that a bench can
// tell the cooperative launch's own cost from the split-K reduction's (the cost model's 8 us term).
void run_coop(torch::Tensor A, torch::Tensor B, torch::Tensor C) { run_impl(A, B, C, -1, -1, true); }

// Testing hook: force a kernel variant (0: 128x256, 1: 128x128, 2..5: swap-AB BN 8/16/32/64) and
// a split count (< 0: the planner's choice for that variant; 0: stream-K).
void run_cfg(torch::Tensor A, torch::Tensor B, torch::Tensor C, int64_t cfg, int64_t splits) {
  run_impl(A, B, C, (int)cfg, (int)splits);
}

// The planner's choice for (M, N, K): [cfg, splits, units, grid].
std::vector<int64_t> plan(int64_t M, int64_t N, int64_t K) {
  const tp_sm90::Plan pl = tp_sm90::plan_gemm((int)M, (int)N, (int)K);
  return {pl.cfg, pl.splits, pl.units, pl.grid};
}

// What run_cfg(cfg, splits) will launch: the split count clamped to what the kernel supports, so
// a tuning sweep times each distinct plan once. [cfg, splits, units, grid].
std::vector<int64_t> plan_cfg(int64_t M, int64_t N, int64_t K, int64_t cfg, int64_t splits) {
  const tp_sm90::Plan pl = tp_sm90::plan_gemm((int)M, (int)N, (int)K, (int)cfg, (int)splits);
  return {pl.cfg, pl.splits, pl.units, pl.grid};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("run", &run, "tracepipe sm90 gemm C = A @ B^T (DPS)");
  m.def("run_cfg", &run_cfg, "run with a forced variant / split count (testing)");
  m.def("run_coop", &run_coop, "the planner's plan, launched cooperatively (testing)");
  m.def("plan", &plan, "planner choice [cfg, splits, units, grid]");
  m.def("plan_cfg", &plan_cfg, "the plan run_cfg launches [cfg, splits, units, grid]");
}
#endif
