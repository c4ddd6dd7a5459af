#!/usr/bin/env bash
# Builds, on this machine, every store bundle a GPU session carries (docs/GPU.md), from a fresh
# checkout (.device/ is not committed, so each session starts without one):
#   the default profile's CPU stages (.tracepipe/store) and .device/store.tar.xz, always;
#   dc: the decode characterization's design (store /tmp/tp-dc) as .device/store-dc.tar.xz;
#   lt: the traced Llama profile (store /tmp/tp-lt) as .device/store-lt.tar.xz.
# Each bundle carries the blobs its profile's verify parameters choose (PROFILE=…). Judge them on the
# GPU machine with `bash tools/gpu-run.sh …` (default) or
# `TP_STORE_BUNDLE=store-dc.tar.xz TP_STORE=.tracepipe/store-dc bash tools/gpu-run.sh 540 --profile profiles/decode-characterization.json`.
# Usage: tools/gpu-prepare.sh [dc] [lt]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reproduce() { tools/deno run --allow-all pipeline/cli.ts reproduce "$@"; }
for want in "$@"; do
  case $want in dc | lt) ;; *)
    echo "gpu-prepare: unknown bundle '$want' (dc, lt)" >&2
    exit 2
    ;;
  esac
done
# bundle TITLE BUNDLE_NAME PROFILE STORE: a profile's CPU stages and its bundle
bundle() {
  local title=$1 name=$2 profile=$3 store=$4
  echo "== $title"
  reproduce --store "$store" --profile "$profile" --to generate | tail -3
  BUNDLE=$name PROFILE=$profile STORE=$store tools/gpu-bundle.sh | tail -2
}
bundle "default profile" store.tar.xz profiles/default.json "$root/.tracepipe/store"
for want in "$@"; do
  if [ "$want" = dc ]; then
    bundle "decode characterization" store-dc.tar.xz profiles/decode-characterization.json /tmp/tp-dc
  else
    bundle "traced Llama" store-lt.tar.xz profiles/llama-traced.json /tmp/tp-lt
  fi
done
ls -l .device
