#!/usr/bin/env bash
# Packs what a GPU machine needs to run `reproduce --from compile --to time` against this machine's
# store: the Deno binary and the definitions/extract/generate cells, with only the safetensors blobs
# verify will read (of the definitions matching $1, default all; tools/gpu-bundle-blobs.ts), to keep
# the bundle small (PROFILE=FILE: with that profile's verify parameters). Writes
# .device/{deno.xz,store.tar.xz} (BUNDLE=NAME: .device/NAME instead of store.tar.xz, for a second
# profile judged in the same GPU call as the first: TP_STORE_BUNDLE=NAME on tools/gpu-run.sh).
# See docs/GPU.md for the whole round trip.
set -euo pipefail
# $1 is a definition regex: an option there is a mistake that would bundle no blob at all over the
# bundle already in .device/ (`--estimate`, say, matched no definition).
case ${1:-} in -*)
  echo "gpu-bundle: '$1' is not a definition regex (usage: tools/gpu-bundle.sh [DEFINITION_REGEX])" >&2
  exit 2
  ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
store=${STORE:-$root/.tracepipe/store}
out=$root/.device
# the blob lister runs inside the store, so the profile's path must not be relative
[ -z "${PROFILE:-}" ] || export PROFILE=$(realpath "$PROFILE")
mkdir -p "$out"
# The x86 branch filter and preset 9e make the binary about 2 MB smaller than plain -6 (28.8 against
# 30.7 MB for Deno 2.9.6), which counts where what travels to the GPU machine is capped; it takes a
# minute, once.
[ -f "$out/deno.xz" ] || xz -T1 --x86 --lzma2=preset=9e,dict=128MiB -c "$root/node_modules/deno/deno" >"$out/deno.xz"
list=$(mktemp)
cd "$store"
for st in definitions extract generate; do
  find runs -name "$st.json"
  # only the cells of the stage's latest run: older keys of the same stage stay here
  for key in $(grep -oE '"key": *"[0-9a-f]+"' "runs/$st.json" | grep -oE '[0-9a-f]{16,}'); do
    find "cells/$st/$key" -type f ! -path '*/blob/*'
  done
done >"$list"
"$root/node_modules/deno/deno" run -A "$root/tools/gpu-bundle-blobs.ts" "$store" ${1:+"$1"} >>"$list"
tar cf - -T "$list" | xz -T0 -6 >"$out/${BUNDLE:-store.tar.xz}"
rm -f "$list"
ls -l "$out"
# What a device call carries: the working tree as git sees it (tracked and untracked, not ignored),
# .device/ and zod's three paths. The device tool refuses a call over 64 MiB, counted as the disk
# blocks the files take (a small file counts 4 KiB): the fourteenth session's call of 60 MiB of bytes,
# 69 MiB of blocks, was refused. So the estimate counts blocks too.
cd "$root"
blocks() { du -ck --files0-from=- 2>/dev/null | tail -1 | awk '{print $1 * 1024}'; }
tree=$(git ls-files -z --cached --others --exclude-standard | blocks)
dev=$(printf '%s\0' "$out"/* | blocks)
zod=$(printf '%s\0' node_modules/zod/package.json node_modules/zod/index.js node_modules/zod/v4 | blocks)
total=$((tree + dev + zod))
echo "a device call carries $((total / 1048576)) MiB: tree $((tree / 1048576)), .device $((dev / 1048576)), zod $((zod / 1048576)) (limit 64 MiB)"
[ "$total" -le $((64 * 1048576)) ] || echo "over the device tool's 64 MiB: leave gpu-builds.tar.xz out, or move results/ and reports/runs/ aside for the call (docs/GPU.md)" >&2
