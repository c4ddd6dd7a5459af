"""CPU emulation of gemm_sm90.cu's data flow, to check without a GPU that what TMA writes (128-byte
swizzle) is what the wgmma descriptors read, and that the accumulator fragments land in the right
elements of C (normal and swap-AB paths, split-K reduce, M/N/K tails). Prints one line per shape,
OK or the error; it fails when the XOR swizzle is dropped or the per-k16 descriptor step is wrong.

    python3 cuda/tools/wgmma/emulate_layout.py
"""
import numpy as np
kBK=64; kBM=128; kCons=2
def sw128(off):  # Swizzle<3,4,3> on absolute smem byte address
    return off ^ (((off >> 7) & 7) << 4)
def tma_load(smem, dst, G, c0, c1, box_rows):  # G: [rows, K] fp16 array; coords {k, row}
    rows, K = G.shape
    for r in range(box_rows):
        for k in range(kBK):
            gr, gk = c1 + r, c0 + k
            v = G[gr, gk] if (gr < rows and gk < K) else np.float16(0)
            a = sw128(dst + r*128 + 2*k)
            smem[a:a+2] = np.frombuffer(np.float16(v).tobytes(), np.uint8)
    return box_rows*kBK*2  # bytes credited to complete_tx (full box)
def make_desc(saddr):
    d = ((saddr & 0x3FFFF) >> 4)
    d |= 1 << 16
    d |= (1024 >> 4) << 32
    d |= 1 << 62
    return d
def desc_read(smem, desc, rows):  # K-major SW128 operand: rows x 16 fp16
    start = (desc & 0x3FFF) << 4
    sbo = ((desc >> 32) & 0x3FFF) << 4
    layout = (desc >> 62) & 3
    base_off = (desc >> 49) & 7
    assert layout == 1 and base_off == 0
    out = np.zeros((rows, 16), np.float32)
    for m in range(rows):
        for k in range(16):
            a = start + (m//8)*sbo + (m%8)*128 + 2*k   # canonical SW128 K-major: 8 rows x 128B atoms
            a = sw128(a)
            out[m, k] = np.frombuffer(smem[a:a+2].tobytes(), np.float16)[0]
    return out
def frag_to_rc(tid, i):  # documented m64nN f32 D fragment
    warp, lane = tid >> 5, tid & 31
    return warp*16 + (lane>>2) + 8*((i>>1)&1), (i>>2)*8 + 2*(lane&3) + (i&1)

def run(A, B, BN, SWAP, splits=1, base=1024*3):
    M, K = A.shape; N = B.shape[0]
    P, Q = (B, A) if SWAP else (A, B)
    R, Cc = P.shape[0], Q.shape[0]
    kt = (K + 63)//64
    tiles_r, tiles_c = (R+127)//128, (Cc+BN-1)//BN
    C = np.full((M, N), np.nan, np.float32)
    kPBytes = kBM*kBK*2; kQBytes = BN*kBK*2; stage = kPBytes+kQBytes
    NR = BN//2
    def store_pair(row, col, v0, v1):
        if row >= R: return
        if not SWAP:
            if col < Cc: C[row, col] = np.float16(v0)
            if col+1 < Cc: C[row, col+1] = np.float16(v1)
        else:
            if col < Cc: C[col, row] = np.float16(v0)
            if col+1 < Cc: C[col+1, row] = np.float16(v1)
    for tr in range(tiles_r):
        for tc in range(tiles_c):
            ws = {}
            for split in range(splits):
                k0 = split*kt//splits; k1 = (split+1)*kt//splits
                acc = np.zeros((kCons, 128, NR), np.float32)
                for i, ktile in enumerate(range(k0, k1)):
                    smem = np.zeros(base + stage + 64, np.uint8)
                    st = base
                    tx = tma_load(smem, st, P, ktile*kBK, tr*kBM, kBM)
                    tx += tma_load(smem, st+kPBytes, Q, ktile*kBK, tc*BN, BN)
                    assert tx == stage
                    for cw in range(kCons):
                        da = make_desc(st + cw*64*128); db = make_desc(st + kPBytes)
                        D = np.zeros((64, BN), np.float32)
                        for kk in range(4):
                            a = desc_read(smem, da + 2*kk, 64); b = desc_read(smem, db + 2*kk, BN)
                            D = D + a @ b.T
                        # accumulate into fragment registers
                        for tid in range(128):
                            for r in range(NR):
                                rr, cc = frag_to_rc(tid, r)
                                acc[cw, tid, r] += D[rr, cc]
                for cw in range(kCons):
                    if splits > 1:
                        buf = np.zeros(64*BN, np.float32)
                        for q in range(NR//4):
                            for tid in range(128):
                                buf[(q*128+tid)*4:(q*128+tid)*4+4] = acc[cw, tid, 4*q:4*q+4]
                        ws[(cw, split)] = buf
                    else:
                        for tid in range(128):
                            warp, lane = tid>>5, tid&31
                            r0 = tr*kBM + cw*64 + warp*16 + (lane>>2); c0 = tc*BN + (lane&3)*2
                            for j in range(BN//8):
                                store_pair(r0, c0+8*j, acc[cw,tid,4*j], acc[cw,tid,4*j+1])
                                store_pair(r0+8, c0+8*j, acc[cw,tid,4*j+2], acc[cw,tid,4*j+3])
            if splits > 1:
                F = 16*BN
                for cw in range(kCons):
                    for split in range(splits):
                        f0, f1 = F*split//splits, F*(split+1)//splits
                        R0, C0 = tr*kBM + cw*64, tc*BN
                        for f in range(f0, f1):
                            s = sum(ws[(cw, sp)][4*f:4*f+4] for sp in range(splits))
                            q, t = f >> 7, f & 127
                            row = R0 + (t>>5)*16 + ((t&31)>>2); col = C0 + 8*q + 2*(t&3)
                            store_pair(row, col, s[0], s[1]); store_pair(row+8, col, s[2], s[3])
    return C

rng = np.random.default_rng(0)
for (M, N, K, BN, SWAP, sp) in [(5, 130, 136, 8, True, 1), (7, 200, 72, 16, True, 2), (33, 129, 64, 64, True, 1),
                                (20, 131, 200, 32, True, 3), (130, 9, 136, 128, False, 1), (129, 257, 72, 256, False, 2),
                                (100, 201, 80, 128, False, 3)]:
    A = rng.standard_normal((M, K)).astype(np.float16); B = rng.standard_normal((N, K)).astype(np.float16)
    C = run(A, B, BN, SWAP, sp)
    ref = A.astype(np.float32) @ B.astype(np.float32).T
    err = np.abs(C - ref); ok = np.all(np.isfinite(C)) and np.all((err <= 1e-2) | (err/(np.abs(ref)+1e-8) <= 1e-2))
    print(M, N, K, BN, SWAP, sp, "OK" if ok else "BAD", np.nanmax(err))
