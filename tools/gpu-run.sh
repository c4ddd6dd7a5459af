#!/usr/bin/env bash
# Runs on the GPU machine, in the repository root, after tools/gpu-bundle.sh here: unpacks the Deno
# binary and the store bundle, runs `reproduce --from compile --to time` within a time limit (Ctrl-C
# semantics: finished cells are kept), and packs the judging stages' cells into $OUT.
# Usage: bash tools/gpu-run.sh SECONDS [extra reproduce args]
#   TP_STORE_BUNDLE=NAME TP_STORE=DIR: judge the store bundle .device/NAME in the store DIR (another
#   profile's, bundled with BUNDLE=NAME tools/gpu-bundle.sh), leaving the default store alone.
set -uo pipefail
limit=${1:-480}
shift || true
# Each bundle once per machine (a marker per bundle digest): a second invocation here must not unpack
# the store bundles again over the run index the first one wrote.
export TP_STORE=${TP_STORE:-.tracepipe/store}
store=$TP_STORE
export TP_BIN_DIR=${TP_BIN_DIR:-/tmp/tpbin}
bash tools/gpu-unpack.sh || exit 1
export PATH=$TP_BIN_DIR:$PATH PYTHONUNBUFFERED=1 TRACEPIPE_PYTHON=${TRACEPIPE_PYTHON:-python3}
# Triton's JIT cache travels with the builds: "warm builds" include the Triton kernels' compiled code
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/.tracepipe/harness/triton-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
t0=$(date +%s)
# A run index lists the cells of a stage's latest run only: keep the earlier invocations' cells (another
# selection run on this machine before) by uniting the indexes afterwards, as `tp import` does.
rm -rf /tmp/tp-runs-prev /tmp/tp-runs-new && cp -r "$store/runs" /tmp/tp-runs-prev 2>/dev/null
timeout -s INT "$limit" deno run -A pipeline/cli.ts reproduce --store "$store" --from compile --to time "$@" 2>&1 |
  tee "$OUT/reproduce.log" | grep -vE '^\[[a-z]+\] [0-9]+/[0-9]+ run' | tail -40
echo "reproduce wall: $(($(date +%s) - t0)) s"
if [ -d /tmp/tp-runs-prev ]; then
  mkdir -p /tmp/tp-runs-new/cells && mv "$store/runs" /tmp/tp-runs-new/runs &&
    cp -r /tmp/tp-runs-prev "$store/runs" && deno run -A pipeline/cli.ts import --store "$store" /tmp/tp-runs-new
fi
# Each archive is written under a temporary name and renamed when whole: a call that runs out of time
# while packing (the device tool's limit) then brings back no archive rather than a truncated one
# (the thirteenth session's gpu-builds.tar.xz came back cut off and failed the next call's unpack).
# xz on every core: the single-threaded packing of that call was still running when its time ran out.
pack() { # OUT_NAME, then tar's arguments
  local name=$1
  shift
  tar cf - "$@" | xz -T0 -6 >"$OUT/.$name.part" && mv "$OUT/.$name.part" "$OUT/$name"
}
# Only what exists: a run stopped before `time` has no runs/time.json, and tar's error for a missing
# path failed the whole pipe, so the sixteenth session's first call brought back none of its 441
# verify cells. An empty store packs nothing.
packed=$(mktemp)
(cd "$store" 2>/dev/null && for p in runs/compile.json runs/verify.json runs/time.json \
  cells/compile cells/verify cells/time; do [ -e "$p" ] && echo "$p"; done) >"$packed"
[ -s "$packed" ] && pack gpu-store.tar.xz -C "$store" -T "$packed"
rm -f "$packed"
# the built extensions (shared objects and their markers only), for a next call on a fresh machine
(cd .tracepipe/harness 2>/dev/null &&
  { find builds -path 'builds/torch/*' \( -name TP_BUILD.json -o -name '*.so' \); find triton-cache -type f 2>/dev/null; } |
  pack gpu-builds.tar.xz -T -)
rm -f "$OUT"/.*.part
ls -l "$OUT"
