#!/usr/bin/env python3
"""Emit the wgmma.mma_async m64nNk16 f32.f16.f16 wrappers (SS: both operands from shared memory)
that gemm_sm90.cu embeds between the GENERATED markers. make_cu.py splices the output into gemm_sm90.cu"""
NS = [8, 16, 32, 64, 128, 256]
out = []
out.append("template <int N> struct Wgmma;")
for n in NS:
    nr = n // 2
    regs = ",".join(f"%{i}" for i in range(nr))
    cons = ", ".join(f'"+f"(d[{i}])' for i in range(nr))
    out.append(f"""template <> struct Wgmma<{n}> {{
  static __device__ __forceinline__ void mma(float (&d)[{nr}], uint64_t da, uint64_t db, uint32_t scale_d) {{
    asm volatile(
        "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nr + 2}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.f16.f16 {{{regs}}}, %{nr}, %{nr + 1}, p, 1, 1, 0, 0;\\n}}\\n"
        : {cons}
        : "l"(da), "l"(db), "r"(scale_d));
  }}
}};""")
print("\n".join(out))
