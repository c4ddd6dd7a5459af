#!/usr/bin/env bash
# A/B judging throughput on one GPU machine (docs/BENCHMARKS.md): runs tools/gpu-throughput.sh on the same
# definition selection with an earlier checkout of the project (.device/old, from `git archive`) and with
# this one, alternating, so that both are measured on the same machine. Logs and stores go to $OUT/ab.tar.xz.
# Usage: bash tools/gpu-ab.sh REGEX SECONDS [extra --set arguments for the second run of this checkout]
# The second runs (old2, new2) change a key so that every cell is redone.
set -uo pipefail
regex=${1:?definition regex} limit=${2:-150}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$root/.tracepipe/harness/triton-cache}
res=/tmp/tp-ab && mkdir -p $res # runs of earlier invocations on this machine stay (and are packed again)
if [ -d "$root/.device/old" ]; then
  ln -sfn "$root/node_modules" "$root/.device/old/node_modules"
  ln -sfn "$root/.device" "$root/.device/old/.device"
fi
one() { # name dir [--set ...]
  local name=$1 dir=$2
  shift 2
  rm -rf "${res:?}/$name" && mkdir -p $res/$name
  (cd "$dir" && OUT=$res/$name bash tools/gpu-throughput.sh "$name" "$regex" "$limit" "$@")
  mv $res/$name/gpu-store.tar.xz $res/$name.store.tar.xz 2>/dev/null
  rm -f $res/$name/gpu-builds.tar.xz
}
again=(--set verify.timeout_s=301 --set time.input_sets_max_bytes=268435457)
# AB_RUNS picks and orders the runs (default: old1 new1 new2; old2 is the old checkout's second run)
for run in ${AB_RUNS:-old1 new1 new2}; do
  case $run in
  old1) [ -d "$root/.device/old" ] && one old1 "$root/.device/old" ;;
  old2) [ -d "$root/.device/old" ] && one old2 "$root/.device/old" "${again[@]}" ;;
  new1) one new1 "$root" ;;
  new2) one new2 "$root" "${again[@]}" "$@" ;;
  esac
  tar cJf "$OUT/ab.tar.xz" -C $res . # after each run: a call stopped at its limit keeps the runs done
done
