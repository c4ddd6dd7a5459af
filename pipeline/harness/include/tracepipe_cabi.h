// tracepipe C-ABI binding: the calling convention of stages/harness/PROTOCOL.md §4.
#ifndef TRACEPIPE_CABI_H_
#define TRACEPIPE_CABI_H_
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dtype codes: the 11 FlashInfer dtypes in the format's order.
enum TPDType {
  TP_FLOAT32 = 0, TP_FLOAT16 = 1, TP_BFLOAT16 = 2, TP_FLOAT8_E4M3FN = 3, TP_FLOAT8_E5M2 = 4,
  TP_FLOAT4_E2M1 = 5, TP_INT64 = 6, TP_INT32 = 7, TP_INT16 = 8, TP_INT8 = 9, TP_BOOL = 10
};
enum TPDevice { TP_CPU = 1, TP_CUDA = 2 };

typedef struct {
  void* data;
  const int64_t* shape;
  const int64_t* strides;  // in elements
  int32_t ndim;
  int32_t dtype;      // TPDType
  int32_t device;     // TPDevice; scalars are 0-d host tensors
  int32_t device_id;
} TPTensor;

// Entry signature: args = inputs then outputs (destination-passing style). Return 0 on success.
typedef int (*TPEntry)(const TPTensor* args, int32_t n_args, void* stream);

#ifdef __cplusplus
}
#endif
#endif  // TRACEPIPE_CABI_H_
