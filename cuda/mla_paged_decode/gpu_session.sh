#!/bin/bash
# One GPU session for the MLA decode kernels (run from the repository root on the device machine,
# with scratch/kcheck-data carried): gpu_check.py on every workload + edge cases + do_bench timings,
# then tools/kcheck.py (the project's harness: verify + time vs reference and torch baseline) on a
# subset of workloads where the harness floor is meaningful (num_pages == pages used).
#   OUT=/some/dir bash cuda/mla_paged_decode/gpu_session.sh [--sweep]
set -u
SWEEP=${1:-}
OUT=${OUT:-/tmp/mla-out}
mkdir -p "$OUT"
D=/tmp/mla-data
rm -rf "$D" && mkdir -p "$D/workloads/mla_paged" && ln -s "$PWD/scratch/kcheck-data/blob" "$D/blob"
SRC=scratch/kcheck-data/workloads/mla_paged
# ps1: batch 1 x 72, 9 x 8900, 43 x 74645, 65 x 78558; ps64: 1 x 2 pages, 9 x 262, 46 x 1004, 65 x 1264
grep -E '"uuid": "(2f180d86|4c9f9abf|2f8670b6|9a078ce1)' $SRC/mla_paged_decode_h16_ckv512_kpe64_ps1.jsonl \
  > "$D/workloads/mla_paged/mla_paged_decode_h16_ckv512_kpe64_ps1.jsonl"
grep -E '"uuid": "(f7aae328|433c5ada|3e3fe855|2d3b82fd)' $SRC/mla_paged_decode_h16_ckv512_kpe64_ps64.jsonl \
  > "$D/workloads/mla_paged/mla_paged_decode_h16_ckv512_kpe64_ps64.jsonl"
W=/tmp/mla-kcw
mkdir -p "$W"
KS="--kernel cuda/mla_paged_decode --kernel triton/mla_paged_decode --kernel baselines/torch_mla_paged_decode"
# harness builds (cached in $W) in the background while gpu_check.py builds its own copy
python3 -u tools/kcheck.py check --data "$D" --kernel cuda/mla_paged_decode $SWEEP \
  --defs '^mla_paged_decode_h16_ckv512_kpe64_ps64$' --max-workloads 1 --work "$W" > "$OUT/prebuild.log" 2>&1 &
PB=$!
timeout ${CHECK_S:-120} python3 cuda/mla_paged_decode/gpu_check.py --data scratch/kcheck-data \
  --out "$OUT/gpu_check.json" --time ${NTIME:-8} > "$OUT/gpu_check.log" 2>&1
echo "gpu_check rc=$?"
grep -v '^time' "$OUT/gpu_check.log" | tail -40
grep '^time' "$OUT/gpu_check.log" | cut -c1-400
wait $PB
grep -v '^\[harness\]' "$OUT/prebuild.log" | tail -5
timeout ${KC_S:-100} python3 -u tools/kcheck.py check --data "$D" $KS $SWEEP --defs '^mla_paged_decode_h16_ckv512_kpe64_ps(1|64)$' \
  --max-workloads ${MAXW:-3} --time --work "$W" --out "$OUT/kcheck.json" > "$OUT/kcheck.log" 2>&1
echo "kcheck rc=$?"
grep -v '^\[harness\]' "$OUT/kcheck.log" | cut -c1-300 | tail -100
