#!/usr/bin/env bash
# Builds, on this machine, every store bundle a GPU session carries (docs/GPU.md), from a fresh
# checkout (.device/ is not committed, so each session starts without one):
#   the default profile's CPU stages (.tracepipe/store) and .device/store.tar.xz, always;
#   dc: the decode characterization's main grid (store /tmp/tp-dc) as .device/store-dc.tar.xz;
#   lt: the traced Llama profile (store /tmp/tp-lt) as .device/store-lt.tar.xz.
# Each bundle carries the blobs its profile's verify parameters choose (PROFILE=…). Judge them on the
# GPU machine with `bash tools/gpu-run.sh …` (default) or
# `TP_STORE_BUNDLE=store-dc.tar.xz TP_STORE=.tracepipe/store-dc bash tools/gpu-run.sh 480 --profile profiles/decode-characterization.json`.
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
echo "== default profile"
reproduce --to generate | tail -3
PROFILE=profiles/default.json tools/gpu-bundle.sh | tail -2
for want in "$@"; do
  if [ "$want" = dc ]; then
    echo "== decode characterization (main grid)"
    reproduce --store /tmp/tp-dc --profile profiles/decode-characterization.json \
      --set extract.characterization.grid=main --to generate | tail -3
    BUNDLE=store-dc.tar.xz PROFILE=profiles/decode-characterization.json STORE=/tmp/tp-dc \
      tools/gpu-bundle.sh | tail -2
  else
    echo "== traced Llama"
    reproduce --store /tmp/tp-lt --profile profiles/llama-traced.json --to generate | tail -3
    BUNDLE=store-lt.tar.xz PROFILE=profiles/llama-traced.json STORE=/tmp/tp-lt \
      tools/gpu-bundle.sh | tail -2
  fi
done
ls -l .device
