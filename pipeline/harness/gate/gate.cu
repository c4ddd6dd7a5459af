// The timing gate (stages/harness/th_gate.py): a kernel that holds the judge's stream, and every SM,
// while the host submits the call under test, so that the call's kernels start back to back once it
// opens and the host's submission latency stays out of the sample (nvbench's "blocking kernel").
//
// Launch it with enough blocks of 1024 threads to fill every SM (2 per SM on sm_90): while it runs no
// other kernel can start anywhere on the device, so work a candidate launches on another stream cannot
// get ahead of the measurement. The host drives it through `host_flag` (mapped host memory) in two steps
// per gate: it writes 2*seq-1 ("armed") as the call under test begins, then 2*seq ("released") once the
// call has returned. Thread 0 of block 0 waits to be armed (at most `arm_cap_ns`, so a host that never
// arms cannot hold the device), then waits to be released or for `hold_ns` after arming, whichever
// comes first. It then opens the gate for the other blocks through `dev_flag` and writes why it opened
// into `status`: seq * 4 + 1 when the host released it, seq * 4 + 2 when the hold expired. Every other
// block's thread 0 waits for `dev_flag` (with its own, slightly longer, deadline); the rest of each
// block waits at the barrier, holding its thread slots without issuing instructions.
//
// Once open, and still holding every SM, the whole grid writes the call's inputs (`n_copies` copies,
// each a (dst, src, bytes) triple of `copies`, in mapped host memory) and then, after a grid-wide
// barrier, zeroes `flush_bytes` at `flush` to evict them from L2. The inputs' buffers hold poison until
// then, so work started outside the measurement (a copy engine taking them to the host during the hold)
// finds nothing to compute from; and because the copies and the flush run inside the gate, no kernel a
// candidate queued on another stream can overlap them either: it starts when the gate exits, with the
// measurement.
//
// Regenerate the PTX embedded in th_gate.py after changing this file: tools/gen-gate-ptx.sh
#include <cstdint>

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Longest wait to be armed: the host arms the gate microseconds after launching it.
constexpr uint64_t arm_cap_ns = 2000000;
// Longest wait at the grid barrier between the copies and the flush: every block is resident (the device
// is idle when the gate is launched), so this only guards against a device shared with another process.
constexpr uint64_t barrier_cap_ns = 5000000;
// Most copies one gate makes (th_gate.MAX_COPIES; with more, the harness copies them all behind the gate).
constexpr int max_copies = 64;

__device__ void copy_bytes(unsigned char* dst, const unsigned char* src, uint64_t bytes, uint64_t tid,
                           uint64_t threads) {
  const bool vec = ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15) == 0;
  uint64_t done = 0;
  if (vec) {
    const uint64_t n16 = bytes / 16;
    uint4* d = reinterpret_cast<uint4*>(dst);
    const uint4* s = reinterpret_cast<const uint4*>(src);
    for (uint64_t i = tid; i < n16; i += threads) d[i] = s[i];
    done = n16 * 16;
  }
  for (uint64_t i = done + tid; i < bytes; i += threads) dst[i] = src[i];
}

extern "C" __global__ void __launch_bounds__(1024)
    tp_gate(const volatile int* host_flag, volatile int* dev_flag, int seq, unsigned long long hold_ns,
            volatile int* status, const unsigned long long* copies, int n_copies, unsigned char* flush,
            unsigned long long flush_bytes, unsigned long long* barrier) {
  __shared__ unsigned long long table[3 * max_copies];
  const int n = n_copies < max_copies ? n_copies : max_copies;
  // Read while the gate holds: the table's latency over the bus stays out of the time the gate is open.
  for (int i = threadIdx.x; i < 3 * n; i += blockDim.x) table[i] = copies[i];
  if (threadIdx.x == 0) {
    const uint64_t t0 = global_ns();
    if (blockIdx.x == 0) {
      while (*host_flag < 2 * seq - 1 && global_ns() - t0 < arm_cap_ns) {
      }
      const uint64_t armed = global_ns();
      int why = 2;
      while (global_ns() - armed < hold_ns) {
        if (*host_flag >= 2 * seq) {
          why = 1;
          break;
        }
      }
      *dev_flag = seq;
      __threadfence_system();
      *status = seq * 4 + why;
    } else {
      // A block that starts late finds the gate open at once; the extra 10 us only guards against
      // block 0 never running (it always does: it is launched first).
      while (*dev_flag < seq && global_ns() - t0 < arm_cap_ns + hold_ns + 10000) {
      }
    }
  }
  __syncthreads();
  const uint64_t threads = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t tid = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int c = 0; c < n; ++c) {
    copy_bytes(reinterpret_cast<unsigned char*>(table[3 * c]),
               reinterpret_cast<const unsigned char*>(table[3 * c + 1]), table[3 * c + 2], tid, threads);
  }
  // Every block's copies are done before any block flushes: the flush then evicts all of the inputs. (Every
  // launch passes the barrier, flush or not: its count is seq * gridDim.x after the seq-th gate.)
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(barrier, 1ULL);
    const unsigned long long target = static_cast<unsigned long long>(seq) * gridDim.x;
    const uint64_t t0 = global_ns();
    while (*reinterpret_cast<volatile unsigned long long*>(barrier) < target && global_ns() - t0 < barrier_cap_ns) {
    }
  }
  __syncthreads();
  const uint64_t n16 = flush_bytes / 16;
  uint4* f = reinterpret_cast<uint4*>(flush);
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (uint64_t i = tid; i < n16; i += threads) f[i] = zero;
  for (uint64_t i = n16 * 16 + tid; i < flush_bytes; i += threads) flush[i] = 0;
}
