// The timing gate (stages/harness/th_gate.py): a kernel that holds the judge's stream, and every SM,
// while the host submits the call under test, so that the call's kernels start back to back once it
// opens and the host's submission latency stays out of the sample (nvbench's "blocking kernel").
//
// Launch it with enough blocks of 1024 threads to fill every SM (2 per SM on sm_90): while it runs no
// other kernel can start anywhere on the device, so work a candidate launches on another stream cannot
// get ahead of the measurement. The host drives it through `host_flag` (mapped host memory) in two steps
// per gate: it writes 2*seq-1 ("armed") once the harness's own submissions behind the gate are done and
// the call under test begins, then 2*seq ("released") once the call has returned. Thread 0 of block 0
// waits to be armed (at most `arm_cap_ns`, so a host that never arms cannot hold the device), then waits
// to be released or for `hold_ns` after arming, whichever comes first: the hold bounds the call's own
// host time that stays out of the sample, whatever the harness spent before it. It then opens the gate
// for the other blocks through `dev_flag` and writes why it opened into `status`: seq * 4 + 1 when the
// host released it, seq * 4 + 2 when the hold expired. Every other block's thread 0 waits for
// `dev_flag` (with its own, slightly longer, deadline); the rest of each block waits at the barrier,
// holding its thread slots without issuing instructions.
//
// Regenerate the PTX embedded in th_gate.py after changing this file: tools/gen-gate-ptx.sh
#include <cstdint>

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Longest wait to be armed: the harness's submissions behind the gate take microseconds.
constexpr uint64_t arm_cap_ns = 2000000;

extern "C" __global__ void __launch_bounds__(1024)
    tp_gate(const volatile int* host_flag, volatile int* dev_flag, int seq, unsigned long long hold_ns,
            volatile int* status) {
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
}
